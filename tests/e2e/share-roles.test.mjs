// Issue 6: a read link can view but not edit or run on the server; an edit link can edit but
// cannot run on the server. Checked in the UI (what the page offers) and at the relay (the
// document did not change, no server run was queued or happened, no runtime started).
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/share-roles.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  cell,
  cellIds,
  editorText,
  ipynb,
  makeShareLink,
  notebookUrl,
  observer,
  openContext,
  openNotebook,
  screenshot,
  startRelay,
  synced,
  waitFor,
} from './lib.mjs';

/** The share links the page makes (share dialog, a read and an edit link, from the clipboard). */
async function shareLinks(page) {
  return { read: await makeShareLink(page, 'read', 'Reader'), edit: await makeShareLink(page, 'edit', 'Editor') };
}

/**
 * Waits until everything `page`'s engine wrote has been settled by the relay: nothing
 * unacknowledged (stored), or the connection cut (refused). Resolves to the engine's status.
 */
function settled(page) {
  return waitFor('the page\'s changes stored or refused by the relay', () =>
    page.evaluate(() => {
      const status = window.inloopPage.nb.status();
      return (status.state === 'closed' || (status.state === 'synced' && status.unacknowledged === 0)) && status;
    }),
  );
}

/**
 * Waits until the observer `watch` has received everything the relay stored before now: it
 * writes a marker and waits for the relay's acknowledgement of it, which the relay sends on
 * the same socket after everything it stored earlier.
 */
async function caughtUp(watch, marker) {
  await watch.evaluate((marker) => window.nb.setNotebookMetadata('test_barrier', marker), marker);
  await waitFor(`the observer's marker ${marker} stored`, () =>
    watch.evaluate(() => window.nb.status().state === 'synced' && window.nb.status().unacknowledged === 0),
  );
}

/** Tries to type into cell `id`'s editor; resolves to whether its text changed. */
async function tryTyping(page, id, text) {
  const before = await editorText(page, id);
  await cell(page, id).locator('.cm-content').click({ force: true });
  await page.keyboard.type(text).catch(() => {});
  await page.keyboard.press('Backspace').catch(() => {});
  // Two frames rendered since the last key (the editor has shown whatever it took), and
  // whatever the engine got from it settled by the relay.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await settled(page);
  return (await editorText(page, id)) !== before;
}

/**
 * Which run controls are usable: the cell's run button, the toolbar's run and run-all, and the
 * server choices (the runtime selector, the cell's target).
 */
async function runControls(page, id) {
  const enabled = async (locator) => (await locator.count()) > 0 && (await locator.first().isEnabled());
  const runtime = page.locator('select[data-testid="runtime"]');
  const target = cell(page, id).locator('[data-testid="cell-target"]');
  const offered = async (select) => {
    if (!(await select.count())) return false;
    if (!(await select.isVisible()) || !(await select.isEnabled())) return false;
    return select.evaluate((el) =>
      el.tagName !== 'SELECT' ? true : [...el.options].some((o) => o.value === 'server' && !o.disabled),
    );
  };
  return {
    runButton: await enabled(cell(page, id).locator('button[data-action="run"]')),
    toolbarRun: await enabled(page.locator('#toolbar [data-action="run"], nav [data-action="run"]')),
    runAll: await enabled(page.locator('[data-action="run-all"]')),
    serverRuntimeChoice: await offered(runtime),
    serverCellChoice: await offered(target),
  };
}

test('read and edit links: what they may and may not do', { timeout: 120_000 }, async () => {
  const relay = await startRelay({ runtime: true });
  const owner = await openContext();
  const reader = await openContext();
  const editor = await openContext();
  try {
    const docId = await relay.createDoc(ipynb([{ id: 'code', source: 'import os\nos.getpid()' }, { id: 'md', type: 'markdown', source: '# Shared' }]));
    await owner.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: relay.url });
    const ownerPage = await openNotebook(owner.context, notebookUrl(relay.url, docId, relay.adminToken));
    await synced(ownerPage);
    const links = await shareLinks(ownerPage);
    await screenshot(ownerPage, 'share-links');
    const before = await (await relay.api('GET', `/api/docs/${docId}/ipynb`)).text();
    const watch = await observer(owner.context, relay, docId, relay.adminToken);

    // --- read link: views the notebook.
    const readPage = await openNotebook(reader.context, links.read);
    assert.deepEqual(await cellIds(readPage), ['code', 'md']);
    assert.match(await cell(readPage, 'code').locator('.cell-input').innerText(), /os\.getpid/);
    await screenshot(readPage, 'read-only-view');
    // It cannot edit: the editor is read-only, and typing changes nothing anywhere.
    const readEditable = await tryTyping(readPage, 'code', 'READER');
    const readOffers = await runControls(readPage, 'code');
    // Nor run on the server: even a run queued by hand through its engine is refused.
    await readPage.evaluate(() => {
      try {
        window.inloopPage.nb.run('code', 'server');
      } catch {
        // refused locally: fine
      }
    });

    // --- edit link: edits, but cannot run on the server.
    const editPage = await openNotebook(editor.context, links.edit);
    await synced(editPage);
    await cell(editPage, 'code').locator('.cm-content').click();
    await editPage.keyboard.press('ControlOrMeta+End');
    await editPage.keyboard.insertText('  # edited');
    await waitFor('the edit at the observer', () =>
      watch.evaluate(() => window.nb.source('code') === 'import os\nos.getpid()  # edited'),
    );
    const editOffers = await runControls(editPage, 'code');
    await screenshot(editPage, 'edit-link-view');
    // Whatever the UI offers, a server run queued through its engine must not happen.
    await editPage.evaluate(() => {
      try {
        window.inloopPage.nb.run('code', 'server');
      } catch {
        // refused locally: fine
      }
    });
    const editRunButton = cell(editPage, 'code').locator('button[data-action="run"]');
    if ((await editRunButton.count()) && (await editRunButton.isEnabled())) {
      await editPage.locator('select[data-testid="runtime"]').selectOption('server').catch(() => {});
      await editRunButton.click().catch(() => {});
    }

    // Whatever either page sent is settled by the relay (stored, or refused with the page cut
    // off), and the observer has everything the relay stored: a wrongly accepted run would be
    // in its queue now (and the relay would be starting its runtime for it).
    const settledStates = [await settled(readPage), await settled(editPage)];
    console.log('after the run attempts:', JSON.stringify(settledStates.map((s) => s.state)));
    await caughtUp(watch, 'after the run attempts');

    // --- at the relay: only the edit link's edit went in; no server run, no runtime.
    const after = await (await relay.api('GET', `/api/docs/${docId}/ipynb`)).text();
    const exported = JSON.parse(after);
    assert.equal([exported.cells[0].source].flat().join(''), 'import os\nos.getpid()  # edited');
    assert.equal([exported.cells[1].source].flat().join(''), '# Shared');
    assert.ok(!after.includes('READER'), 'the read link changed nothing');
    assert.deepEqual(exported.cells[0].outputs, [], 'nothing ran');
    assert.equal(exported.cells[0].execution_count, null);
    const state = await watch.evaluate(() => ({
      executions: window.nb.executions(),
      runtimes: window.nb.runtimes(),
      source: window.nb.source('code'),
    }));
    assert.deepEqual(state.executions.filter((e) => e.target === 'server'), [], 'no server run queued');
    assert.deepEqual(state.runtimes.filter((r) => r.kind === 'server'), [], 'no server runtime started');
    assert.ok(!before.includes('edited'));

    // --- the UI: the read page's editor is read-only and offers no server run; the edit page
    // offers no server run.
    console.log('read link UI:', JSON.stringify({ typingChangedText: readEditable, ...readOffers }));
    console.log('edit link UI:', JSON.stringify(editOffers));
    assert.equal(readEditable, false, 'the read link\'s editor is read-only');
    assert.equal(await readPage.evaluate(() => window.inloopPage.nb.source('code')).then((s) => s.includes('READER')), false);
    for (const [link, offers] of [['read', readOffers], ['edit', editOffers]]) {
      assert.equal(offers.runButton, false, `${link} link: the cell's run button is disabled`);
      assert.equal(offers.toolbarRun, false, `${link} link: the toolbar's run is disabled`);
      assert.equal(offers.runAll, false, `${link} link: run all is disabled`);
      assert.equal(offers.serverRuntimeChoice, false, `${link} link: no runtime choice`);
      assert.equal(offers.serverCellChoice, false, `${link} link: no cell target`);
    }
    assert.equal(
      await cell(readPage, 'code').locator('.cell-tools').isVisible(),
      false,
      'a read link has no move or delete buttons',
    );
  } finally {
    await owner.close();
    await reader.close();
    await editor.close();
    await relay.stop();
  }
});
