// inloop's service worker: a notebook opened once opens again with no network.
//
// Served at /sw.js, so its scope is the whole origin. What it caches is listed by
// /sw-manifest.json, which scripts/build-web.sh writes ("Service worker precache list"): every
// file of the app shell, the engine, the kernel worker, Pyodide (snapshot.bin too) and the
// wheels, each with its SHA-256. The build stamps the manifest's version into VERSION below, so a
// new build is a new service worker: it installs beside the old one, copies the files whose hash
// did not change from the old cache, fetches the rest, then takes over (skipWaiting + claim).
//
// - Manifest files: cache first (the cached copy is exactly the listed version), network when
//   not cached yet (and the response is kept). The query string is ignored (worker.js?snapshot=0
//   is the same file).
// - Navigations to / and /n/{id}: network first, the cached index.html / notebook.html when the
//   network fails (any /n/{id} is notebook.html: the page reads the id from its URL) or takes
//   longer than NAVIGATION_TIMEOUT_MS.
// - /api/* (the HTTP API, the WebSocket) and anything else: never touched.
// - The HTML output frame (/output-frame.html in <iframe sandbox>): browsers never let a service
//   worker answer a sandboxed frame, so offline an HTML output shows its plain text instead
//   (web/src/outputs.ts, htmlFrame).
//
// Responses from the cache carry Cross-Origin-Opener-Policy: same-origin and
// Cross-Origin-Embedder-Policy: require-corp (re-added if missing), so the page stays
// crossOriginIsolated offline (the kernel's SharedArrayBuffer interrupts) and the module worker
// may load. They keep every other header the relay sent, the Content-Security-Policy included: a
// page's policy and the style nonce in its body were cached together, so they still match.
//
// Install precaches only the small files (everything under LARGE_BYTES: the shell, the engine, the
// kernel, the wheels) and the large ones an older version's cache has with the same hash (copied),
// so the new worker is ready within moments; the other large ones (Pyodide's wasm,
// its stdlib, the 31 MB snapshot) are fetched afterwards in the background, never blocking a page:
// when the page asks (sw-register.js posts {type: 'precache'} once its kernel is up), or as a
// controlled page requests them. {type: 'status'} answers with what is cached.

const VERSION = '__INLOOP_SW_VERSION__'; // replaced by scripts/build-web.sh
const PREFIX = 'inloop-';
const CACHE = `${PREFIX}${VERSION}`;
const MANIFEST_URL = '/sw-manifest.json';
const LARGE_BYTES = 1_500_000;
const NAVIGATION_TIMEOUT_MS = 4_000;
const HASH_HEADER = 'x-inloop-sha256';

/** The manifest of this version: {version, files: [{path, size, sha256}]}, fetched once. */
let manifestPromise;
function manifest() {
  manifestPromise ??= (async () => {
    // The copy in the cache first: it is the one that matches VERSION.
    const cached = await caches.open(CACHE).then((cache) => cache.match(MANIFEST_URL));
    const response = cached ?? (await fetch(MANIFEST_URL, { cache: 'no-store' }));
    if (!response.ok) throw new Error(`${MANIFEST_URL}: HTTP ${response.status}`);
    const parsed = await response.clone().json();
    if (!cached) {
      if (parsed.version !== VERSION && VERSION !== '__INLOOP_SW_VERSION__') {
        // A build newer than this worker is on the server: it installs its own worker soon.
        throw new Error(`${MANIFEST_URL} is version ${parsed.version}, this worker is ${VERSION}`);
      }
      await (await caches.open(CACHE)).put(MANIFEST_URL, response);
    }
    parsed.byPath = new Map(parsed.files.map((file) => [file.path, file]));
    return parsed;
  })();
  manifestPromise.catch(() => {
    manifestPromise = undefined;
  });
  return manifestPromise;
}

/** `response` with the cross-origin isolation headers (and optionally our hash header) set. */
function isolated(response, sha256) {
  const headers = new Headers(response.headers);
  let changed = false;
  const set = (name, value) => {
    if (headers.get(name) !== value) {
      headers.set(name, value);
      changed = true;
    }
  };
  set('cross-origin-opener-policy', 'same-origin');
  set('cross-origin-embedder-policy', 'require-corp');
  if (sha256) set(HASH_HEADER, sha256);
  if (!changed) return response;
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

/** The same file with the same hash in an older inloop cache, if any. */
async function fromOlderCache(file) {
  for (const name of await caches.keys()) {
    if (!name.startsWith(PREFIX) || name === CACHE) continue;
    const response = await (await caches.open(name)).match(file.path);
    if (response && response.headers.get(HASH_HEADER) === file.sha256) return response;
  }
  return undefined;
}

/**
 * Puts `file` in this version's cache unless it is there: from an older cache or (unless
 * `copyOnly`) the network.
 */
async function precacheFile(cache, file, copyOnly = false) {
  if (await cache.match(file.path)) return;
  let response = await fromOlderCache(file);
  if (!response) {
    if (copyOnly) return;
    response = await fetch(file.path, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`${file.path}: HTTP ${response.status}`);
  }
  await cache.put(file.path, isolated(response, file.sha256));
}

async function precache(files, copyOnly = false) {
  const cache = await caches.open(CACHE);
  // A few at a time: enough to overlap, not so many that the page's own requests wait.
  const queue = [...files];
  const errors = [];
  const workers = Array.from({ length: 4 }, async () => {
    while (queue.length) {
      const file = queue.shift();
      await precacheFile(cache, file, copyOnly).catch((error) => errors.push(error));
    }
  });
  await Promise.all(workers);
  if (errors.length) throw errors[0];
}

/** Everything the manifest lists, once; then the older versions' caches are deleted. */
let fillPromise;
function fillAll() {
  fillPromise ??= (async () => {
    const { files } = await manifest();
    await precache(files);
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
  })();
  fillPromise.catch((error) => {
    console.warn('inloop service worker: precache incomplete, will retry', error);
    fillPromise = undefined;
  });
  return fillPromise;
}

async function status() {
  const { files } = await manifest();
  const cache = await caches.open(CACHE);
  const present = new Set((await cache.keys()).map((request) => new URL(request.url).pathname));
  let cached = 0;
  let cachedBytes = 0;
  let totalBytes = 0;
  for (const file of files) {
    totalBytes += file.size;
    if (present.has(file.path)) {
      cached += 1;
      cachedBytes += file.size;
    }
  }
  return { version: VERSION, files: files.length, cached, totalBytes, cachedBytes, complete: cached === files.length };
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const { files } = await manifest();
      await precache(files.filter((file) => file.size < LARGE_BYTES));
      // The large files this build shares with the previous one: copied, no download.
      await precache(files.filter((file) => file.size >= LARGE_BYTES), true).catch(() => {});
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  // The large files are not fetched here: activation would wait for them (and a page's requests
  // for activation), and they would compete with the first visit's own load of Pyodide. The
  // page asks for them once its kernel is up ({type: 'precache'}, which also keeps this worker
  // alive while they download); a controlled page's own requests fill the cache meanwhile.
  event.waitUntil(self.clients.claim());
});

self.addEventListener('message', (event) => {
  const { type } = event.data ?? {};
  if (type === 'precache') {
    event.waitUntil(
      fillAll()
        .then(status, (error) => ({ error: String(error) }))
        .then((result) => event.source?.postMessage({ type: 'precache', ...result })),
    );
  } else if (type === 'status') {
    event.waitUntil(
      status().then(
        (result) => event.source?.postMessage({ type: 'status', ...result }),
        (error) => event.source?.postMessage({ type: 'status', error: String(error) }),
      ),
    );
  }
});

/** The shell page a navigation to `url` shows, or undefined when it is not ours. */
function shellFor(url) {
  if (url.pathname === '/' || url.pathname === '/index.html') return '/index.html';
  if (/^\/n\/[^/]+\/?$/.test(url.pathname)) return '/notebook.html';
  return undefined;
}

async function navigate(request, shell) {
  const cache = await caches.open(CACHE);
  const network = fetch(request).then((response) => {
    // The page of this very build: keep it fresh in the cache (no token: the URL is not the key).
    if (response.ok && response.status === 200) cache.put(shell, isolated(response.clone()));
    return response;
  });
  const timeout = new Promise((resolve) => setTimeout(resolve, NAVIGATION_TIMEOUT_MS));
  try {
    const response = await Promise.race([network, timeout.then(() => undefined)]);
    if (response) return response;
  } catch {
    // offline or the relay is down: the cached shell below
  }
  const cached = (await cache.match(shell)) ?? (await caches.match(shell));
  if (cached) return isolated(cached);
  return network; // nothing cached: whatever the network says, in its own time
}

async function cacheFirst(request, file) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(file.path);
  if (cached) return isolated(cached);
  try {
    const response = await fetch(request);
    if (response.ok && response.status === 200) {
      cache.put(file.path, isolated(response.clone(), file.sha256)).catch(() => {});
    }
    return response;
  } catch (error) {
    // Offline with this version not fully cached: an older version's copy beats nothing.
    const older = await caches.match(file.path);
    if (older) return isolated(older);
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/api/') || url.pathname === '/healthz' || url.pathname === '/metrics') return;
  if (url.pathname === '/sw.js' || url.pathname === MANIFEST_URL) return;
  if (request.headers.has('range')) return; // partial responses are not cached

  if (request.mode === 'navigate') {
    const shell = shellFor(url);
    if (shell) event.respondWith(navigate(request, shell));
    return;
  }
  event.respondWith(
    manifest().then(
      ({ byPath }) => {
        const file = byPath.get(url.pathname);
        return file ? cacheFirst(request, file) : fetch(request);
      },
      () => fetch(request),
    ),
  );
});
