// ANSI SGR escapes (colours, bold, italic, underline) to DOM nodes, as Jupyter shows tracebacks
// and coloured prints. Everything else (cursor moves, OSC) is dropped. The text is only ever
// text nodes, and the styles are set through the CSSOM: the page's Content-Security-Policy
// refuses style attributes written as markup.

const BASIC = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];

function colour256(n: number): string {
  if (n < 16) return `var(--ansi-${n < 8 ? BASIC[n] : 'bright-' + BASIC[n - 8]})`;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const steps = [0, 95, 135, 175, 215, 255];
  return `rgb(${steps[Math.floor(i / 36)]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
}

interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
  inverse?: boolean;
}

function apply(style: Style, codes: number[]): Style {
  const s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) {
      for (const k of Object.keys(s)) delete (s as Record<string, unknown>)[k];
    } else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 7) s.inverse = true;
    else if (c === 22) s.bold = s.dim = false;
    else if (c === 23) s.italic = false;
    else if (c === 24) s.underline = false;
    else if (c === 27) s.inverse = false;
    else if (c >= 30 && c <= 37) s.fg = `var(--ansi-${BASIC[c - 30]})`;
    else if (c === 39) delete s.fg;
    else if (c >= 40 && c <= 47) s.bg = `var(--ansi-${BASIC[c - 40]})`;
    else if (c === 49) delete s.bg;
    else if (c >= 90 && c <= 97) s.fg = `var(--ansi-bright-${BASIC[c - 90]})`;
    else if (c >= 100 && c <= 107) s.bg = `var(--ansi-bright-${BASIC[c - 100]})`;
    else if (c === 38 || c === 48) {
      let colour: string | undefined;
      if (codes[i + 1] === 5) {
        colour = colour256(codes[i + 2] ?? 0);
        i += 2;
      } else if (codes[i + 1] === 2) {
        colour = `rgb(${codes[i + 2] ?? 0},${codes[i + 3] ?? 0},${codes[i + 4] ?? 0})`;
        i += 4;
      }
      if (colour) {
        if (c === 38) s.fg = colour;
        else s.bg = colour;
      }
    }
  }
  return s;
}

function css(style: Style): string {
  let fg = style.fg;
  let bg = style.bg;
  if (style.inverse) [fg, bg] = [bg ?? 'var(--bg)', fg ?? 'var(--fg)'];
  const parts: string[] = [];
  if (fg) parts.push(`color:${fg}`);
  if (bg) parts.push(`background:${bg}`);
  if (style.bold) parts.push('font-weight:bold');
  if (style.dim) parts.push('opacity:.7');
  if (style.italic) parts.push('font-style:italic');
  if (style.underline) parts.push('text-decoration:underline');
  return parts.join(';');
}

/** Terminal text as nodes: text, and spans styled by the SGR escapes. */
export function ansiToNodes(text: string): DocumentFragment {
  // eslint-disable-next-line no-control-regex
  const re = /\x1b\[([0-9;]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]/g;
  const out = document.createDocumentFragment();
  let style: Style = {};
  let last = 0;
  const emit = (chunk: string) => {
    if (!chunk) return;
    const c = css(style);
    if (!c) {
      out.append(chunk);
      return;
    }
    const span = document.createElement('span');
    span.style.cssText = c;
    span.textContent = chunk;
    out.append(span);
  };
  for (let m = re.exec(text); m; m = re.exec(text)) {
    emit(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] === 'm') {
      const codes = (m[1] || '0').split(';').map((n) => Number(n) || 0);
      style = apply(style, codes);
    }
  }
  emit(text.slice(last));
  return out;
}

/** Removes ANSI escapes. */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g, '');
}

