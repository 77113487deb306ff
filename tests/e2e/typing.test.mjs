// Issue 18, item 1: a collaborator's change never turns your typing into commands. One context
// (Ada) types without pause into a cell, text full of command-mode keys ("dd", "x", "a", "b",
// "m", "y", "z", "0 0", "i i") with Enter and arrow keys, while another context (Bob, with the
// page's own buttons and engine) and a stock Yjs client (tests/node/yjs_peer.mjs, which moves a
// cell the Yjs way: a copy inserted, the old map deleted) move her cell up and down, insert and
// delete cells above and below it, and delete her cell (Bob undoes that once, and deletes it
// again). Checked: every key landed in her cell in order (its final text equals a model of what
// she typed), her page never left edit mode, she removed or added no cell (ids and order equal
// what the others did), the notice with "keep my copy" shows when her cell is deleted, typing
// goes on into that copy, Bob's undo and then "keep my copy" bring the cell back where it was
// with all of it; the document converges everywhere.
//
// Before the fix, the first move took the focus from her editor and her next keys were commands.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/typing.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  cell,
  cellIds,
  editorText,
  ipynb,
  notebookUrl,
  openContext,
  openNotebook,
  screenshot,
  startRelay,
  synced,
  waitFor,
  yjsPeer,
} from './lib.mjs';

const TYPIST = 'typist';
const KEY_DELAY = 25; // ms between keys, on top of Playwright's own round trip per key
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One round of typing: command-mode letters, Enter, and arrow keys that stay inside the cell
 * (ArrowUp only below the first line, ArrowDown only above the last one, so none leaves the
 * cell on purpose). No brackets, quotes or colons: CodeMirror would close or indent them.
 */
const ROUND = [
  ['type', 'dd x a b m y z 0 0 i i'],
  ['key', 'Enter'],
  ['type', 'add = dd + x'],
  ['key', 'ArrowLeft'],
  ['key', 'ArrowLeft'],
  ['type', 'm'],
  ['key', 'ArrowRight'],
  ['key', 'ArrowRight'],
  ['key', 'Enter'],
  ['type', 'zz yy 0 0 i i bb'],
  ['key', 'ArrowUp'],
  ['type', 'y'],
  ['key', 'ArrowDown'],
  ['key', 'End'],
  ['key', 'Enter'],
  ['type', 'aa dd xx mm'],
  ['key', 'Enter'],
];

/** Types into the focused editor of `page` and keeps a model of the text and the caret. */
class Typist {
  text = '';
  caret = 0;
  keys = 0;

  constructor(page) {
    this.page = page;
  }

  get lineStart() {
    return this.text.lastIndexOf('\n', this.caret - 1) + 1;
  }

  /** [start, end] of the line `offset` lines from the caret's (-1 above, 1 below). */
  line(offset) {
    let start = this.lineStart;
    if (offset < 0) start = this.text.lastIndexOf('\n', start - 2) + 1;
    if (offset > 0) start = this.text.indexOf('\n', this.caret) + 1;
    const end = this.text.indexOf('\n', start);
    return [start, end < 0 ? this.text.length : end];
  }

  async type(chars) {
    await this.page.keyboard.type(chars, { delay: KEY_DELAY });
    this.text = this.text.slice(0, this.caret) + chars + this.text.slice(this.caret);
    this.caret += chars.length;
    this.keys += chars.length;
  }

  async key(name) {
    const column = this.caret - this.lineStart;
    switch (name) {
      case 'Enter':
        this.text = `${this.text.slice(0, this.caret)}\n${this.text.slice(this.caret)}`;
        this.caret++;
        break;
      case 'ArrowLeft':
        this.caret = Math.max(0, this.caret - 1);
        break;
      case 'ArrowRight':
        this.caret = Math.min(this.text.length, this.caret + 1);
        break;
      case 'ArrowUp':
      case 'ArrowDown': {
        const [start, end] = this.line(name === 'ArrowUp' ? -1 : 1);
        this.caret = start + Math.min(column, end - start);
        break;
      }
      case 'End':
        this.caret = this.line(0)[1];
        break;
    }
    await this.page.keyboard.press(name);
    await sleep(KEY_DELAY);
    this.keys++;
  }

  async round() {
    for (const [kind, what] of ROUND) {
      if (kind === 'key' && what === 'ArrowUp' && this.lineStart === 0) continue;
      if (kind === 'key' && what === 'ArrowDown' && this.line(0)[1] === this.text.length) continue;
      if (kind === 'type') await this.type(what);
      else await this.key(what);
    }
  }

  /** Types rounds until `done()` says stop, at least `min` of them. */
  async until(done, min = 1) {
    for (let rounds = 0; rounds < min || !done(); rounds++) await this.round();
  }
}

const docIds = (page) => page.evaluate(() => window.inloopPage.nb.cellIds());
const docCells = (page) =>
  page.evaluate(() => window.inloopPage.nb.cells().map((c) => ({ id: c.id, cell_type: c.cell_type, source: c.source })));

test('typing never becomes commands while others move, delete and insert cells around it', { timeout: 300_000 }, async () => {
  const relay = await startRelay();
  const a = await openContext();
  const b = await openContext();
  let peer;
  try {
    // The report: typing in the third of four cells while a Yjs client moved it to the top.
    const docId = await relay.createDoc(
      ipynb([
        { id: 'c1', source: 'one = 1' },
        { id: 'c2', type: 'markdown', source: '## two' },
        { id: TYPIST, source: '' },
        { id: 'c4', source: 'four = 4' },
      ]),
    );
    const token = await relay.mint(docId, 'execute');
    const url = notebookUrl(relay.url, docId, token);
    const pageA = await openNotebook(a.context, url, { name: 'Ada' });
    const pageB = await openNotebook(b.context, url, { name: 'Bob' });
    peer = await yjsPeer(relay, docId, token, 'JupyterLab');
    await Promise.all([synced(pageA), synced(pageB)]);

    // What the others did, applied to a model of the cell order: the typist adds or removes
    // nothing (but for "keep my copy", which puts her cell back as a new one: `mine` follows).
    const order = ['c1', 'c2', TYPIST, 'c4'];
    let mine = TYPIST;
    const at = (id) => order.indexOf(id);
    let last;
    const settle = (what) =>
      waitFor(
        `every peer to have the cells after "${what}" (${order.join(' ')})`,
        async () => {
          last = { a: await docIds(pageA), b: await docIds(pageB), yjs: (await peer.cells()).map((c) => c.id) };
          const want = JSON.stringify(order);
          return JSON.stringify(last.a) === want && JSON.stringify(last.b) === want && JSON.stringify(last.yjs) === want;
        },
        15_000,
      ).catch((error) => {
        throw new Error(`${error.message}; they have ${JSON.stringify(last)}`);
      });

    const bButton = async (id, action) => {
      const target = cell(pageB, id);
      await target.hover();
      await target.locator(`button[data-action="${action}"]`).click();
    };
    const ops = {
      yjsMove: (to) => [`the Yjs client moves the typist's cell to ${to}`, async () => {
        const from = at(mine);
        await peer.request({ cmd: 'move_cell', from, to });
        order.splice(to, 0, ...order.splice(from, 1));
      }],
      yjsInsert: (index, id) => [`the Yjs client inserts ${id} at ${index}`, async () => {
        await peer.request({ cmd: 'insert_cell', index, id, source: `made by the Yjs client` });
        order.splice(index, 0, id);
      }],
      yjsDelete: (id) => [`the Yjs client deletes ${id}`, async () => {
        await peer.request({ cmd: 'delete_cell', cell: at(id) });
        order.splice(at(id), 1);
      }],
      bMove: (direction) => [`Bob moves the typist's cell ${direction}`, async () => {
        const from = at(mine);
        await bButton(mine, `move-${direction}`);
        order.splice(from + (direction === 'up' ? -1 : 1), 0, ...order.splice(from, 1));
      }],
      bInsert: (index) => [`Bob inserts a cell at ${index}`, async () => {
        const id = await pageB.evaluate((index) => window.inloopPage.nb.insertCell(index, 'code', 'made by Bob'), index);
        order.splice(index, 0, id);
      }],
      bDelete: (id) => [`Bob deletes ${id}`, async () => {
        await bButton(id, 'delete-cell');
        order.splice(at(id), 1);
      }],
    };
    /** Runs `steps` one after the other (each seen by every peer before the next), a pause before each. */
    const perform = async (steps, pause = 250) => {
      for (const [what, run] of steps) {
        await sleep(pause);
        await run();
        await settle(what);
      }
    };

    // Every mode change of Ada's page: a remote change must never make it command mode.
    await pageA.evaluate(() => {
      window.modes = [];
      new MutationObserver(() => window.modes.push(document.body.dataset.mode)).observe(document.body, {
        attributes: true,
        attributeFilter: ['data-mode'],
      });
    });
    const modes = () => pageA.evaluate(() => window.modes.splice(0));
    const stayedInEditMode = async (what) => assert.ok(!(await modes()).includes('command'), `${what}: Ada's page stayed in edit mode`);

    const typist = new Typist(pageA);
    /** Her editor, her page's engine, Bob's and the Yjs client's: all have what she typed. */
    const checkText = async (what) => {
      let seen;
      await waitFor(
        `${what}: every peer to have the ${typist.keys} keys typed`,
        async () => {
          seen = {
            editor: await editorText(pageA, mine),
            a: (await docCells(pageA)).find((c) => c.id === mine)?.source,
            b: (await docCells(pageB)).find((c) => c.id === mine)?.source,
            yjs: (await peer.cells()).find((c) => c.id === mine)?.source,
          };
          return Object.values(seen).every((text) => text === typist.text);
        },
        15_000,
      ).catch((error) => {
        throw new Error(`${error.message}\nexpected ${JSON.stringify(typist.text)}\nseen ${JSON.stringify(seen, null, 1)}`);
      });
    };

    await cell(pageA, TYPIST).locator('.cm-content').click();
    await waitFor('Ada in edit mode', () => pageA.evaluate(() => document.body.dataset.mode === 'edit'), 5_000);
    await modes();

    // ---- 1. moves, inserts and deletes above and below the cell, while Ada types ----------------
    let done = false;
    await Promise.all([
      typist.until(() => done, 2),
      perform([
        ops.yjsMove(0), // the report: the third of four cells moved to the top
        ops.bInsert(0), // above
        ops.yjsInsert(2, 'p1'), // below
        ops.bMove('down'),
        ops.yjsDelete('p1'), // above
        ops.bDelete('c1'), // below
        ops.yjsMove(3), // to the end
        ops.bMove('up'),
        ops.bInsert(3), // below
        ops.yjsDelete('c2'), // above
        ops.yjsMove(2), // down by one
        ops.bMove('up'),
      ]).finally(() => (done = true)),
    ]);
    await checkText('after the moves');
    await stayedInEditMode('the moves');
    assert.deepEqual(await cellIds(pageA), order, 'Ada\'s page shows the document\'s order');
    assert.ok(await pageA.evaluate((id) => document.activeElement?.closest('.cell')?.dataset.cellId === id, TYPIST), 'her editor has the focus');
    console.log(`${typist.keys} keys typed while 12 changes moved her cell and inserted and deleted cells around it: all in place`);
    await screenshot(pageA, 'typing-after-moves');

    // ---- 2. Bob deletes the cell Ada is typing in; she types on into her copy ----------------
    const notice = () => cell(pageA, mine).locator('[data-testid="orphan-notice"]');
    /** Bob deletes her cell while she types (a whole round after it); returns where it was. */
    const deleteUnderHer = async () => {
      const index = at(mine);
      const keysBefore = typist.keys;
      let deleted = false;
      await Promise.all([
        (async () => {
          await typist.until(() => deleted, 1);
          await typist.round();
        })(),
        perform([ops.bDelete(mine)], 1_000).finally(() => (deleted = true)),
      ]);
      await notice().waitFor({ state: 'visible', timeout: 5_000 });
      assert.match(await notice().innerText(), /deleted/i, 'the notice says the cell was deleted');
      assert.equal(await editorText(pageA, mine), typist.text, 'every key typed, before and after the delete, is in her copy');
      assert.ok(await pageA.evaluate(() => document.body.dataset.mode === 'edit'), 'still in edit mode');
      await stayedInEditMode('the delete');
      await settle('typing into the deleted cell'); // and nothing else was deleted or added
      assert.deepEqual(await cellIds(pageA), [...order.slice(0, index), mine, ...order.slice(index)], 'her copy stays where the cell was');
      console.log(`the cell deleted by Bob; ${typist.keys - keysBefore} keys typed around that, all in her copy, no other cell touched`);
      return index;
    };
    const index = await deleteUnderHer();
    await screenshot(pageA, 'typing-deleted-notice');

    // Bob undoes his delete (while she types): the cell is back under its id, with her keys.
    done = false;
    await Promise.all([
      typist.until(() => done, 1),
      perform([[`Bob undoes the delete`, async () => {
        await pageB.keyboard.press('ControlOrMeta+z');
        order.splice(index, 0, mine);
      }]], 500).finally(() => (done = true)),
    ]);
    await checkText('after Bob\'s undo');
    await notice().waitFor({ state: 'detached', timeout: 5_000 });
    assert.deepEqual(await cellIds(pageA), order, 'the copy is the cell again');
    await stayedInEditMode('the undo');

    // And deletes it again.
    const before = order[(await deleteUnderHer()) - 1];

    // ---- 3. "keep my copy" brings it back where it was, with everything typed ------------------
    const known = new Set(await docIds(pageA));
    await cell(pageA, mine).locator('[data-testid="keep-copy"]').click();
    const kept = await waitFor('the kept cell in the document', async () => {
      const added = (await docIds(pageA)).filter((id) => !known.has(id));
      return added.length > 0 && added;
    });
    assert.equal(kept.length, 1, 'one cell put back');
    mine = kept[0];
    order.splice(order.indexOf(before) + 1, 0, mine);
    await settle('keep my copy');
    await checkText('after keep my copy');
    await cell(pageA, TYPIST).waitFor({ state: 'detached', timeout: 5_000 });
    assert.deepEqual(await cellIds(pageA), order, 'the copy became the cell, where it was');
    assert.ok(await pageA.evaluate((id) => document.activeElement?.closest('.cell')?.dataset.cellId === id, mine), 'her editor has the focus');
    await stayedInEditMode('keep my copy');

    // And it is a cell like any other again: typing goes on while it moves.
    done = false;
    await Promise.all([
      typist.until(() => done, 1),
      perform([ops.yjsMove(0), ops.bInsert(1), ops.bMove('down')]).finally(() => (done = true)),
    ]);
    await checkText('after it came back');
    await stayedInEditMode('the moves after keep my copy');

    // The document converges: both pages and the Yjs client have the same cells.
    await Promise.all([synced(pageA), synced(pageB)]);
    const cellsA = await docCells(pageA);
    assert.deepEqual(await docCells(pageB), cellsA);
    assert.deepEqual((await peer.cells()).map(({ id, cell_type, source }) => ({ id, cell_type, source })), cellsA);
    assert.deepEqual(cellsA.map((c) => c.id), order, 'the typist added or removed no cell but her kept copy');
    assert.deepEqual(await cellIds(pageA), order);
    assert.deepEqual(await cellIds(pageB), order);
    console.log(`all ${typist.keys} keys in the cell, in order; ${order.length} cells as the others left them; converged`);
    await screenshot(pageA, 'typing-kept');
    assert.deepEqual(a.errors.concat(b.errors), [], 'no page errors');
  } finally {
    await peer?.quit();
    await a.close();
    await b.close();
    await relay.stop();
  }
});
