// Bench: does the service worker cost the notebook page anything? Navigation to the kernel
// ready and to the first `1+1` result on the real notebook page (/n/{id}), cold (a fresh
// profile) and warm (the same profile, twice more), with the service worker allowed and with it
// blocked.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node tests/e2e/bench-sw-first-result.mjs [--rounds 3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { ipynb, launchChromium, notebookUrl, startRelay } from './lib.mjs';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function once(context, url) {
  const page = await context.newPage();
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => window.inloopPage?.nb?.kernelState() === 'ready', null, { polling: 20, timeout: 60_000 });
  const kernel = Date.now() - started;
  await page.evaluate(() => window.inloopPage.nb.run('c'));
  await page.waitForFunction(() => window.inloopPage.nb.cell('c').outputs.some((o) => o.data?.['text/plain'] === '2'), null, { polling: 20, timeout: 60_000 });
  const result = Date.now() - started;
  await page.close();
  return { kernel, result };
}

const relay = await startRelay();
try {
  const docId = await relay.createDoc(ipynb([{ id: 'c', source: '1+1' }]));
  const url = notebookUrl(relay.url, docId, await relay.mint(docId, 'execute'));
  for (const serviceWorkers of ['allow', 'block']) {
    const cold = [];
    const warm = [];
    for (let round = 0; round < rounds; round += 1) {
      const profile = mkdtempSync(path.join(tmpdir(), 'inloop-bench-sw-'));
      const browser = await launchChromium({ userDataDir: profile, serviceWorkers });
      try {
        cold.push(await once(browser.context, url));
        await new Promise((resolve) => setTimeout(resolve, 4_000)); // the background precache
        warm.push(await once(browser.context, url), await once(browser.context, url));
      } finally {
        await browser.close();
        rmSync(profile, { recursive: true, force: true });
      }
    }
    const line = (runs) =>
      `kernel ready ${median(runs.map((r) => r.kernel))} ms, first 1+1 ${median(runs.map((r) => r.result))} ms (${runs.map((r) => r.result).join(', ')})`;
    console.log(`service worker ${serviceWorkers === 'allow' ? 'on ' : 'off'}: cold ${line(cold)}; warm ${line(warm)}`);
  }
} finally {
  await relay.stop();
}
