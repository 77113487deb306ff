// Bench (issue 6): a notebook of 200 cells (code and markdown, some code cells with outputs)
// opens, renders and is typeable without visible lag. Prints, cold (a fresh browser profile) and
// warm (the same profile again: service worker, HTTP cache and IndexedDB filled):
//   - ready: navigation -> <body data-ready="true"> (the first render)
//   - interactive: navigation -> a keystroke into the last cell's editor seen by the engine
//     (clicked where it is, retried every 300 ms until one lands)
//   - main thread busy after ready: the long tasks (> 50 ms) after the first render
//   - keystroke -> engine: keydown to the engine's local change event, median and p95 over 50 keys
//   - keystroke -> paint: keydown to the next animation frame after the engine saw it
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node tests/e2e/bench-200-cells.mjs [--rounds 3] [--keys 50]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { ipynb, launchChromium, notebookUrl, screenshot, startRelay, waitFor } from './lib.mjs';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, keys: { type: 'string', default: '50' }, cells: { type: 'string', default: '200' } } });
const rounds = Number(values.rounds);
const keys = Number(values.keys);
const CELLS = Number(values.cells);

/** 200 cells: 2 of every 3 code (every 4th of those with a stream and a result), the rest markdown; the last one code. */
function bigNotebook() {
  const cells = [];
  for (let i = 0; i < CELLS; i += 1) {
    if (i % 3 === 2 && i !== CELLS - 1) {
      cells.push({ type: 'markdown', source: `## Section ${i}\nSome *markdown* with \`code\`, a [link](https://example.org) and a list:\n- one\n- two` });
    } else {
      const source = `# cell ${i}\nimport math\ndef f_${i}(x):\n    return math.sqrt(x) * ${i}\n\nvalues = [f_${i}(n) for n in range(10)]\nvalues[-1]`;
      const outputs =
        i % 4 === 0
          ? [
              { output_type: 'stream', name: 'stdout', text: `computing ${i}\n`.repeat(3) },
              { output_type: 'execute_result', execution_count: i + 1, metadata: {}, data: { 'text/plain': String(3 * i) } },
            ]
          : [];
      cells.push({ type: 'code', source, outputs, count: outputs.length ? i + 1 : null });
    }
  }
  return ipynb(cells);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];
const fmt = (ms) => `${ms.toFixed(0)} ms`;

/** One navigation: times to ready and to interactive, then the keystroke latencies. */
async function measure(context, url, { shot } = {}) {
  const page = await context.newPage();
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => document.body?.dataset.ready === 'true' && window.inloopPage?.nb, null, { timeout: 60_000, polling: 'raf' });
  const readyMs = Date.now() - started;
  const readyAt = await page.evaluate(() => performance.now());
  const cellCount = await page.locator('.cell').count();
  if (cellCount !== CELLS) throw new Error(`the page shows ${cellCount} cells, not ${CELLS}`);

  // The last cell's editor: scroll to it, click, type one key, wait for the engine to have it.
  const last = page.locator('.cell').last();
  const id = await last.getAttribute('data-cell-id');
  const before = await page.evaluate((id) => window.inloopPage.nb.source(id), id);
  // As a user would: click where the editor is now (no waiting for the layout to hold still),
  // type, and try again if the keystroke did not land.
  let attempts = 0;
  for (;;) {
    attempts += 1;
    await last.scrollIntoViewIfNeeded();
    await last.locator('.cm-content').click({ force: true });
    await page.keyboard.press('ControlOrMeta+End');
    await page.keyboard.type('#');
    const landed = await waitFor('the keystroke in the engine', () => page.evaluate(({ id, before }) => window.inloopPage.nb.source(id) !== before, { id, before }), 300).catch(() => false);
    if (landed) break;
    if (attempts > 100) throw new Error('the last cell never took a keystroke');
  }
  const interactiveMs = Date.now() - started;

  // keydown -> the engine's local change event (and -> the next frame after it).
  await page.evaluate(() => {
    window.benchKeys = [];
    window.benchToEngine = [];
    window.benchToPaint = [];
    document.addEventListener('keydown', () => window.benchKeys.push(performance.now()), { capture: true });
    window.inloopPage.nb.onChange(({ origin, changes }) => {
      if (origin !== 'local' || !changes.some((c) => c.kind === 'source_edited')) return;
      const at = window.benchKeys.shift();
      if (at === undefined) return;
      const now = performance.now();
      window.benchToEngine.push(now - at);
      requestAnimationFrame(() => window.benchToPaint.push(performance.now() - at));
    });
  });
  for (let i = 0; i < keys; i += 1) {
    await page.keyboard.type(String.fromCharCode(97 + (i % 26)));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const { toEngine, toPaint } = await waitFor('every keystroke measured', () =>
    page.evaluate((keys) => window.benchToPaint.length >= keys && { toEngine: window.benchToEngine, toPaint: window.benchToPaint }, keys),
  );
  // Main-thread long tasks (over 50 ms) after the first render: the page still busy.
  const longTasks = await page.evaluate((readyAt) => window.benchLongTasks.filter((t) => t.startTime + t.duration > readyAt), readyAt);
  const busyAfterReady = longTasks.reduce((sum, t) => sum + t.duration, 0);
  const settledMs = longTasks.length ? Math.max(...longTasks.map((t) => t.startTime + t.duration)) - readyAt : 0;
  if (process.env.BENCH_VERBOSE) console.log({ readyMs, interactiveMs, attempts, busyAfterReady, settledMs, longTasks });
  if (shot) await screenshot(page, shot).catch(() => {});
  await page.close();
  return { readyMs, interactiveMs, attempts, busyAfterReady, settledMs, toEngine, toPaint };
}

const relay = await startRelay();
const results = { cold: [], warm: [] };
try {
  const docId = await relay.createDoc(bigNotebook());
  const token = await relay.mint(docId, 'execute');
  const url = notebookUrl(relay.url, docId, token);
  for (let round = 0; round < rounds; round += 1) {
    const profile = mkdtempSync(path.join(tmpdir(), 'inloop-bench-200-'));
    const browser = await launchChromium({ userDataDir: profile });
    await browser.context.addInitScript(() => {
      window.benchLongTasks = [];
      new PerformanceObserver((list) => {
        for (const t of list.getEntries()) window.benchLongTasks.push({ startTime: t.startTime, duration: t.duration });
      }).observe({ type: 'longtask', buffered: true });
    });
    try {
      results.cold.push(await measure(browser.context, url, { shot: round === 0 ? 'bench-200-cells' : undefined }));
      // Let the service worker finish its background precache before the warm run.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      results.warm.push(await measure(browser.context, url));
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  }
} finally {
  await relay.stop();
}

console.log(`\n${CELLS} cells (${Math.ceil((CELLS * 2) / 3)} code, ${Math.floor(CELLS / 3)} markdown), ${rounds} round(s), ${keys} keystrokes each; medians over rounds`);
for (const kind of ['cold', 'warm']) {
  const rs = results[kind];
  const allEngine = rs.flatMap((r) => r.toEngine);
  const allPaint = rs.flatMap((r) => r.toPaint);
  console.log(
    `${kind.padEnd(5)} ready ${fmt(median(rs.map((r) => r.readyMs)))}  interactive ${fmt(median(rs.map((r) => r.interactiveMs)))}` +
      `  keystroke->engine median ${median(allEngine).toFixed(1)} ms p95 ${p95(allEngine).toFixed(1)} ms` +
      `  keystroke->paint median ${median(allPaint).toFixed(1)} ms p95 ${p95(allPaint).toFixed(1)} ms` +
      `  main thread busy after ready ${fmt(median(rs.map((r) => r.busyAfterReady)))} (long tasks until ready+${fmt(median(rs.map((r) => r.settledMs)))})` +
      `  (rounds ready/interactive: ${rs.map((r) => `${r.readyMs}/${r.interactiveMs}`).join(', ')})`,
  );
}
