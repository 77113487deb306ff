// Issue 16, item 7: markdown as JupyterLab renders it, on the built page in Chromium.
//
// A notebook imported from .ipynb shows: inline and display math and an align environment typeset
// by KaTeX (its fonts served by the relay, its layout styles applied under the page's policy);
// a `$` in a code span or a fenced block left as code; "$5 and $6" as JupyterLab shows it (math
// between the two dollars) and `\$5` as a dollar; headings with ids and `¶` links, and a link to
// a heading that goes there in the same tab; a Python code block highlighted as the editor
// highlights it; an `attachment:` image; text/latex outputs typeset (preferred to the PNG beside
// them, as in JupyterLab). An image pasted, and one dropped, into a markdown cell's editor
// becomes an attachment of the cell (in the document: the relay's export has it) and shows once
// the cell is rendered. Hostile TeX (\href, \url, \includegraphics, \htmlStyle, \htmlClass, bad
// colours, far kerns, huge rules) loads nothing, styles nothing beyond KaTeX's layout and stays
// inside its cell. A screenshot of the showcase goes to tests/out/screenshots/markdown-showcase.png
// (docs/markdown-math.png is a copy).
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/markdown.test.mjs
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import zlib from 'node:zlib';

import { cell, ipynb, notebookUrl, openContext, openNotebook, screenshot, startRelay, synced, waitFor } from './lib.mjs';

// ---- a PNG made here (a gradient), for the attachments ---------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (bytes) => {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

/** A `width`×`height` RGB PNG whose pixels are `colour(x, y)` ([r, g, b]), base64. */
function png(width, height, colour) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(colour(x, y), y * (width * 3 + 1) + 1 + x * 3);
  }
  const chunk = (type, data) => {
    const typed = Buffer.concat([Buffer.from(type), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per channel
  header[9] = 2; // RGB
  const file = Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  return file.toString('base64');
}

const GRADIENT = png(160, 48, (x, y) => [30 + x, 90 + y * 2, 220 - x]);
const PASTED = png(40, 30, () => [220, 40, 40]);
const DROPPED = png(36, 24, () => [40, 160, 60]);

// ---- the notebooks ----------------------------------------------------------------------------------

const SHOWCASE = [
  {
    id: 'intro',
    type: 'markdown',
    source: [
      '# Markdown as JupyterLab renders it',
      '',
      'Inline math $x^2 + y^2 = r^2$ and $e^{i\\pi} + 1 = 0$, display math:',
      '',
      '$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$',
      '',
      'and an environment, as written in a notebook (`_` and `*` inside math are not emphasis):',
      '',
      '\\begin{align}',
      'f_*(x) &= \\sum_{k=0}^{\\infty} \\frac{x^k}{k!} \\\\',
      'g_*(x) &= \\sqrt{a_1^2 + a_2^2}',
      '\\end{align}',
    ].join('\n'),
  },
  {
    id: 'code',
    type: 'markdown',
    source: [
      '## Code, not math',
      '',
      'A code span `$HOME and $PATH` and the fenced block below stay as written; $\\alpha$ after them is math.',
      '',
      '```python',
      'import math',
      '',
      'def area(r: float) -> float:',
      '    """A $ in a docstring is code."""',
      '    return math.pi * r ** 2  # costs $5',
      '```',
    ].join('\n'),
  },
  { id: 'currency', type: 'markdown', source: 'It costs $5 and $6 today.\n\nEscaped, it costs \\$5 and \\$6 today.' },
  { id: 'image', type: 'markdown', source: 'An attached image: ![gradient](attachment:gradient.png)' },
  { id: 'links', type: 'markdown', source: 'Jump to [the code section](#Code,-not-math).' },
  {
    id: 'latex',
    source: 'sympy.sqrt(x) + a / b',
    outputs: [
      {
        output_type: 'display_data',
        metadata: {},
        data: { 'text/latex': '$\\displaystyle \\frac{a}{b} + \\sqrt{x}$', 'image/png': PASTED, 'text/plain': 'a/b + sqrt(x)' },
      },
      {
        output_type: 'execute_result',
        execution_count: 1,
        metadata: {},
        data: { 'text/latex': '\\begin{align}\nx &= 1 \\\\\ny &= 2\n\\end{align}', 'text/plain': '<IPython.core.display.Latex object>' },
      },
    ],
  },
  { id: 'paste', type: 'markdown', source: 'Pasted: ' },
  { id: 'drop', type: 'markdown', source: 'Dropped: ' },
];

function showcase() {
  const notebook = JSON.parse(ipynb(SHOWCASE));
  notebook.cells.find((c) => c.id === 'image').attachments = { 'gradient.png': { 'image/png': GRADIENT } };
  return JSON.stringify(notebook);
}

/** TeX that tries to load, style or reach beyond its cell (the collector counts requests). */
function hostileTex(collector) {
  return [
    `$\\href{${collector}/href}{link}$ $\\url{${collector}/url}$ $\\includegraphics{${collector}/img.png}$`,
    `$\\htmlStyle{background-image:url(${collector}/style)}{styled}$ $\\htmlClass{drop-overlay}{classed}$ $\\htmlId{share-menu}{ided}$ $\\htmlData{x=1}{data}$`,
    `$\\color{red;background-image:url(${collector}/color)}{coloured}$ $\\colorbox{url(${collector}/box)}{boxed}$`,
    `$\\raisebox{-12em}{BELOW}$ and $\\rule{9999em}{2em}$`,
    `$\\kern-8em\\text{FARLEFT}$ (moved left, out of the cell)`,
  ].join('\n\n');
}

// ---- the page -----------------------------------------------------------------------------------------

let relay;
let browser;

before(async () => {
  relay = await startRelay();
  browser = await openContext();
  await browser.context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push({ directive: e.effectiveDirective, blocked: e.blockedURI }));
  });
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

/** Waits until the markdown cells of `page` are rendered and KaTeX's fonts are in. */
async function settled(page, markdownCells) {
  await waitFor('the markdown cells rendered', () => page.locator('.cell.rendered').count().then((n) => n === markdownCells), 20_000);
  await page.evaluate(async () => {
    await document.fonts.ready;
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  });
}

/** The TeX source of each KaTeX formula under `root` (KaTeX keeps it in its MathML annotation). */
const texIn = (locator) =>
  locator.evaluate((root) => [...root.querySelectorAll('.katex')].map((k) => k.querySelector('annotation[encoding="application/x-tex"]')?.textContent ?? null));

let showcaseDoc;
let page;

async function openShowcase() {
  if (page) return page;
  showcaseDoc = await relay.createDoc(showcase());
  page = await openNotebook(browser.context, notebookUrl(relay.url, showcaseDoc, relay.adminToken));
  await synced(page);
  await settled(page, SHOWCASE.filter((c) => c.type === 'markdown').length);
  return page;
}

test('math renders as KaTeX: inline, display, align; its fonts and layout apply under the policy', { timeout: 90_000 }, async () => {
  const page = await openShowcase();
  const intro = cell(page, 'intro').locator('.markdown-rendered');
  assert.deepEqual(await texIn(intro), [
    'x^2 + y^2 = r^2',
    'e^{i\\pi} + 1 = 0',
    '\\int_0^1 x^2\\,dx = \\frac{1}{3}',
    // Unnumbered, as JupyterLab's MathJax shows it (KaTeX would number `align`).
    '\\begin{align*}\nf_*(x) &= \\sum_{k=0}^{\\infty} \\frac{x^k}{k!} \\\\\ng_*(x) &= \\sqrt{a_1^2 + a_2^2}\n\\end{align*}',
  ]);
  assert.equal(await intro.locator('.katex-display .tag').count(), 0, 'no equation numbers');
  // $x^2 + y^2 = r^2$: three superscripts in KaTeX's HTML, set in KaTeX's own font.
  const first = intro.locator('.katex').first();
  assert.equal(await first.locator('.katex-html .msupsub').count(), 3);
  assert.match(await first.evaluate((k) => getComputedStyle(k).fontFamily), /KaTeX_Main/);
  assert.ok(
    await page.evaluate(() => [...document.fonts].some((f) => f.family.replace(/"/g, '') === 'KaTeX_Math' && f.status === 'loaded')),
    'KaTeX_Math loaded from the relay',
  );
  // Display math and the environment are display blocks; align lays out two rows.
  assert.equal(await intro.locator('.katex-display').count(), 2);
  assert.equal(await intro.locator('.katex-display').nth(1).locator('.mtable .col-align-r > .vlist-t .mord.mathnormal', { hasText: 'f' }).count(), 1);
  // Nothing of the math went through the markdown parser: no emphasis from `_` or `*`.
  assert.equal(await intro.locator('em, strong').count(), 0);
  // KaTeX's inline layout (struts' heights, set through the CSSOM) applies under the policy,
  // which refuses style attributes in markup: a strut has the height KaTeX gave it.
  const strut = await first.locator('.katex-strut').first().evaluate((s) => ({ inline: s.style.height, height: s.getBoundingClientRect().height }));
  assert.ok(strut.inline.endsWith('em') && strut.height > 8, `a strut of ${strut.inline} is ${strut.height}px high`);
  const violations = await page.evaluate(() => window.__violations);
  assert.deepEqual(violations.filter((v) => v.directive.startsWith('style') || v.directive.startsWith('font')), [], 'no style or font refused');
  await screenshot(page, 'markdown-math');
});

test('a $ in code spans and fenced code is code; Python code blocks are highlighted', async () => {
  const page = await openShowcase();
  const md = cell(page, 'code').locator('.markdown-rendered');
  assert.equal(await md.locator('p code').innerText(), '$HOME and $PATH');
  assert.deepEqual(await texIn(md), ['\\alpha']);
  assert.equal(await md.locator('code .katex').count(), 0);
  const block = md.locator('pre > code.language-python.highlighted');
  assert.match(await block.innerText(), /"""A \$ in a docstring is code\."""\n {4}return math\.pi \* r \*\* 2 {2}# costs \$5/);
  assert.deepEqual(await block.locator('.tok-keyword').allInnerTexts(), ['import', 'def', 'return']);
  assert.deepEqual(await block.locator('.tok-comment').allInnerTexts(), ['# costs $5']);
  assert.deepEqual(await block.locator('.tok-string').allInnerTexts(), ['"""A $ in a docstring is code."""']);
  assert.equal(await block.locator('.tok-keyword').first().evaluate((k) => getComputedStyle(k).color), 'rgb(119, 0, 136)');
  assert.equal(await block.locator('.tok-variableName.tok-definition', { hasText: 'area' }).count(), 1);
});

test('currency: "$5 and $6" is math between the dollars, as in JupyterLab; \\$ is a dollar', async () => {
  const page = await openShowcase();
  const md = cell(page, 'currency').locator('.markdown-rendered');
  assert.deepEqual(await texIn(md), ['5 and ']);
  const [first, second] = await md.locator('p').evaluateAll((ps) => ps.map((p) => p.textContent));
  assert.match(first, /^It costs .*6 today\.$/);
  assert.equal(second, 'Escaped, it costs $5 and $6 today.');
});

test('headings get ids and ¶ links; a link to a heading goes there in this tab', async () => {
  const page = await openShowcase();
  const heading = cell(page, 'code').locator('h2');
  assert.equal(await heading.getAttribute('id'), 'user-content-Code,-not-math');
  assert.equal(await heading.innerText(), 'Code, not math');
  assert.equal(await heading.locator('a.heading-anchor').getAttribute('href'), '#user-content-Code,-not-math');
  assert.equal(await cell(page, 'intro').locator('h1').getAttribute('id'), 'user-content-Markdown-as-JupyterLab-renders-it');
  const link = cell(page, 'links').locator('.markdown-rendered a');
  assert.equal(await link.getAttribute('href'), '#user-content-Code,-not-math');
  assert.equal(await link.getAttribute('target'), null);
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  const pages = browser.context.pages().length;
  await link.click();
  await waitFor('the heading scrolled into view', async () => {
    const top = await heading.evaluate((h) => h.getBoundingClientRect().top);
    return top > 40 && top < 200;
  });
  assert.equal(await page.evaluate(() => decodeURIComponent(location.hash)), '#user-content-Code,-not-math');
  assert.equal(browser.context.pages().length, pages, 'no new tab');
});

test('an attachment: image of an imported notebook is shown', async () => {
  const page = await openShowcase();
  const img = cell(page, 'image').locator('.markdown-rendered img');
  await waitFor('the attachment decoded', () => img.evaluate((i) => i.complete && i.naturalWidth === 160));
  assert.match(await img.getAttribute('src'), /^data:image\/png;base64,/);
  const box = await img.boundingBox();
  assert.ok(box && box.width >= 150 && box.height >= 40, `the image is on screen: ${JSON.stringify(box)}`);
  assert.ok(await img.isVisible());
});

test('text/latex outputs are typeset (and preferred to a PNG beside them)', async () => {
  const page = await openShowcase();
  const outputs = cell(page, 'latex').locator('.cell-outputs');
  assert.deepEqual(await texIn(outputs), ['\\displaystyle \\frac{a}{b} + \\sqrt{x}', '\\begin{align*}\nx &= 1 \\\\\ny &= 2\n\\end{align*}']);
  assert.equal(await outputs.locator('.output-image').count(), 0);
  assert.equal(await outputs.locator('.output-latex .katex-display').count(), 1);
  assert.equal(await outputs.locator('.output-latex .mfrac').count(), 1);
});

/** Dispatches a paste (or a drop at the editor's middle) of a PNG file into cell `id`'s editor. */
async function putImage(page, id, kind, name, base64) {
  const rendered = cell(page, id).locator('.markdown-rendered');
  await rendered.dblclick();
  const content = cell(page, id).locator('.cm-content');
  await content.waitFor();
  await content.press('ControlOrMeta+End');
  await content.evaluate(
    (el, { kind, name, base64 }) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], name, { type: 'image/png' }));
      const box = el.getBoundingClientRect();
      const init = { bubbles: true, cancelable: true, composed: true };
      const event =
        kind === 'paste'
          ? new ClipboardEvent('paste', { ...init, clipboardData: data })
          : new DragEvent('drop', { ...init, dataTransfer: data, clientX: box.right - 4, clientY: box.top + box.height / 2 });
      el.dispatchEvent(event);
    },
    { kind, name, base64 },
  );
  const attachments = await waitFor(`the ${kind}d image in cell ${id}'s attachments`, () =>
    page.evaluate((id) => {
      const attachments = window.inloopPage.nb.cell(id).attachments ?? {};
      return Object.keys(attachments).length === 1 && attachments;
    }, id),
  );
  const [[attachment, bundle]] = Object.entries(attachments);
  assert.match(attachment, /^[0-9a-f-]{36}\.png$/, 'a fresh name keeping the extension');
  assert.deepEqual(bundle, { 'image/png': base64 });
  const source = await page.evaluate((id) => window.inloopPage.nb.source(id), id);
  assert.ok(source.includes(`![${name}](attachment:${attachment})`), `the link is in the source: ${source}`);
  // Render it (Ctrl+Enter): the image shows.
  await content.press('Control+Enter');
  const img = cell(page, id).locator('.markdown-rendered img');
  await waitFor(`the ${kind}d image shown`, () => img.evaluate((i) => i.complete && i.naturalWidth > 0).catch(() => false));
  assert.ok(await img.isVisible());
  return attachment;
}

test('pasting or dropping an image into a markdown cell adds an attachment, which shows', { timeout: 60_000 }, async () => {
  const page = await openShowcase();
  const pasted = await putImage(page, 'paste', 'paste', 'screenshot.png', PASTED);
  const dropped = await putImage(page, 'drop', 'drop', 'photo.png', DROPPED);
  assert.equal(await page.locator('.toast-error').count(), 0, 'no "drop an .ipynb" complaint');
  assert.ok(await page.locator('#drop').isHidden(), 'the drop overlay is hidden');
  // In the document: the relay's export has both, as nbformat attachments.
  await synced(page);
  const exported = await (await relay.api('GET', `/api/docs/${showcaseDoc}/ipynb`)).json();
  const byId = Object.fromEntries(exported.cells.map((c) => [c.id, c]));
  assert.deepEqual(byId.paste.attachments, { [pasted]: { 'image/png': PASTED } });
  assert.deepEqual(byId.drop.attachments, { [dropped]: { 'image/png': DROPPED } });
  assert.match([byId.drop.source].flat().join(''), /^Dropped: !\[photo\.png\]\(attachment:/);
  // Still one cell each: the drop did not import anything.
  assert.equal(exported.cells.length, SHOWCASE.length);
  // The showcase, pasted and dropped images included (docs/markdown-math.png is a copy of it:
  // tests never write into the repository).
  await page.keyboard.press('Escape');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.setViewportSize({ width: 1100, height: 1180 });
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await screenshot(page, 'markdown-showcase');
});

test('hostile TeX loads nothing, styles nothing but its layout, and stays in its cell', { timeout: 90_000 }, async () => {
  const requests = [];
  const collector = http.createServer((request, response) => {
    requests.push(request.url);
    response.writeHead(200, { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' });
    response.end('x');
  });
  await new Promise((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${collector.address().port}`;
  try {
    const tex = hostileTex(url);
    const notebook = ipynb([
      { id: 'tex', type: 'markdown', source: tex },
      { id: 'out', source: 'Latex(tex)', outputs: [{ output_type: 'display_data', metadata: {}, data: { 'text/latex': tex, 'text/plain': 'tex' } }] },
    ]);
    const docId = await relay.createDoc(notebook);
    const page = await openNotebook(browser.context, notebookUrl(relay.url, docId, relay.adminToken));
    await settled(page, 1);
    await page.locator('.output-latex .katex').first().waitFor();

    const found = await page.evaluate(() => {
      const layout =
        /^(?:height|width|min-width|vertical-align|top|bottom|left|margin(?:-(?:top|right|bottom|left))?|padding-left|border(?:-(?:top|right|bottom|left))?-(?:width|style|color)|color|background-color|text-shadow|position)$/;
      const problems = [];
      for (const root of document.querySelectorAll('.markdown-rendered, .output-latex')) {
        for (const el of root.querySelectorAll('*')) {
          for (let i = 0; i < el.style.length; i++) {
            const property = el.style.item(i);
            const value = el.style.getPropertyValue(property);
            if (!layout.test(property) || /url\(|image|var\(/i.test(value)) problems.push(`${property}: ${value}`);
          }
          for (const attr of el.attributes) {
            if (/^(?:href|xlink:href|src|id|data-.*|on.*)$/.test(attr.name)) problems.push(`[${attr.name}=${attr.value}]`);
          }
          if (el.classList.contains('drop-overlay')) problems.push('.drop-overlay');
          if (['A', 'IMG', 'IFRAME', 'STYLE', 'LINK'].includes(el.tagName)) problems.push(el.tagName);
        }
      }
      return problems;
    });
    assert.deepEqual(found, []);
    // The untrusted commands show as errors (their names in red), not as what they would do; a
    // formula KaTeX cannot parse (the bad colours) shows its source in red, styled by the page
    // (KaTeX's own error would carry a style attribute, which the policy refuses).
    const md = cell(page, 'tex').locator('.markdown-rendered');
    assert.deepEqual(await page.evaluate(() => window.__violations.filter((v) => v.directive.startsWith('style'))), []);
    assert.equal(await md.locator('.katex-error').count(), 2);
    assert.equal(await md.locator('.katex-error').first().evaluate((e) => getComputedStyle(e).color), 'rgb(204, 0, 0)');
    assert.match(await md.locator('.katex-error').first().getAttribute('title'), /ParseError: KaTeX parse error: Invalid color/);
    for (const name of ['\\href', '\\url', '\\includegraphics', '\\htmlStyle', '\\htmlClass', '\\htmlId', '\\htmlData']) {
      assert.ok((await md.innerText()).includes(name), `${name} shown as text`);
    }
    // What KaTeX moved far to the left is clipped at the cell's edge: a click there is not on it.
    const clipped = await md.evaluate((root) => {
      const box = root.getBoundingClientRect();
      const far = [...root.querySelectorAll('.katex-html *')].filter((el) => {
        const r = el.getBoundingClientRect();
        return el.childElementCount === 0 && el.textContent.trim() && r.right < box.left && r.right > 0;
      });
      return {
        far: far.map((el) => el.textContent),
        hit: far.filter((el) => {
          const r = el.getBoundingClientRect();
          const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return at && root.contains(at);
        }).length,
      };
    });
    assert.ok(clipped.far.length > 0, 'the kerned text lies left of the cell');
    assert.equal(clipped.hit, 0, `clipped: ${clipped.far.join('')}`);
    // A \rule of 9999em is capped (50em).
    const width = await md.evaluate((root) => Math.max(...[...root.querySelectorAll('.katex-rule')].map((r) => r.getBoundingClientRect().width)));
    assert.ok(width > 100 && width < 1500, `the rule is ${width}px wide`);
    // Nothing reached the collector; it does count (one request from the test itself).
    await page.evaluate(async () => {
      await document.fonts.ready;
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    });
    assert.deepEqual(requests, []);
    await fetch(`${url}/control`);
    assert.deepEqual(requests, ['/control']);
    await screenshot(page, 'markdown-hostile-tex');
  } finally {
    collector.closeAllConnections?.();
    await new Promise((resolve) => collector.close(resolve));
  }
});
