// Registers inloop's service worker (/sw.js), which keeps the page, the engine and Pyodide for
// offline use. Included by the pages as <script src="/sw-register.js" defer>.
//
// It registers once the page's kernel is up (its own first load done), then asks the worker to
// fetch the large files (Pyodide, its snapshot) in the background, so neither competes with that
// load. `window.inloopOffline` exposes the worker's state:
//   await inloopOffline.status()   -> {version, files, cached, totalBytes, cachedBytes, complete}
//   await inloopOffline.precache() -> the same, once everything is cached (or {error})
// and <html data-offline-ready="true"> is set once everything is cached.
(() => {
  if (!('serviceWorker' in navigator)) return;
  const ask = async (type) => {
    const registration = await navigator.serviceWorker.ready;
    const worker = registration.active;
    if (!worker) return { error: 'no active service worker' };
    // A worker being replaced by a new version drops the message: give up after a while (a
    // precache may take minutes on a slow network; a status answers at once).
    return new Promise((resolve) => {
      const done = (result) => {
        clearTimeout(timer);
        navigator.serviceWorker.removeEventListener('message', listener);
        resolve(result);
      };
      const listener = (event) => {
        if (event.data?.type === type) done(event.data);
      };
      const timer = setTimeout(() => done({ type, error: 'no answer from the service worker' }), type === 'status' ? 5_000 : 300_000);
      navigator.serviceWorker.addEventListener('message', listener);
      worker.postMessage({ type });
    });
  };
  const mark = (result) => {
    if (result?.complete) document.documentElement.dataset.offlineReady = 'true';
    return result;
  };
  window.inloopOffline = {
    status: () => ask('status').then(mark),
    precache: () => ask('precache').then(mark),
  };
  // The page's own first load goes first: the kernel worker fetches Pyodide and its snapshot as
  // the page opens; once it is up (or failed, or after 30 s, or on a page without a kernel) the
  // service worker fetches the large files, mostly revalidated from the HTTP cache by then.
  const settled = () =>
    new Promise((resolve) => {
      const started = Date.now();
      const check = () => {
        let kernel;
        try {
          kernel = window.inloopPage?.nb?.kernelState?.();
        } catch {
          kernel = 'gone';
        }
        // Only a notebook (/n/{id}) starts a kernel; its engine may not be open yet.
        const notebook = location.pathname.startsWith('/n/');
        const loading = notebook && (kernel === undefined || kernel === 'starting');
        if (!loading || Date.now() - started > 30_000) resolve();
        else setTimeout(check, 500);
      };
      check();
    });
  // Asks for the precache until a worker answers it (one being replaced drops the question), and
  // again when a new version takes over this page.
  const precache = async () => {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const result = await window.inloopOffline.precache();
      if (!result?.error) return;
      await new Promise((resolve) => setTimeout(resolve, 1_000 * (attempt + 1)));
    }
  };
  // Registered (or checked for a new version) only once the page's kernel is up too: a first
  // visit's install downloads the app's small files, which would compete with that load.
  const idle = window.requestIdleCallback ?? ((callback) => setTimeout(callback, 1));
  const register = () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).then(
      () => {
        navigator.serviceWorker.addEventListener('controllerchange', () => settled().then(() => idle(precache, { timeout: 2_000 })));
        precache();
      },
      (error) => console.warn('inloop: no offline support, the service worker did not register', error),
    );
  };
  const loaded = new Promise((resolve) => {
    if (document.readyState === 'complete') resolve();
    else window.addEventListener('load', resolve, { once: true });
  });
  loaded.then(settled).then(() => idle(register, { timeout: 2_000 }));
})();
