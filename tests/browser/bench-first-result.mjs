// Benchmark: navigation to the first `1+1` result, in headless Chromium against a real relay.
//
//   node tests/browser/bench-first-result.mjs [--rounds N]      (after scripts/build-web.sh)
//
// For each page, N rounds of: a fresh profile (cold: nothing cached, no IndexedDB), then the
// browser started again on that profile (warm: HTTP cache, compiled code and, for the notebook,
// its IndexedDB copy). Times are the page's performance.now() when the result is in, i.e. from
// the start of the navigation. Pages (web/static/bench/):
//   pyodide   the floor the issue names: a bare page that only loads Pyodide and runs 1+1
//   worker    inloop's kernel worker alone (its memory snapshot, no engine, no document)
//   notebook  inloop: the engine opens a notebook, syncs it, runs its first cell `1+1` in the
//             worker and the result is written into the document
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchChromium, repo, startRelay } from './harness.mjs';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 5;
if (!existsSync(path.join(repo, 'web/dist/engine/inloop_wasm_bg.wasm'))) {
  console.error('web/dist has no engine: run scripts/build-web.sh first');
  process.exit(2);
}

const relay = await startRelay();
const ipynb = JSON.stringify({
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {},
  cells: [{ cell_type: 'code', id: 'first', source: '1+1', metadata: {}, outputs: [], execution_count: null }],
});

async function firstResult(userDataDir, url) {
  const { context, close } = await launchChromium({ userDataDir });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(url);
    const result = await page.waitForFunction(() => window.benchResult, null, { timeout: 60_000 });
    const { ms, value, error } = await result.jsonValue();
    if (error || value !== '2') throw new Error(`${url}: ${error ?? `got ${value}`}`);
    return ms;
  } finally {
    await close();
  }
}

const pages = {
  pyodide: async () => `${relay.url}/bench/pyodide.html`,
  worker: async () => `${relay.url}/bench/worker.html`,
  notebook: async () => {
    const doc = await relay.createDoc(ipynb);
    return `${relay.url}/bench/notebook.html?doc=${doc}&token=${await relay.mint(doc, 'execute')}`;
  },
};
const times = Object.fromEntries(Object.keys(pages).map((name) => [name, { cold: [], warm: [] }]));
for (let round = 0; round < rounds; round += 1) {
  // Interleaved, so a slow spell of this shared machine hits every page alike.
  for (const [name, url] of Object.entries(pages)) {
    const profile = mkdtempSync(path.join(tmpdir(), 'inloop-bench-profile-'));
    try {
      const target = await url();
      times[name].cold.push(await firstResult(profile, target));
      times[name].warm.push(await firstResult(profile, target));
    } finally {
      rmSync(profile, { recursive: true, force: true });
    }
  }
  process.stderr.write(`round ${round + 1}/${rounds} done\n`);
}
await relay.stop();

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const min = (xs) => sorted(xs)[0];
const fmt = (ms) => `${Math.round(ms)} ms`.padStart(8);
console.log(`first 1+1 result after navigation, ${rounds} rounds (min / median)`);
console.log(`${'page'.padEnd(10)} ${'cold'.padStart(19)} ${'warm'.padStart(19)}`);
for (const [name, { cold, warm }] of Object.entries(times)) {
  console.log(`${name.padEnd(10)} ${fmt(min(cold))} /${fmt(median(cold))}  ${fmt(min(warm))} /${fmt(median(warm))}`);
}
const warm = median(times.notebook.warm);
for (const floor of ['pyodide', 'worker']) {
  const base = median(times[floor].warm);
  console.log(`notebook warm vs ${floor} warm (medians): ${(((warm - base) / base) * 100).toFixed(1)}%`);
}
console.log(
  `target: warm notebook within 10% of the floor and under 2500 ms: median ${Math.round(warm)} ms ` +
    `${warm <= 1.1 * median(times.pyodide.warm) && warm < 2500 ? 'met' : 'MISSED'} (vs the bare Pyodide page)`,
);
