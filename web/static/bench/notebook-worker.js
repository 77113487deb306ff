// First thing: the kernel worker, so Pyodide loads while the engine does (the engine adopts it).
window.startedWorker = new Worker('/kernel/worker.js', { type: 'module' });
