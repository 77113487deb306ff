// Issue 6: offline. A context goes offline, reloads the page (served by the service worker),
// edits and runs a cell in Pyodide; another context edits the same notebook meanwhile; once
// back online both show both changes.
//
// Context A reaches the relay through a TCP proxy (tests/browser/harness.mjs startProxy) that
// the test cuts: with Playwright's setOffline alone an open WebSocket stays up, and the relay must
// stay up for context B. A's origin is the proxy's, so its service worker and IndexedDB survive.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/offline.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  cell,
  cellIds,
  cellState,
  connection,
  engineSource,
  ipynb,
  notebookUrl,
  openContext,
  openNotebook,
  outputContaining,
  outputText,
  ready,
  screenshot,
  startProxy,
  startRelay,
  synced,
  typeSource,
  waitFor,
} from './lib.mjs';

test('a context offline reloads, edits and runs; the merge keeps both sides', { timeout: 150_000 }, async () => {
  const relay = await startRelay();
  const proxy = await startProxy(relay.port);
  const a = await openContext();
  const b = await openContext();
  try {
    const docId = await relay.createDoc(
      ipynb([
        { id: 'first', source: 'x = 20' },
        { id: 'second', type: 'markdown', source: 'notes:' },
      ]),
    );
    const token = await relay.mint(docId, 'execute');
    let pageA = await openNotebook(a.context, notebookUrl(proxy.url, docId, token));
    const pageB = await openNotebook(b.context, notebookUrl(relay.url, docId, token));
    await Promise.all([synced(pageA), synced(pageB)]);
    assert.deepEqual(await cellIds(pageA), ['first', 'second']);

    // The service worker has everything (sw-register.js marks <html data-offline-ready>).
    const precached = await waitFor(
      'the service worker to have everything',
      () => pageA.evaluate(async () => {
        const status = await window.inloopOffline?.status();
        return status?.complete && status;
      }),
      60_000,
    );
    console.log(`service worker ${precached.version}: ${precached.cached} files, ${(precached.cachedBytes / 1e6).toFixed(1)} MB cached`);

    // A goes offline: the network is off and the relay unreachable.
    await proxy.cut();
    await a.context.setOffline(true);
    await waitFor('a offline', async () => (await connection(pageA)) === 'offline');

    // A reloads: the service worker serves the page, the engine loads the notebook from IndexedDB.
    const reloadStarted = Date.now();
    await pageA.reload();
    await ready(pageA);
    const reloadMs = Date.now() - reloadStarted;
    assert.equal(await pageA.evaluate(() => navigator.serviceWorker.controller !== null), true, 'served by the service worker');
    assert.equal(await pageA.evaluate(() => window.crossOriginIsolated), true, 'still cross-origin isolated');
    assert.deepEqual(await cellIds(pageA), ['first', 'second'], 'the last state shown offline');
    // (offline, or connecting while the engine tries again)
    assert.match(await connection(pageA), /^(offline|connecting)$/);
    console.log(`offline reload to a rendered notebook: ${reloadMs} ms`);

    // A edits the code cell and runs it in Pyodide, offline.
    await typeSource(pageA, 'first', 'x = 20\nprint("offline", x + 1)');
    const runStarted = Date.now();
    await cell(pageA, 'first').locator('button[data-action="run"]').click();
    assert.equal(await cellState(pageA, 'first', ['done', 'error']), 'done', await outputText(pageA, 'first'));
    await outputContaining(pageA, 'first', 'offline 21');
    console.log(`offline run in Pyodide: ${Date.now() - runStarted} ms`);
    await screenshot(pageA, 'offline-edited-and-ran');

    // Meanwhile B, online, edits the markdown cell (through the engine: the view shows it rendered).
    await pageB.evaluate(() => {
      const { nb } = window.inloopPage;
      nb.editSource('second', [{ retain: nb.source('second').length }, { insert: ' written by b' }]);
    });
    await synced(pageB);

    // Back online: A reconnects and both converge.
    await proxy.restore();
    await a.context.setOffline(false);
    const backStarted = Date.now();
    await synced(pageA, 60_000);
    console.log(`back online -> synced in ${Date.now() - backStarted} ms`);
    await waitFor(
      'both sides on both pages',
      async () => {
        const [aSecond, bFirst, bOutput] = await Promise.all([
          engineSource(pageA, 'second'),
          engineSource(pageB, 'first'),
          outputText(pageB, 'first').catch(() => ''),
        ]);
        return aSecond === 'notes: written by b' && bFirst === 'x = 20\nprint("offline", x + 1)' && bOutput.includes('offline 21');
      },
      30_000,
    );
    // And the DOM of each shows the other's change.
    assert.match(await cell(pageA, 'second').innerText(), /written by b/);
    assert.match(await cell(pageB, 'first').locator('.cell-input').innerText(), /print\("offline", x \+ 1\)/);
    await screenshot(pageB, 'offline-merged');

    // The relay has the merge.
    const exported = JSON.parse(await (await relay.api('GET', `/api/docs/${docId}/ipynb`)).text());
    assert.equal([exported.cells[1].source].flat().join(''), 'notes: written by b');
    assert.match([exported.cells[0].source].flat().join(''), /offline/);
    assert.deepEqual(a.errors.concat(b.errors), [], 'no page errors');
  } finally {
    await a.close();
    await b.close();
    await proxy.stop();
    await relay.stop();
  }
});
