// Issue 6: a cell run in the browser shows its output in both contexts; the same cell switched
// to the server shows a different process id (the native kernel's, a real process on this
// machine running ipykernel) in both.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/run-targets.test.mjs
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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
  setCellTarget,
  shownCount,
  startRelay,
  synced,
  typeSource,
  waitFor,
} from './lib.mjs';

const pidOf = (text) => Number(text.match(/(\d+)\s*$/)?.[1]);

test('a cell runs in the browser, then on the server, seen in both contexts', { timeout: 150_000 }, async () => {
  const relay = await startRelay({ runtime: true });
  const a = await openContext();
  const b = await openContext();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const url = notebookUrl(relay.url, docId, token);
    const pageA = await openNotebook(a.context, url);
    const pageB = await openNotebook(b.context, url);
    await Promise.all([synced(pageA), synced(pageB)]);
    const [id] = await cellIds(pageA);
    assert.ok(id, 'a new notebook has a cell');

    await typeSource(pageA, id, 'import os\nos.getpid()');
    await waitFor('the source on b', () => pageB.evaluate((id) => window.inloopPage.nb.source(id) === 'import os\nos.getpid()', id));

    // In this browser (the default): Pyodide's pid, in both contexts.
    let started = Date.now();
    await cell(pageA, id).locator('button[data-action="run"]').click();
    assert.equal(await cellState(pageA, id, ['done', 'error']), 'done', await outputText(pageA, id));
    const browserOutput = await outputContaining(pageB, id, /\d+\s*$/);
    const browserPid = pidOf(browserOutput);
    assert.equal(pidOf(await outputText(pageA, id)), browserPid);
    console.log(`browser run: pid ${browserPid}, shown on b ${Date.now() - started} ms after the click`);
    assert.equal(await shownCount(pageB, id), 1);

    // The same cell on the server: the relay starts its local runtime (ipykernel from .venv).
    await setCellTarget(pageA, id, 'server');
    started = Date.now();
    await cell(pageA, id).locator('button[data-action="run"]').click();
    const serverOutput = await outputContaining(
      pageB,
      id,
      (text) => Number.isInteger(pidOf(text)) && pidOf(text) !== browserPid,
      90_000,
    ).catch(async (error) => {
      throw new Error(`${error.message}; a shows ${JSON.stringify(await outputText(pageA, id))}`);
    });
    const serverPid = pidOf(serverOutput);
    assert.equal(await cellState(pageA, id, ['done', 'error']), 'done');
    assert.equal(pidOf(await outputText(pageA, id)), serverPid, 'both contexts show the same pid');
    console.log(`server run: pid ${serverPid}, shown on b ${Date.now() - started} ms after the click (runtime start included)`);
    assert.notEqual(serverPid, browserPid);
    const cmdline = readFileSync(`/proc/${serverPid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    assert.match(cmdline, /ipykernel/, `pid ${serverPid} is a native kernel: ${cmdline}`);

    // The server's run shows its own execution count, in both.
    assert.ok((await shownCount(pageA, id)) >= 1);
    assert.equal(await shownCount(pageB, id), await shownCount(pageA, id));
    // The entry says which runtime ran it.
    const entry = await pageB.evaluate((id) => window.inloopPage.nb.executions().filter((e) => e.cell_id === id).at(-1), id);
    assert.equal(entry.target, 'server');
    assert.equal(entry.status, 'done');

    await screenshot(pageA, 'notebook-server-run');
    await screenshot(pageB, 'notebook-second-context');
    assert.deepEqual(a.errors.concat(b.errors), [], 'no page errors');
  } finally {
    await a.close();
    await b.close();
    await relay.stop();
  }
});
