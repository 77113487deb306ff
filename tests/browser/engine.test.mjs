// The browser engine (crates/inloop-wasm, built into web/dist/engine by scripts/build-web.sh)
// against the real relay, in Debian's Chromium: two pages converge on concurrent edits of one
// cell; pages cut off by a relay restart edit offline and merge with nothing lost, their status
// going offline with N unacknowledged changes and back to synced with 0; a cell run in one
// page's Pyodide worker shows its outputs in the other page, which interrupts an endless loop
// there within 2 s (through the SharedArrayBuffer) and restarts that kernel, all through the
// document.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/browser/engine.test.mjs
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { launchChromium, startRelay, waitFor } from './harness.mjs';

/** A page of `relay` running the engine on `docId`, as `window.nb`; statuses in `window.statuses`. */
async function openEngine(context, relay, docId, token, options = {}) {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error('[page error]', error));
  page.on('console', (message) => {
    if (message.type() === 'error') console.error('[page console]', message.text());
  });
  await page.goto(`${relay.url}/dev/engine.html`);
  await page.waitForFunction(() => window.inloopReady === true);
  await page.evaluate(
    async ({ docId, token, relay, options }) => {
      window.statuses = [];
      window.nb = await window.inloop.Notebook.open({ docId, token, relay, ...options });
      window.nb.onStatus((status) => window.statuses.push(status));
    },
    { docId, token, relay: relay.wsUrl, options },
  );
  return page;
}

/** Two pages on `docId` without kernels, both synced; and the document's first cell. */
async function twoSyncedPages(context, relay, docId, token) {
  const a = await openEngine(context, relay, docId, token, { worker: null });
  const b = await openEngine(context, relay, docId, token, { worker: null });
  await Promise.all([synced(a), synced(b)]);
  return { a, b, cell: await a.evaluate(() => window.nb.cellIds()[0]) };
}

const status = (page) => page.evaluate(() => window.nb.status());
const source = (page, cell) => page.evaluate((cell) => window.nb.source(cell), cell);
const synced = (page) =>
  waitFor('synced with nothing unacknowledged', async () => {
    const s = await status(page);
    return s.state === 'synced' && s.unacknowledged === 0;
  });

/** Types `letters` one at a time at random places in `cell`, yielding between keystrokes. */
function type(page, cell, letters) {
  return page.evaluate(
    async ({ cell, letters }) => {
      for (const letter of [...letters]) {
        const text = window.nb.source(cell);
        let at = Math.floor(Math.random() * (text.length + 1));
        // A cursor never sits inside a surrogate pair (offsets are UTF-16 units).
        if (at > 0 && /[\uD800-\uDBFF]/.test(text[at - 1])) at -= 1;
        window.nb.editSource(cell, at > 0 ? [{ retain: at }, { insert: letter }] : [{ insert: letter }]);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
      }
    },
    { cell, letters },
  );
}

const sorted = (text) => [...text].sort().join('');

test('two engines in two pages converge on concurrent edits of one cell', async () => {
  const relay = await startRelay();
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'edit');
    const { a, b, cell } = await twoSyncedPages(browser.context, relay, docId, token);
    assert.ok(cell, 'a new document has one cell');
    assert.equal(await b.evaluate(() => window.nb.cellIds()[0]), cell);

    const lettersA = 'abcdefghijklmnopqrstuvwxyz'.repeat(4);
    const lettersB = '0123456789ÄÖ😀'.repeat(8); // an emoji is two UTF-16 units
    await Promise.all([type(a, cell, lettersA), type(b, cell, lettersB)]);

    let last;
    const text = await waitFor('both pages to show the same text', async () => {
      last = await Promise.all([source(a, cell), source(b, cell)]);
      const [ta, tb] = last;
      return ta === tb && [...ta].length === [...lettersA].length + [...lettersB].length && ta;
    }).catch((error) => {
      throw new Error(`${error.message}: ${JSON.stringify(last)}`);
    });
    assert.equal(sorted(text), sorted(lettersA + lettersB), 'every character kept');
    await Promise.all([synced(a), synced(b)]);

    // The change events said which edits were whose.
    const origins = await b.evaluate(
      (cell) =>
        new Promise((resolve) => {
          const seen = [];
          window.nb.onChange(({ origin, changes }) => {
            seen.push(...changes.map((c) => `${origin}:${c.kind}`));
            if (seen.length >= 2) resolve(seen);
          });
          window.nb.editSource(cell, [{ insert: '#' }]);
          window.nb.applyUpdate(window.nb.encodeState()); // nothing new: no event
          window.nb.insertCell(1, 'markdown', 'b was here');
        }),
      cell,
    );
    assert.deepEqual(origins, ['local:source_edited', 'local:cell_inserted']);
    await waitFor('the new cell on page a', () => a.evaluate(() => window.nb.cellIds().length === 2));

    // Presence goes both ways through awareness.
    await a.evaluate((cell) => window.nb.setPresence({ name: 'Ada', colour: '#c33', cellId: cell, selection: { anchor: 1, head: 3 } }), cell);
    const seen = await waitFor('a\'s presence on b', () =>
      b.evaluate(() => window.nb.presence().find((p) => !p.local && p.state?.name === 'Ada')),
    );
    assert.deepEqual(seen.state.selection, { anchor: 1, head: 3 });
    assert.equal(seen.state.cellId, cell);
  } finally {
    await browser.close();
    await relay.stop();
  }
});

test('engines cut off from the relay edit offline and merge with no edit lost', async () => {
  const data = mkdtempSync(path.join(tmpdir(), 'inloop-engine-test-'));
  let relay = await startRelay({ data });
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'edit');
    const { a, b, cell } = await twoSyncedPages(browser.context, relay, docId, token);
    await a.evaluate((cell) => window.nb.setSource(cell, 'shared:'), cell);
    await waitFor('the text on b', async () => (await source(b, cell)) === 'shared:');
    await Promise.all([synced(a), synced(b)]);

    // The relay goes away (SIGTERM closes sockets with 1001 and exits).
    await relay.stop();
    for (const page of [a, b]) {
      await waitFor('offline', async () => (await status(page)).state === 'offline');
    }

    // Both edit while offline: a adds a cell and types into the shared one, b types there too.
    const offlineA = await a.evaluate((cell) => {
      window.nb.insertCell(1, 'markdown', 'written offline by a');
      for (const letter of 'AAAA') window.nb.editSource(cell, [{ retain: 7 }, { insert: letter }]);
      return 5;
    }, cell);
    const offlineB = await b.evaluate((cell) => {
      for (const letter of 'bbb') window.nb.editSource(cell, [{ retain: 7 }, { insert: letter }]);
      return 3;
    }, cell);
    const offlineStatus = await status(a);
    assert.equal(offlineStatus.state, 'offline');
    assert.equal(offlineStatus.unacknowledged, offlineA);
    assert.equal((await status(b)).unacknowledged, offlineB);

    // The relay comes back on the same port with the same data.
    relay = await startRelay({ port: relay.port, data });
    await Promise.all([synced(a), synced(b)]);
    const merged = await waitFor('both pages to merge', async () => {
      const [ta, tb] = await Promise.all([source(a, cell), source(b, cell)]);
      return ta === tb && ta.length === 'shared:'.length + 7 && ta;
    });
    assert.ok(merged.startsWith('shared:'));
    assert.equal(sorted(merged.slice(7)), 'AAAAbbb');
    const cellsB = await b.evaluate(() => window.nb.cells().map((c) => c.source));
    assert.deepEqual(cellsB, [merged, 'written offline by a']);

    // The statuses went offline with the count, then synced with 0.
    const statuses = await a.evaluate(() => window.statuses);
    const wentOffline = statuses.findIndex((s) => s.state === 'offline' && s.unacknowledged === offlineA);
    assert.ok(wentOffline >= 0, JSON.stringify(statuses));
    assert.equal(statuses.find((s) => s.state === 'offline').code, 1001, 'the relay said "going away"');
    const back = statuses.slice(wentOffline).find((s) => s.state === 'synced' && s.unacknowledged === 0);
    assert.ok(back, JSON.stringify(statuses.slice(wentOffline)));
    console.log(
      'page a statuses:',
      statuses.map((s) => `${s.state}${s.code ? `(${s.code})` : ''}/${s.unacknowledged}`).join(' '),
    );

    // The relay stored the merge: a fresh export has it.
    const ipynb = await (await relay.api('GET', `/api/docs/${docId}/ipynb`)).text();
    assert.ok(ipynb.includes('written offline by a'));
    for (const letter of 'Ab') assert.ok(ipynb.includes(letter));
  } finally {
    await browser.close();
    await relay.stop();
    rmSync(data, { recursive: true, force: true });
  }
});

test('a cell run in one page\'s Pyodide worker shows its outputs in the other page', async () => {
  const relay = await startRelay();
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const a = await openEngine(browser.context, relay, docId, token); // the real /kernel/worker.js
    const b = await openEngine(browser.context, relay, docId, token, { worker: null });
    await Promise.all([synced(a), synced(b)]);
    const cell = await a.evaluate(() => window.nb.cellIds()[0]);
    await a.evaluate((cell) => window.nb.setSource(cell, "print('hello from a')\n6 * 7"), cell);
    const started = Date.now();
    const run = await a.evaluate((cell) => window.nb.run(cell), cell);
    const outputs = await waitFor(
      'the outputs on page b',
      () =>
        b.evaluate((cell) => {
          const outputs = window.nb.cell(cell).outputs;
          return outputs.some((o) => o.output_type === 'execute_result') && outputs;
        }, cell),
      60_000,
    );
    console.log(`run requested on a -> outputs on b in ${Date.now() - started} ms (a's worker started loading Pyodide as the page opened)`);
    assert.deepEqual(outputs[0], { output_type: 'stream', name: 'stdout', text: 'hello from a\n' });
    assert.equal(outputs[1].data['text/plain'], '42');
    const entry = await waitFor('the entry done on b', () =>
      b.evaluate((run) => {
        const entry = window.nb.executions().find((e) => e.id === run);
        return entry?.status === 'done' && entry;
      }, run),
    );
    assert.equal(entry.execution_count, 1);
    const runtimeId = await a.evaluate(() => window.nb.runtimeId);
    assert.equal(entry.runtime, runtimeId);
    const runtimes = await b.evaluate(() => window.nb.runtimes());
    assert.equal(runtimes.find((r) => r.session_id === runtimeId)?.kind, 'browser');
    assert.equal((await b.evaluate((cell) => window.nb.cell(cell), cell)).execution_count, 1);

    // Page b interrupts a's endless loop through the document; a's engine writes 2 into the
    // worker's SharedArrayBuffer (the relay's COOP/COEP headers make the page isolated).
    assert.equal(await a.evaluate(() => window.nb.canInterrupt()), true);
    await a.evaluate((cell) => window.nb.setSource(cell, 'while True: pass'), cell);
    const loop = await a.evaluate((cell) => window.nb.run(cell), cell);
    await waitFor('the loop running, seen on b', () =>
      b.evaluate((loop) => window.nb.executions().find((e) => e.id === loop)?.status === 'running', loop),
    );
    const interruptAt = Date.now();
    await b.evaluate((loop) => window.nb.interrupt(loop), loop);
    const ended = await waitFor('the loop interrupted, seen on b', () =>
      b.evaluate((loop) => {
        const entry = window.nb.executions().find((e) => e.id === loop);
        return entry && entry.status !== 'running' && entry;
      }, loop),
    );
    const interruptMs = Date.now() - interruptAt;
    console.log(`interrupt from page b -> entry ${ended.status} on b in ${interruptMs} ms`);
    assert.equal(ended.status, 'interrupted');
    assert.ok(interruptMs < 2000, `${interruptMs} ms`);
    const traceback = await b.evaluate((cell) => window.nb.cell(cell).outputs.at(-1), cell);
    assert.equal(traceback.ename, 'KeyboardInterrupt');

    // Page b restarts a's kernel through the document: a fresh worker, counting from 1.
    await b.evaluate((id) => window.nb.restartRuntime(id), runtimeId);
    await waitFor('the restart answered', () =>
      b.evaluate((id) => {
        const runtime = window.nb.runtimes().find((r) => r.session_id === id);
        return runtime.restarted_at >= runtime.restart_requested_at && runtime.status === 'idle';
      }, runtimeId),
    30_000);
    await a.evaluate((cell) => window.nb.setSource(cell, 'x = 1\nx + 1'), cell);
    const fresh = await a.evaluate((cell) => window.nb.run(cell), cell);
    const after = await waitFor('a run on the new worker', () =>
      b.evaluate((run) => {
        const entry = window.nb.executions().find((e) => e.id === run);
        return entry?.status === 'done' && entry;
      }, fresh),
    30_000);
    assert.equal(after.execution_count, 1);
  } finally {
    await browser.close();
    await relay.stop();
  }
});

test('an engine adopts a kernel worker its page started before the engine loaded', { timeout: 60_000 }, async () => {
  const relay = await startRelay();
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const page = await browser.context.newPage();
    await page.goto(`${relay.url}/dev/engine.html`);
    // Started, then left alone long enough for Pyodide to be up before anyone listens: the
    // worker answers the engine's `init` with `ready` then, rather than posting it unheard.
    await page.evaluate(() => {
      window.early = new Worker('/kernel/worker.js', { type: 'module' });
    });
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await page.waitForFunction(() => window.inloopReady === true);
    const result = await page.evaluate(
      async ({ docId, token }) => {
        const nb = await window.inloop.Notebook.open({ docId, token, startedWorker: window.early });
        window.nb = nb;
        const cell = await new Promise((resolve) => {
          const found = () => nb.cellIds()[0] && resolve(nb.cellIds()[0]);
          nb.onChange(found);
          found();
        });
        nb.setSource(cell, '1+1');
        const run = nb.run(cell);
        return new Promise((resolve) => {
          const done = () => {
            const entry = nb.execution(run);
            if (entry.status !== 'queued' && entry.status !== 'running') {
              resolve({ status: entry.status, outputs: nb.cell(cell).outputs, kernel: nb.kernelState() });
            }
          };
          nb.onChange(done);
        });
      },
      { docId, token },
    );
    assert.equal(result.status, 'done', JSON.stringify(result));
    assert.equal(result.outputs[0].data['text/plain'], '2');
    assert.equal(result.kernel, 'ready');
    // The engine used that worker, not a second one: the page created only one.
    const workers = await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.endsWith('/kernel/worker.js')).length);
    assert.equal(workers, 1);
  } finally {
    await browser.close();
    await relay.stop();
  }
});

test('a refused token closes the engine for good with the reason, instead of retrying', async () => {
  const relay = await startRelay();
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'edit');
    const forged = `${token.slice(0, -4)}AAAA`;
    const page = await openEngine(browser.context, relay, docId, forged, { worker: null });
    const closed = await waitFor('closed', async () => {
      const s = await status(page);
      return s.state === 'closed' && s;
    });
    assert.equal(closed.code, 4401, JSON.stringify(closed));
    assert.match(closed.reason, /token/);
    const elsewhere = await relay.mint(await relay.createDoc(), 'edit');
    const other = await openEngine(browser.context, relay, docId, elsewhere, { worker: null });
    const refused = await waitFor('closed', async () => {
      const s = await status(other);
      return s.state === 'closed' && s;
    });
    assert.equal(refused.code, 4403, JSON.stringify(refused));
  } finally {
    await browser.close();
    await relay.stop();
  }
});

test('a browser run keeps its outputs within the limits the relay told it', { timeout: 90_000 }, async () => {
  const relay = await startRelay({ flags: ['--max-document-bytes', '2000000'] });
  const browser = await launchChromium();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const page = await openEngine(browser.context, relay, docId, token);
    await synced(page);
    const cell = await page.evaluate(() => window.nb.cellIds()[0]);
    await page.evaluate(
      (cell) =>
        window.nb.setSource(
          cell,
          "import os\nfrom IPython.display import Image, display\ndisplay(Image(data=os.urandom(3_000_000), format='png'))\nprint('after')",
        ),
      cell,
    );
    const run = await page.evaluate((cell) => window.nb.run(cell), cell);
    const entry = await waitFor(
      'the run ended',
      () =>
        page.evaluate((run) => {
          const entry = window.nb.execution(run);
          return !['queued', 'running'].includes(entry.status) && entry;
        }, run),
      60_000,
    );
    assert.equal(entry.status, 'done', JSON.stringify(entry));
    const outputs = await page.evaluate((cell) => window.nb.cell(cell).outputs, cell);
    assert.equal(outputs[0].ename, 'OutputTooLarge', JSON.stringify(outputs[0]).slice(0, 300));
    assert.match(outputs[0].evalue, /size limit of 2\.0 MB/);
    assert.equal(outputs[1].text, 'after\n');
    // Still connected, nothing left unstored: the relay was never sent the image.
    await synced(page);
    assert.equal((await status(page)).state, 'synced');
  } finally {
    await browser.close();
    await relay.stop();
  }
});
