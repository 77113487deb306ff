// Registers inloop's service worker (/sw.js), which keeps the page, the engine and Pyodide for
// offline use. Included by the pages as <script src="/sw-register.js" defer>.
//
// Once the page has loaded and been idle for a moment, it asks the worker to fetch the large
// files (Pyodide, its snapshot) in the background, so they never compete with the page's own
// first load. `window.inloopOffline` exposes the worker's state:
//   await inloopOffline.status()   -> {version, files, cached, totalBytes, cachedBytes, complete}
//   await inloopOffline.precache() -> the same, once everything is cached (or {error})
// and <html data-offline-ready="true"> is set once everything is cached.
(() => {
  if (!('serviceWorker' in navigator)) return;
  const ask = async (type) => {
    const registration = await navigator.serviceWorker.ready;
    const worker = registration.active;
    if (!worker) return { error: 'no active service worker' };
    return new Promise((resolve) => {
      const listener = (event) => {
        if (event.data?.type !== type) return;
        navigator.serviceWorker.removeEventListener('message', listener);
        resolve(event.data);
      };
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
  const register = () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).then(
      () => {
        const idle = window.requestIdleCallback ?? ((callback) => setTimeout(callback, 1));
        setTimeout(() => idle(() => window.inloopOffline.precache(), { timeout: 5_000 }), 2_000);
      },
      (error) => console.warn('inloop: no offline support, the service worker did not register', error),
    );
  };
  if (document.readyState === 'complete') register();
  else window.addEventListener('load', register, { once: true });
})();
