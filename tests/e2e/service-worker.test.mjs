// The service worker (web/static/sw.js, list web/dist/sw-manifest.json): everything of the
// manifest ends up cached with the cross-origin isolation headers; / and /n/{any id} open with
// no network; /api is never cached; a new build (a changed file) installs a new worker that takes
// over, serves the new file, keeps the unchanged ones without downloading them again and drops
// the old cache.
//
// Runs on a copy of web/dist (the test changes a file and rewrites the manifest as the build does).
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/e2e/service-worker.test.mjs
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { notebookUrl, openContext, ready, repo, startProxy, startRelay, waitFor } from './lib.mjs';

/** Rewrites `web/sw-manifest.json` and the version in `web/sw.js` as scripts/build-web.sh does. */
function remanifest(web) {
  const script = readFileSync(path.join(repo, 'scripts/build-web.sh'), 'utf8');
  const js = script.match(/node --input-type=module - "\$dist" <<'JS'\n([\s\S]*?)\nJS\n/)?.[1];
  assert.ok(js, 'build-web.sh has the service worker section');
  execFileSync('node', ['--input-type=module', '-', web], { input: js, stdio: ['pipe', 'ignore', 'inherit'] });
  return JSON.parse(readFileSync(path.join(web, 'sw-manifest.json'), 'utf8'));
}

const status = (page) =>
  page.evaluate(async () => {
    const s = await window.inloopOffline?.status();
    return s ?? null;
  });

test('the service worker caches the app, serves it offline, and updates with a new build', { timeout: 120_000 }, async () => {
  const web = mkdtempSync(path.join(tmpdir(), 'inloop-sw-web-'));
  cpSync(process.env.E2E_WEB ?? path.join(repo, 'web/dist'), web, { recursive: true });
  assert.ok(existsSync(path.join(web, 'notebook.html')), 'web/dist has the page (scripts/build-web.sh)');
  const first = remanifest(web);
  const relay = await startRelay({ web });
  const proxy = await startProxy(relay.port);
  const browser = await openContext();
  try {
    const docId = await relay.createDoc();
    const token = await relay.mint(docId, 'execute');
    const page = await browser.context.newPage();
    await page.goto(notebookUrl(proxy.url, docId, token));
    await ready(page);
    const done = await waitFor('everything cached', async () => {
      const s = await status(page);
      return s?.complete && s;
    }, 60_000);
    assert.equal(done.version, first.version);
    assert.equal(done.cached, first.files.length);
    console.log(`version ${done.version}: ${done.cached} files, ${(done.cachedBytes / 1e6).toFixed(1)} MB`);

    // Cached entries carry COOP/COEP and the manifest's hash; /api is not in the cache.
    const entries = await page.evaluate(async (version) => {
      const cache = await caches.open(`inloop-${version}`);
      const out = {};
      for (const request of await cache.keys()) {
        const response = await cache.match(request);
        out[new URL(request.url).pathname] = {
          coop: response.headers.get('cross-origin-opener-policy'),
          coep: response.headers.get('cross-origin-embedder-policy'),
          sha256: response.headers.get('x-inloop-sha256'),
        };
      }
      return out;
    }, done.version);
    for (const file of first.files) {
      assert.equal(entries[file.path]?.coop, 'same-origin', file.path);
      assert.equal(entries[file.path]?.coep, 'require-corp', file.path);
    }
    assert.equal(entries['/pyodide/snapshot.bin'].sha256, first.files.find((f) => f.path === '/pyodide/snapshot.bin').sha256);
    assert.ok(!Object.keys(entries).some((p) => p.startsWith('/api/')), 'nothing of /api cached');

    // Offline: / and a notebook never opened here both come from the cache, isolated.
    await proxy.cut();
    await browser.context.setOffline(true);
    for (const route of ['/', `/n/never-opened-${Date.now()}?token=x`]) {
      const offline = await browser.context.newPage();
      const response = await offline.goto(`${proxy.url}${route}`);
      assert.equal(response.status(), 200, route);
      assert.equal(response.fromServiceWorker(), true, route);
      assert.equal(await offline.evaluate(() => window.crossOriginIsolated), true, route);
      await offline.close();
    }
    await proxy.restore();
    await browser.context.setOffline(false);

    // A new build: one changed file. The next visit installs the new worker, which takes over.
    const workerPath = path.join(web, 'kernel/worker.js');
    writeFileSync(workerPath, `${readFileSync(workerPath, 'utf8')}\n// build 2\n`);
    const second = remanifest(web);
    assert.notEqual(second.version, first.version);
    const swRequests = [];
    browser.context.on('request', (request) => {
      if (request.serviceWorker()) swRequests.push(new URL(request.url()).pathname);
    });
    await page.reload();
    await ready(page);
    // (Polled once a second: a worker busy answering never counts as idle, and the new version
    // activates only once the old one is.)
    const updated = await waitFor('the new version active and complete', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const s = await status(page);
      if (process.env.E2E_VERBOSE) {
        console.log(JSON.stringify(s), await page.evaluate(async () => {
          const r = await navigator.serviceWorker.getRegistration();
          return JSON.stringify({ installing: r?.installing?.state, waiting: r?.waiting?.state, active: r?.active?.state });
        }));
      }
      return s?.version === second.version && s.complete && s;
    }, 60_000);
    const served = await page.evaluate(() => fetch('/kernel/worker.js').then((r) => r.text()));
    assert.ok(served.includes('// build 2'), 'the new worker.js is served');
    const cacheNames = await waitFor('the old cache dropped', async () => {
      const names = await page.evaluate(() => caches.keys());
      return names.length === 1 && names;
    });
    assert.deepEqual(cacheNames, [`inloop-${second.version}`]);
    if (swRequests.length) {
      // (Chromium reports the worker's requests when it can.)
      assert.ok(!swRequests.includes('/pyodide/snapshot.bin'), `unchanged files are not downloaded again: ${swRequests}`);
    }
    console.log(`new build ${updated.version} took over; the service worker fetched: ${[...new Set(swRequests)].join(' ') || '(not reported)'}`);

    // The list page (no kernel) registers the worker at once and caches everything too.
    const other = await openContext();
    try {
      const list = await other.context.newPage();
      const started = Date.now();
      await list.goto(`${relay.url}/`);
      const listed = await waitFor('the list page\'s worker to have everything', async () => {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const s = await status(list);
        return s?.complete && s;
      }, 30_000);
      assert.equal(listed.version, second.version);
      console.log(`from the list page alone: everything cached ${Date.now() - started} ms after navigation`);
    } finally {
      await other.close();
    }
    assert.deepEqual(browser.errors, [], 'no page errors');
  } finally {
    await browser.close();
    await proxy.stop();
    await relay.stop();
    rmSync(web, { recursive: true, force: true });
  }
});
