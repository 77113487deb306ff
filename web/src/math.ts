// Math in markdown (cells and text/markdown outputs) and in text/latex outputs, found where
// JupyterLab finds it and typeset by KaTeX (bundled from npm; its stylesheet and fonts are part of
// the page's own files).
//
// Finding. Math is taken out of a markdown source before the markdown parser sees it (else `_` and
// `*` inside it become emphasis and `\\` a lone backslash), each piece replaced by a marker
// `@@N@@`, and put back as typeset nodes once the parsed markup is sanitised. The rules are
// JupyterLab's (its `removeMath`), written again here:
//   - delimiters: `$…$` (inline), `$$…$$` (display), `\begin{env}…\end{env}` (display), and
//     `\\(…\\)`, `\\[…\\]` in markdown (the source doubles the backslash, as in JupyterLab) or
//     `\(…\)`, `\[…\]` in a text/latex output;
//   - braces inside math balance (a delimiter inside `{…}` does not close it), and math never
//     runs across a blank line (a new paragraph);
//   - `\$` is a dollar sign, never a delimiter;
//   - a `$` in a code span or a fenced code block is code, not a delimiter;
//   - so "it costs $5 and $6" has the math "5 and " between its two dollars, as in JupyterLab:
//     write `\$5` for a dollar sign.
//
// Typesetting. `katex.render` builds DOM nodes itself and sets their styles through the CSSOM
// (which the page's policy allows; it refuses style attributes in markup), with `trust: false`:
// no \href, \url, \includegraphics, \htmlStyle, \htmlClass, \htmlId or \htmlData. Every node it
// made is then checked: inline styles only of the properties KaTeX lays math out with, no value
// that could load or reach anything (`url(`, `image-set(`, `var(`, escapes), no attribute that
// points anywhere. Why this and not MathML alone: docs/SECURITY.md, "Rendering untrusted content".

import katex from 'katex';
import * as katexModule from 'katex';

export type MathMode = 'markdown' | 'latex';

/** Source with its math taken out: `text` has `@@N@@` where `math[N]` was. */
export interface MathSplit {
  text: string;
  math: string[];
}

// What the scan looks at: dollars, environments, escaped dollars and braces, braces, line breaks,
// things that look like our markers, and the bracket delimiters of each mode.
const TOKENS: Record<MathMode, RegExp> = {
  markdown: /(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\[()[\]])/i,
  latex: /(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\[()[\]])/i,
};

// Code, where a `$` is only a character (the source's `~` are doubled as `~T` first, so `~D`
// can stand for a hidden `$`): fenced blocks (``` or ~~~, running to the end of the source when
// never closed, as CommonMark has it) and code spans on one line.
const FENCED = /^ {0,3}(`{3,}|(?:~T){3,})[^`\n]*\n[\s\S]*?(?:^ {0,3}\1(?:`|~T)*[ \t]*$|(?![\s\S]))/gm;
const CODE_SPAN = /(^|[^\\])(`+)([^\n]*?[^`\n])\2(?!`)/gm;

/** Takes the math out of `source` (see the rules above). */
export function extractMath(source: string, mode: MathMode = 'markdown'): MathSplit {
  let text = source.replace(/\r\n?/g, '\n');
  let unhide = (s: string) => s;
  if (mode === 'markdown' && (text.includes('`') || text.includes('~~~'))) {
    const hide = (code: string) => code.replace(/\$/g, '~D');
    text = text.replace(/~/g, '~T').replace(FENCED, hide).replace(CODE_SPAN, hide);
    unhide = (s) => s.replace(/~([TD])/g, (_, c: string) => (c === 'T' ? '~' : '$'));
  }

  const math: string[] = [];
  // Odd indices are tokens, even ones the text between them.
  const parts = text.split(TOKENS[mode]);
  const take = (from: number, to: number) => {
    math.push(unhide(parts.slice(from, to + 1).join('')));
    parts.fill('', from + 1, to + 1);
    parts[from] = `@@${math.length - 1}@@`;
  };
  const opening = (token: string): string | null => {
    if (token === '$' || token === '$$') return token;
    if (mode === 'markdown' && (token === '\\\\(' || token === '\\\\[')) return token.endsWith('(') ? '\\\\)' : '\\\\]';
    if (mode === 'latex' && (token === '\\(' || token === '\\[')) return token.endsWith('(') ? '\\)' : '\\]';
    if (token.startsWith('\\begin')) return `\\end${token.slice(6)}`;
    return null;
  };

  let open = -1; // the opening delimiter's index while in math
  let closing = '';
  let braces = 0;
  let closedInBraces = -1; // the last closing delimiter seen while braces were open
  for (let i = 1; i < parts.length; i += 2) {
    const token = parts[i];
    if (open < 0) {
      if (token.startsWith('@@')) {
        // Text that looks like a marker is kept as a "math" entry put back as text.
        math.push(token);
        parts[i] = `@@${math.length - 1}@@`;
        continue;
      }
      const close = opening(token);
      if (close !== null) {
        open = i;
        closing = close;
        braces = 0;
        closedInBraces = -1;
      }
    } else if (token === closing) {
      if (braces > 0) {
        closedInBraces = i;
      } else {
        take(open, i);
        open = -1;
      }
    } else if (/\n.*\n/.test(token)) {
      // A blank line ends the paragraph: math that closed inside unbalanced braces ends there;
      // otherwise the opening delimiter was just a character. Scan on after it either way.
      if (closedInBraces >= 0) {
        take(open, closedInBraces);
        i = closedInBraces;
      }
      open = -1;
    } else if (token === '{') {
      braces++;
    } else if (token === '}' && braces > 0) {
      braces--;
    }
  }
  if (open >= 0 && closedInBraces >= 0) take(open, closedInBraces);
  return { text: unhide(parts.join('')), math };
}

const MARKER = /@@(\d+)@@/g;

/** The source text of a piece of math, as the author wrote it (for code, attributes, ids). */
function sourceOf(piece: string, mode: MathMode): string {
  // A markdown source doubles the backslash of \( and \[: the reader sees one.
  if (mode === 'markdown' && /^\\\\[([][\s\S]*\\\\[)\]]$/.test(piece)) return `\\${piece.slice(2, -3)}\\${piece.slice(-1)}`;
  return piece;
}

/** `text` with its markers replaced by the math's source. */
export function withMathSource(text: string, math: string[], mode: MathMode = 'markdown'): string {
  return text.replace(MARKER, (marker, n: string) => (math[Number(n)] === undefined ? marker : sourceOf(math[Number(n)], mode)));
}

/** The TeX of a piece of math and whether it is display math; null for text (a marker look-alike). */
function texOf(piece: string): { tex: string; display: boolean } | null {
  const between = (open: number, close: number) => piece.slice(open, piece.length - close);
  if (piece.length >= 4 && piece.startsWith('$$') && piece.endsWith('$$')) return { tex: between(2, 2), display: true };
  if (piece.length >= 2 && piece.startsWith('$') && piece.endsWith('$')) return { tex: between(1, 1), display: false };
  if (/^\\\\\([\s\S]*\\\\\)$/.test(piece)) return { tex: between(3, 3), display: false };
  if (/^\\\\\[[\s\S]*\\\\\]$/.test(piece)) return { tex: between(3, 3), display: true };
  if (/^\\\([\s\S]*\\\)$/.test(piece)) return { tex: between(2, 2), display: false };
  if (/^\\\[[\s\S]*\\\]$/.test(piece)) return { tex: between(2, 2), display: true };
  if (piece.startsWith('\\begin')) return { tex: piece, display: true };
  return null;
}

// ---- typesetting ---------------------------------------------------------------------------------

/** Inline style properties KaTeX lays math out with; any other is removed. */
const KATEX_STYLE =
  /^(?:height|width|min-width|vertical-align|top|bottom|left|margin(?:-(?:top|right|bottom|left))?|padding-left|border(?:-(?:top|right|bottom|left))?-(?:width|style|color)|color|background-color|text-shadow|position)$/;
/** Values that could load something or carry what the checks above do not read. */
const UNSAFE_VALUE = /url\s*\(|image|var\s*\(|attr\s*\(|expression|\\|@/i;
/** Attributes that point somewhere or name something of the page. */
const UNSAFE_ATTRIBUTE = /^(?:on|href$|xlink:href$|src$|srcset$|action$|formaction$|id$|name$|data-|style$)/i;

/** Keeps only KaTeX's own layout in what it built (see the header). */
function confine(root: Element) {
  for (const el of [root, ...root.querySelectorAll('*')] as (HTMLElement | SVGElement | MathMLElement)[]) {
    const style = el.style;
    for (let i = style.length - 1; i >= 0; i--) {
      const property = style.item(i);
      const value = style.getPropertyValue(property);
      if (!KATEX_STYLE.test(property) || UNSAFE_VALUE.test(value) || (property === 'position' && value !== 'relative')) {
        style.removeProperty(property);
      }
    }
    for (const { name } of [...el.attributes]) {
      if (name !== 'style' && UNSAFE_ATTRIBUTE.test(name)) el.removeAttribute(name);
    }
  }
}

const OPTIONS = {
  throwOnError: false, // an error shows the source in red, with the message as its title
  trust: false,
  strict: 'ignore' as const,
  maxSize: 50, // ems, for \rule and the like
  maxExpand: 1000,
  output: 'htmlAndMathml' as const, // MathML too, for screen readers (hidden by KaTeX's CSS)
};

// Typeset math by its TeX: a notebook repeats itself, and re-rendering a cell as its author types
// would typeset every formula again. Clones of a cached node keep their styles.
const cache = new Map<string, Element>();
const CACHE_SIZE = 2000;

/**
 * JupyterLab's MathJax numbers no equation unless told (`\tag`); KaTeX numbers those of `align`,
 * `equation` and the like. Their starred forms, which KaTeX does not number, are the same layout.
 */
const NUMBERED = /^(\s*)\\begin\{(equation|align|alignat|gather)\}([\s\S]*)\\end\{\2\}(\s*)$/;
function unnumbered(tex: string): string {
  const found = NUMBERED.exec(tex);
  if (!found) return tex;
  const [, before, env, body, after] = found;
  if (body.includes(`{${env}}`)) return tex; // two environments, or nested: as written
  return `${before}\\begin{${env}*}${body}\\end{${env}*}${after}`;
}

/** KaTeX's tree before it becomes DOM (exported by katex for its own tests and tools). */
interface KatexTree {
  classes: string[];
  attributes: Record<string, string>;
  toNode(): Node;
}
const renderToDomTree = (katexModule as unknown as { __renderToDomTree?: (tex: string, options: object) => KatexTree }).__renderToDomTree;

/** What a formula KaTeX cannot parse shows: its source, the error as its title. */
function errorElement(tex: string, message: string): HTMLElement {
  const span = document.createElement('span');
  span.className = 'katex-error';
  span.title = message;
  span.textContent = tex;
  return span;
}

/**
 * KaTeX's nodes for `tex`. A formula it cannot parse is shown as KaTeX does (its source, titled
 * with the error) but without the `style` attribute KaTeX would give it with setAttribute, which
 * the page's policy refuses (and reports): app.css colours `.katex-error`.
 */
function build(tex: string, display: boolean): Element {
  const options = { ...OPTIONS, displayMode: display };
  try {
    if (renderToDomTree) {
      const tree = renderToDomTree(tex, options);
      if (tree.classes.includes('katex-error')) return errorElement(tex, tree.attributes.title ?? 'KaTeX parse error');
      return tree.toNode() as Element;
    }
    const holder = document.createElement('span');
    katex.render(tex, holder, options);
    return holder.firstElementChild ?? errorElement(tex, 'KaTeX rendered nothing');
  } catch (error) {
    return errorElement(tex, String(error));
  }
}

/** One piece of math typeset: a `.katex` (inline) or `.katex-display` element, or its error. */
export function typeset(source: string, display: boolean): Element {
  const tex = display ? unnumbered(source) : source;
  const key = `${display ? 'D' : 'I'}${tex}`;
  let node = cache.get(key);
  if (!node) {
    node = build(tex, display);
    confine(node);
    if (cache.size >= CACHE_SIZE) cache.clear();
    cache.set(key, node);
  }
  return node.cloneNode(true) as Element;
}

/** Where math stays its source text: code, and elements the page never typesets in. */
const KEEP_AS_TEXT = 'code, pre, kbd, samp, textarea, title, script, style, svg, math';

/**
 * Puts the math of `split` back into `root` (sanitised nodes of `split.text`): typeset in text,
 * as source text inside code and in attribute values (alt, title, href).
 */
export function restoreMath(root: DocumentFragment | Element, math: string[], mode: MathMode = 'markdown') {
  if (math.length === 0) return;
  const doc = root.ownerDocument ?? document;
  const walker = doc.createTreeWalker(root, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  const texts: Text[] = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeType === Node.TEXT_NODE) {
      if ((node as Text).data.includes('@@')) texts.push(node as Text);
    } else {
      for (const attr of (node as Element).attributes) {
        if (attr.value.includes('@@')) attr.value = withMathSource(attr.value, math, mode);
      }
    }
  }
  for (const text of texts) {
    if (text.parentElement?.closest(KEEP_AS_TEXT)) {
      text.data = withMathSource(text.data, math, mode);
      continue;
    }
    const nodes: (Node | string)[] = [];
    let last = 0;
    for (const match of text.data.matchAll(MARKER)) {
      const piece = math[Number(match[1])];
      if (piece === undefined) continue;
      nodes.push(text.data.slice(last, match.index));
      const found = texOf(piece);
      nodes.push(found ? typeset(found.tex, found.display) : piece);
      last = match.index + match[0].length;
    }
    nodes.push(text.data.slice(last));
    text.replaceWith(...nodes.filter((n) => n !== ''));
  }
}

/**
 * A text/latex output as JupyterLab shows it: its text, with the delimited math in it typeset
 * (`$\displaystyle x^{2}$` from SymPy, `\begin{align}…\end{align}` from `Latex(…)`).
 */
export function renderLatex(source: string): DocumentFragment {
  const { text, math } = extractMath(source, 'latex');
  const fragment = document.createDocumentFragment();
  fragment.append(text);
  restoreMath(fragment, math, 'latex');
  return fragment;
}
