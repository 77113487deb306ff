// Shared pieces of the end-to-end tests (issue 6): the notebook page (web/dist, built by
// scripts/build-web.sh) served by a real `inloop serve`, driven through its DOM in Debian's
// Chromium. The page's DOM contract:
//
//   window.inloopPage = { nb }  once the engine is open; <body data-ready="true"> after the first render
//   .cell[data-cell-id][data-cell-type][data-state]   .cell-input .cm-editor, .cell-outputs .output,
//   .cell-count, .cell-duration, button[data-action=run], [data-testid=cell-target]
//   toolbar [data-action=run-all|interrupt|restart|add-cell|download|share],
//   input[type=file][data-testid=upload], select[data-testid=runtime],
//   the share dialog: [data-testid=share-role|share-expiry|share-name|share-make], rows
//   [data-testid=share-link] with [data-testid=share-revoke]; links go to the clipboard only,
//   and the token leaves the address bar once the page has loaded,
//   [data-testid=status-connection][data-state], status-kernel, status-lease, presence, .cm-remote-cursor,
//   <body data-mode="edit|command">, a cell deleted by someone else while edited here:
//   .cell.orphaned with [data-testid=orphan-notice] and its buttons [data-testid=keep-copy|discard-copy]
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

import { launchChromium, outDir, repo, startRelay as startHarnessRelay, waitFor } from '../browser/harness.mjs';

export { launchChromium, makeShareLink, startProxy, waitFor, repo } from '../browser/harness.mjs';

/** The relay of tests/browser/harness.mjs, serving `E2E_WEB` when set (else web/dist). */
export const startRelay = (options = {}) => startHarnessRelay({ web: process.env.E2E_WEB || undefined, ...options });

export const screenshotDir = path.join(outDir, 'screenshots');

/** Saves a full-page screenshot of `page` as tests/out/screenshots/NAME.png. */
export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * A browser context (its own Chromium with a fresh profile, as a second user's browser would
 * be). `errors` collects page errors and console errors for the test to report.
 */
export async function openContext() {
  const browser = await launchChromium();
  const errors = [];
  browser.context.on('page', (page) => watch(page, errors));
  return { ...browser, errors };
}

function watch(page, errors) {
  page.on('pageerror', (error) => {
    errors.push(String(error));
    if (process.env.E2E_VERBOSE) console.error('[page error]', error);
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && process.env.E2E_VERBOSE) console.error('[page console]', message.text());
  });
}

/** The notebook page of `docId` at `base` (a relay or a proxy URL) with `token`. */
export function notebookUrl(base, docId, token) {
  return `${base}/n/${docId}?token=${encodeURIComponent(token)}`;
}

/**
 * Opens `url` in a new page of `context` and waits for the first render; answers the page's
 * "your name" prompt with `name` when it asks (a first visit does; it covers the toolbar).
 */
export async function openNotebook(context, url, { timeout = 30_000, name = 'Tester' } = {}) {
  const page = await context.newPage();
  await page.goto(url);
  await ready(page, timeout);
  await answerNamePrompt(page, name);
  return page;
}

/** Fills in the name prompt (#name-prompt, [data-testid=name-input]) if the page shows it. */
export async function answerNamePrompt(page, name = 'Tester') {
  const prompt = page.locator('#name-prompt');
  if (!(await prompt.isVisible().catch(() => false))) {
    await prompt.waitFor({ state: 'visible', timeout: 500 }).catch(() => {});
  }
  if (!(await prompt.isVisible().catch(() => false))) return;
  await page.locator('[data-testid="name-input"]').fill(name);
  await page.locator('[data-testid="name-input"]').press('Enter');
  await prompt.waitFor({ state: 'hidden', timeout: 5_000 });
}

/** Waits for the page's first render (body[data-ready=true]) and its engine. */
export async function ready(page, timeout = 30_000) {
  await page.waitForFunction(() => document.body?.dataset.ready === 'true' && window.inloopPage?.nb, null, { timeout });
}

/** The connection status the page shows (data-state of status-connection). */
export const connection = (page) =>
  page.locator('[data-testid="status-connection"]').getAttribute('data-state');

/** Waits until the page says it is synced (and its engine has nothing unacknowledged). */
export function synced(page, timeout = 30_000) {
  return waitFor(
    'the page synced',
    async () =>
      (await connection(page)) === 'synced' &&
      (await page.evaluate(() => window.inloopPage.nb.status().unacknowledged === 0)),
    timeout,
  );
}

/** The cell elements' ids, in order. */
export const cellIds = (page) =>
  page.locator('.cell').evaluateAll((cells) => cells.map((cell) => cell.dataset.cellId));

/** The locator of the cell `id`, or of the `index`th cell (a number; negative from the end). */
export function cell(page, which) {
  if (typeof which === 'number') return page.locator('.cell').nth(which); // nth(-1) is the last
  return page.locator(`.cell[data-cell-id="${which}"]`);
}

/** The engine's source of cell `id`. */
export const engineSource = (page, id) => page.evaluate((id) => window.inloopPage.nb.source(id), id);

/** The text the editor of cell `id` shows (without widgets such as remote cursors' labels). */
export const editorText = (page, id) =>
  cell(page, id)
    .locator('.cm-content')
    .evaluate((content) =>
      [...content.querySelectorAll('.cm-line')]
        .map((line) => {
          const copy = line.cloneNode(true);
          for (const widget of copy.querySelectorAll('[contenteditable="false"], .cm-widgetBuffer')) widget.remove();
          return copy.textContent;
        })
        .join('\n'),
    );

/**
 * Replaces the source of cell `id` by typing into its editor (select all, then type). Resolves
 * once the engine has the text.
 */
export async function typeSource(page, id, text) {
  const editor = cell(page, id).locator('.cm-content');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Backspace');
  // CodeMirror auto-indents after a newline: type line by line with the indentation removed
  // first (Home then Shift+Home selects it).
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (i > 0) {
      await page.keyboard.press('Enter');
      await page.keyboard.press('Shift+Home');
      const selected = await page.evaluate(() => String(window.getSelection()));
      if (selected.trim() === '' && selected.length) await page.keyboard.press('Backspace');
    }
    if (line) await page.keyboard.insertText(line);
  }
  await waitFor(`the engine to have the text of cell ${id}`, async () => (await engineSource(page, id)) === text, 10_000);
}

/** Clicks the run button of cell `id`. */
export async function runCell(page, id) {
  await cell(page, id).locator('button[data-action="run"]').click();
}

/** Sets the per-cell target (default|browser|server), a <select> or buttons with that value. */
export async function setCellTarget(page, id, value) {
  const target = cell(page, id).locator('[data-testid="cell-target"]');
  if ((await target.evaluate((el) => el.tagName)) === 'SELECT') await target.selectOption(value);
  else await target.locator(`[value="${value}"], [data-value="${value}"]`).click();
}

/** Sets the notebook's runtime (browser|server). */
export async function setRuntime(page, value) {
  await page.locator('select[data-testid="runtime"]').selectOption(value);
}

/** The text of cell `id`'s outputs. */
export const outputText = (page, id) => cell(page, id).locator('.cell-outputs').innerText();

/** Waits until cell `id`'s data-state is one of `states` and returns it. */
export function cellState(page, id, states, timeout = 60_000) {
  return waitFor(
    `cell ${id} ${states.join('|')}`,
    async () => {
      const state = await cell(page, id).getAttribute('data-state');
      return states.includes(state) && state;
    },
    timeout,
  );
}

/**
 * Waits until cell `id`'s outputs match `text` (a string they contain, a RegExp, or a predicate
 * of the text); returns the text.
 */
export function outputContaining(page, id, text, timeout = 60_000) {
  return waitFor(
    `cell ${id}'s outputs to contain ${text}`,
    async () => {
      const shown = await outputText(page, id).catch(() => '');
      const match =
        typeof text === 'string' ? shown.includes(text) : typeof text === 'function' ? text(shown) : text.test(shown);
      return match && shown;
    },
    timeout,
  );
}

/** The execution count the cell shows (`[3]` -> 3), or null. */
export async function shownCount(page, id) {
  const text = (await cell(page, id).locator('.cell-count').innerText().catch(() => '')).trim();
  const match = text.match(/\[(\d+)\]/);
  return match ? Number(match[1]) : null;
}

/** A minimal nbformat 4.5 notebook of `cells` ([{type, source, outputs?}]). */
export function ipynb(cells) {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: cells.map((c, i) => {
      const base = { id: c.id ?? `cell-${i}`, cell_type: c.type ?? 'code', metadata: {}, source: c.source ?? '' };
      return base.cell_type === 'code' ? { ...base, execution_count: c.count ?? null, outputs: c.outputs ?? [] } : base;
    }),
  });
}

/** An observer of `docId` outside any page: a bare engine in the dev page, for checks. */
export async function observer(context, relay, docId, token) {
  const page = await context.newPage();
  await page.goto(`${relay.url}/dev/engine.html`);
  await page.waitForFunction(() => window.inloopReady === true);
  await page.evaluate(
    async ({ docId, token, relay }) => {
      window.nb = await window.inloop.Notebook.open({ docId, token, relay, worker: null });
    },
    { docId, token, relay: relay.wsUrl },
  );
  await waitFor('the observer synced', () => page.evaluate(() => window.nb.status().state === 'synced'));
  return page;
}

/**
 * A stock Yjs client (tests/node/yjs_peer.mjs: npm `yjs` + `y-websocket`) in the notebook
 * `docId`, driven over its stdin/stdout protocol (see the peer's header comment). Resolves once
 * it has synced. `request(cmd)` sends one command and resolves to its reply (an `error` reply
 * rejects); `cells()` is the peer's view of the cells ([{id, cell_type, source}]).
 */
export async function yjsPeer(relay, docId, token, name = 'yjs peer') {
  const child = spawn(
    process.execPath,
    [path.join(repo, 'tests/node/yjs_peer.mjs'), '--server', `${relay.wsUrl}/api/docs`, '--room', `${docId}/ws`, '--token', token, '--name', name],
    { cwd: repo, stdio: ['pipe', 'pipe', process.env.E2E_VERBOSE ? 'inherit' : 'ignore'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // The peer answers each command with exactly one ok/error/state event, in order.
  const pending = [];
  let synced = false;
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const event = JSON.parse(line);
    if (event.event === 'synced') synced = true;
    if (['ok', 'error', 'state'].includes(event.event)) pending.shift()?.(event);
  });
  const request = (cmd) =>
    new Promise((resolve, reject) => {
      pending.push((event) => (event.event === 'error' ? reject(new Error(`yjs peer: ${cmd.cmd}: ${event.message}`)) : resolve(event)));
      child.stdin.write(`${JSON.stringify(cmd)}\n`);
    });
  await waitFor('the yjs peer synced', () => synced, 15_000);
  return {
    request,
    cells: async () => (await request({ cmd: 'state' })).cells,
    async quit() {
      if (child.exitCode === null) child.stdin.end();
      await exited;
    },
  };
}
