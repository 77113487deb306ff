// Issue 6: a server cell that prints for 10 s goes on with every context closed; a context
// opened after it finished shows all its output and the execution count.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/server-persists.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  cell,
  cellIds,
  cellState,
  notebookUrl,
  openContext,
  openNotebook,
  outputContaining,
  outputText,
  screenshot,
  setRuntime,
  shownCount,
  startRelay,
  synced,
  typeSource,
  waitFor,
} from './lib.mjs';

const SECONDS = 10;
const code = `import time\nfor i in range(${SECONDS}):\n    print(f"tick {i}", flush=True)\n    time.sleep(1)\nprint("finished")`;

test('a server run goes on with every context closed', { timeout: 120_000 }, async () => {
  const relay = await startRelay({ runtime: true });
  let a = await openContext();
  let b = await openContext();
  let c;
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const url = notebookUrl(relay.url, docId, token);
    const pageA = await openNotebook(a.context, url);
    const pageB = await openNotebook(b.context, url);
    await Promise.all([synced(pageA), synced(pageB)]);
    const [id] = await cellIds(pageA);

    // The whole notebook on the server (the runtime selector), then run.
    await setRuntime(pageA, 'server');
    await typeSource(pageA, id, code);
    await synced(pageA);
    await cell(pageA, id).locator('button[data-action="run"]').click();
    await cellState(pageB, id, ['running'], 60_000);
    await outputContaining(pageB, id, 'tick 1', 30_000);
    const shownBeforeClose = await outputText(pageB, id);
    assert.ok(!shownBeforeClose.includes('finished'), 'still running when the contexts close');
    await screenshot(pageB, 'server-run-streaming');

    // Every context closes while it runs.
    const closedAt = Date.now();
    await Promise.all([a.close(), b.close()]);
    a = b = undefined;

    // No browser at all: wait for the run to end by asking the relay (an export is not a peer).
    const exported = await waitFor(
      'the run to finish with no browser open',
      async () => {
        const nb = JSON.parse(await (await relay.api('GET', `/api/docs/${docId}/ipynb`)).text());
        const text = nb.cells[0].outputs.map((o) => [o.text].flat().join('')).join('');
        return text.includes('finished') && nb;
      },
      (SECONDS + 30) * 1000,
    );
    console.log(`the run finished ${Date.now() - closedAt} ms after every context closed`);
    const count = exported.cells[0].execution_count;
    assert.ok(Number.isInteger(count) && count >= 1, `execution count ${count}`);

    // A new context sees every line and the count.
    c = await openContext();
    const pageC = await openNotebook(c.context, url);
    const shown = await outputContaining(pageC, id, 'finished', 20_000);
    for (let i = 0; i < SECONDS; i += 1) assert.ok(shown.includes(`tick ${i}`), `tick ${i} in ${JSON.stringify(shown)}`);
    assert.equal(await shownCount(pageC, id), count);
    assert.equal(await cell(pageC, id).getAttribute('data-state'), 'done');
    await screenshot(pageC, 'server-run-after-reopen');
    assert.deepEqual(c.errors, [], 'no page errors');
  } finally {
    await a?.close();
    await b?.close();
    await c?.close();
    await relay.stop();
  }
});
