// Code blocks of rendered markdown highlighted as the editor highlights Python: the same Lezer
// parser (@codemirror/lang-python), its tokens as `tok-*` classes (@lezer/highlight's
// classHighlighter) that app.css colours like the editor. The text is the block's own text
// (set as text nodes): highlighting adds spans and classes of the page, never markup of content.

import { pythonLanguage } from '@codemirror/lang-python';
import { classHighlighter, highlightCode } from '@lezer/highlight';

/** Info strings of the blocks highlighted as Python (JupyterLab's kernels' names included). */
const PYTHON = /^(?:python[23]?|py|ipython[23]?|sage)$/i;

/** Longer blocks stay plain: parsing is linear, but a notebook's markdown is not a source file. */
const MAX_LENGTH = 100_000;

/** Highlights the `<pre><code class="language-python">` blocks under `root`. */
export function highlightCodeBlocks(root: DocumentFragment | Element) {
  for (const code of root.querySelectorAll('pre > code[class*="language-"]')) {
    const language = [...code.classList].find((c) => c.startsWith('language-'))?.slice('language-'.length);
    const text = code.textContent ?? '';
    if (!language || !PYTHON.test(language) || text.length > MAX_LENGTH) continue;
    const doc = code.ownerDocument;
    const nodes: Node[] = [];
    const tree = pythonLanguage.parser.parse(text);
    highlightCode(
      text,
      tree,
      classHighlighter,
      (token, classes) => {
        if (!classes) {
          nodes.push(doc.createTextNode(token));
          return;
        }
        const span = doc.createElement('span');
        span.className = classes;
        span.textContent = token;
        nodes.push(span);
      },
      () => nodes.push(doc.createTextNode('\n')),
    );
    code.replaceChildren(...nodes);
    code.classList.add('highlighted');
  }
}
