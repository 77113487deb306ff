// Issue 6: upload of a fixture .ipynb, then download, gives a file that passes
// nbformat.validate (the .venv's nbformat), with the fixture's cells and outputs.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/ipynb.test.mjs
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { cellIds, notebookUrl, openContext, openNotebook, ready, repo, screenshot, startRelay, synced, waitFor } from './lib.mjs';

const python = path.join(repo, '.venv/bin/python');
const fixtures = ['outputs-all-types.ipynb', 'unicode-everywhere.ipynb', 'raw-cells.ipynb'];

/** nbformat.validate on `file`; returns the notebook as nbformat reads it (throws if invalid). */
function validate(file) {
  return JSON.parse(
    execFileSync(
      python,
      [
        '-c',
        `import json, sys, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
print(json.dumps({"nbformat": nb.nbformat, "cells": [{"id": c.get("id"), "cell_type": c.cell_type, "source": c.source, "outputs": [o.output_type for o in c.get("outputs", [])]} for c in nb.cells]}))`,
        file,
      ],
      { encoding: 'utf8' },
    ),
  );
}

const sourceOf = (c) => [c.source].flat().join('');

test('upload a fixture .ipynb, download it, nbformat validates it', { timeout: 120_000 }, async () => {
  const relay = await startRelay();
  const browser = await openContext();
  const downloads = mkdtempSync(path.join(tmpdir(), 'inloop-e2e-ipynb-'));
  try {
    for (const [n, name] of fixtures.entries()) {
      const fixture = path.join(repo, 'tests/fixtures', name);
      const expected = JSON.parse(readFileSync(fixture, 'utf8'));

      // Upload on a blank notebook's page (the toolbar's file input).
      const docId = await relay.createDoc();
      const page = await openNotebook(browser.context, notebookUrl(relay.url, docId, relay.adminToken));
      await synced(page);
      await page.locator('input[type="file"][data-testid="upload"]').setInputFiles(fixture);
      // The upload may replace this notebook or open a new one: either way the page ends up
      // showing the fixture's cells.
      await waitFor(
        `the cells of ${name}`,
        async () => {
          await ready(page).catch(() => {});
          const shown = await page.evaluate(() => window.inloopPage?.nb?.cells().map((c) => c.source)).catch(() => null);
          return shown && JSON.stringify(shown) === JSON.stringify(expected.cells.map(sourceOf));
        },
        20_000,
      );
      assert.equal((await cellIds(page)).length, expected.cells.length);
      if (n === 0) await screenshot(page, 'uploaded-outputs-all-types');

      // Download through the toolbar.
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-action="download"]').click()]);
      const file = path.join(downloads, download.suggestedFilename() || `${n}.ipynb`);
      await download.saveAs(file);
      assert.match(path.basename(file), /\.ipynb$/, 'downloads as .ipynb');
      const got = validate(file);
      assert.equal(got.nbformat, 4);
      assert.deepEqual(
        got.cells.map((c) => [c.cell_type, c.source]),
        expected.cells.map((c) => [c.cell_type, sourceOf(c)]),
        `${name}: the same cells`,
      );
      assert.deepEqual(
        got.cells.map((c) => c.outputs),
        expected.cells.map((c) => (c.outputs ?? []).map((o) => o.output_type)),
        `${name}: the same outputs`,
      );
      console.log(`${name}: ${got.cells.length} cells uploaded, downloaded as ${path.basename(file)}, nbformat.validate passes`);
      await page.close();
    }
    assert.deepEqual(browser.errors, [], 'no page errors');
  } finally {
    await browser.close();
    await relay.stop();
    rmSync(downloads, { recursive: true, force: true });
  }
});
