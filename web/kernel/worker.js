// inloop's Python kernel: Pyodide in a dedicated module Web Worker.
//
//   const worker = new Worker('/kernel/worker.js', { type: 'module' });
//   worker.postMessage({ type: 'init', interruptBuffer });   // Uint8Array(1) on a SharedArrayBuffer, or null
//   worker.postMessage({ type: 'execute', id: 'e1', code: 'print(1)' });
//
// Pyodide starts loading the moment the worker is created. Executions run one at a time in the
// order they arrive. Worker → page:
//   { type: 'ready', kernelInfo } | { type: 'failed', message }    the answer to each `init`, once
//                                                  Pyodide is up (or could not start)
//   { type: 'started', id, executionCount }
//   { type: 'output', id, output }                 an nbformat v4 output (stream, display_data,
//                                                  execute_result, error)
//   { type: 'update_display', id, displayId, data, metadata }
//   { type: 'clear_output', id, wait }
//   { type: 'reply', id, status: 'ok' | 'error', executionCount }    the last message of `id`
// Output produced between executions (by a background asyncio task) carries `id: null`.
// kernelInfo also has `startup: { snapshot, ms }` (restored from the memory snapshot or booted;
// ms since the worker was created). `failed` can also come after `ready` if Pyodide suffers a
// fatal error: the page should then restart the worker.
// display_data outputs carry `transient: { display_id }` when they have one (as Jupyter's
// messages do): keep the id to apply update_display, but do not store `transient` in a notebook.
// Interrupt: the page writes 2 into the interrupt buffer (cell code, time.sleep and awaits all
// stop with KeyboardInterrupt; an interrupt written while idle is dropped). Restart: terminate
// the worker and create a new one (counts start again at 1).
// `worker.js?snapshot=0` boots Python instead of restoring build-web.sh's memory snapshot.
// Everything comes from this origin: Pyodide from ../pyodide/, wheels from ../wheels/.

const kernelBase = new URL('./', import.meta.url);
const pyodideBase = new URL('../pyodide/', kernelBase);
const wheelsBase = new URL('../wheels/', kernelBase);

let pyodide = null;
let kernel = null; // the inloop_kernel Python module
let interruptBuffer = null;
let interruptBufferApplied = false;
let currentId = null;
let executionCount = 0;
let pumping = false;
const queue = [];

const post = (message) => self.postMessage(message);

// --- Start-up: begins at once, in parallel with whatever the page does ----------------------------

// A memory snapshot of a started interpreter, made by scripts/build-web.sh: restoring it is
// several times faster than booting Python. `worker.js?snapshot=0` boots without it.
const useSnapshot = new URL(import.meta.url).searchParams.get('snapshot') !== '0';
const snapshotResponse = useSnapshot
  ? fetch(new URL('snapshot.bin', pyodideBase)).then((r) => (r.ok ? r : null), () => null)
  : Promise.resolve(null);

// Answered to every `init` (once known), not posted unasked: a page may create the worker
// first thing and hand it to the engine later, when nobody listened to an earlier message.
const startup = start().then(
  (info) => ({ type: 'ready', kernelInfo: info }),
  (error) => {
    const message = `Pyodide could not start: ${error?.message ?? error}`;
    console.error(message, error);
    return { type: 'failed', message };
  },
);
const ready = startup.then((outcome) => outcome.type === 'ready');

async function start() {
  const [{ loadPyodide }, source, snapshot] = await Promise.all([
    import(new URL('pyodide.mjs', pyodideBase).href),
    fetch(new URL('inloop_kernel.py', kernelBase)).then((response) => {
      if (!response.ok) throw new Error(`inloop_kernel.py: HTTP ${response.status}`);
      return response.text();
    }),
    snapshotResponse,
  ]);
  const options = { indexURL: pyodideBase.href, env: { HOME: '/home/pyodide' } };
  let fromSnapshot = false;
  if (snapshot) {
    try {
      // The body streams in while Pyodide fetches and compiles its wasm.
      const bytes = snapshot.arrayBuffer().then((buffer) => new Uint8Array(buffer));
      pyodide = await loadPyodide({ ...options, _loadSnapshot: bytes });
      fromSnapshot = true;
    } catch (error) {
      console.warn('inloop kernel: the Pyodide snapshot did not load; starting without it', error);
      pyodide = null;
    }
  }
  pyodide ??= await loadPyodide(options);
  applyInterruptBuffer();
  pyodide.FS.mkdirTree('/lib/inloop');
  pyodide.FS.writeFile('/lib/inloop/inloop_kernel.py', source);
  // Its own globals: nothing of the kernel's lands in __main__, the user's namespace.
  const scratch = pyodide.toPy({});
  kernel = pyodide.runPython(
    `
import sys, types
def _load_inloop_kernel(source):
    module = types.ModuleType("inloop_kernel")
    module.__file__ = "/lib/inloop/inloop_kernel.py"
    sys.modules["inloop_kernel"] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
_load_inloop_kernel`,
    { globals: scratch },
  )(source);
  scratch.destroy();
  kernel.setup(postFromPython, scheduleFlush, blockingSleep, wheelsBase.href, loadMicropip);
  const info = JSON.parse(kernel.kernel_info());
  // Ours, beside the Jupyter fields: how this worker started (the benchmark reads it).
  info.startup = { snapshot: fromSnapshot, ms: Math.round(performance.now()) };
  return info;
}

function postFromPython(json) {
  const message = JSON.parse(json);
  message.id = currentId;
  post(message);
}

// Python asks for a stream flush in `ms` (lines held back by its rate limit, partial lines).
function scheduleFlush(ms) {
  setTimeout(() => {
    if (interruptPending()) {
      scheduleFlush(ms); // let the interrupt reach the running code, not this call
      return;
    }
    try {
      kernel.flush_streams();
    } catch (error) {
      console.error('flush_streams failed', error);
    }
  }, ms);
}

let micropipLoading = null;
function loadMicropip() {
  micropipLoading ??= (async () => {
    const response = await fetch(new URL('micropip.txt', wheelsBase));
    if (!response.ok) throw new Error(`micropip is not served (${response.status}): run scripts/build-web.sh`);
    const wheel = (await response.text()).trim();
    await pyodide.loadPackage(new URL(wheel, wheelsBase).href, {
      messageCallback: () => {},
      errorCallback: (message) => console.warn(message),
    });
  })();
  micropipLoading.catch(() => {
    micropipLoading = null;
  });
  return micropipLoading;
}

// --- Interrupts ------------------------------------------------------------------------------------

function applyInterruptBuffer() {
  if (pyodide && !interruptBufferApplied) {
    interruptBufferApplied = true;
    if (interruptBuffer) pyodide.setInterruptBuffer(interruptBuffer);
  }
}

function takeInterrupt() {
  if (!interruptPending()) return false;
  interruptBuffer[0] = 0;
  return true;
}

// time.sleep for Python: waits on a private SharedArrayBuffer in 20 ms steps, watching the
// interrupt buffer (Pyodide's own sleep swallows an interrupt that comes while it waits).
// Returns true if interrupted, false when the time is up, null without SharedArrayBuffer.
const sleepCell = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : null;
function blockingSleep(ms) {
  if (!sleepCell) return null;
  const end = performance.now() + ms;
  for (;;) {
    if (takeInterrupt()) return true;
    const left = end - performance.now();
    if (left <= 0) return false;
    Atomics.wait(sleepCell, 0, 0, Math.min(left, 20));
  }
}

function interruptPending() {
  return interruptBuffer !== null && interruptBuffer[0] !== 0;
}

// Pyodide sees the buffer only while Python code runs. A cell waiting in an `await` runs none,
// so while a cell is in progress the worker looks at the buffer itself and cancels the cell's task.
function watchInterrupts() {
  if (!interruptBuffer) return () => {};
  const timer = setInterval(() => {
    if (!interruptPending()) return;
    interruptBuffer[0] = 0;
    let cancelled = false;
    try {
      cancelled = kernel.interrupt();
    } catch (error) {
      console.error('interrupt failed', error);
    }
    if (!cancelled) interruptBuffer[0] = 2; // not waiting in a task: leave it to Pyodide
  }, 50);
  return () => clearInterval(timer);
}

// --- Executions ------------------------------------------------------------------------------------

self.onmessage = (event) => {
  const message = event.data ?? {};
  switch (message.type) {
    case 'init':
      interruptBuffer = message.interruptBuffer ?? null;
      interruptBufferApplied = false;
      applyInterruptBuffer();
      startup.then(post);
      break;
    case 'execute':
      queue.push({ id: String(message.id), code: String(message.code ?? '') });
      pump();
      break;
    default:
      console.warn('inloop kernel: unknown message', message);
  }
};

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    const ok = await ready;
    while (queue.length > 0) {
      const { id, code } = queue.shift();
      executionCount += 1;
      const count = executionCount;
      currentId = id;
      if (interruptBuffer) interruptBuffer[0] = 0; // an interrupt sent while idle is stale
      post({ type: 'started', id, executionCount: count });
      let status = 'error';
      if (!ok) {
        post({ type: 'output', id, output: errorOutput('KernelError', 'Pyodide failed to start') });
      } else {
        const stopWatching = watchInterrupts();
        try {
          status = await kernel.run(code, count);
        } catch (error) {
          // Only a broken kernel gets here: inloop_kernel.run catches what the cell raises.
          const text = String(error?.message ?? error);
          post({ type: 'output', id, output: errorOutput(error?.type ?? 'KernelError', text) });
          if (/fatal error/i.test(text)) post({ type: 'failed', message: text });
        } finally {
          stopWatching();
        }
      }
      post({ type: 'reply', id, status, executionCount: count });
      currentId = null;
    }
  } finally {
    pumping = false;
  }
}

function errorOutput(ename, evalue) {
  return { output_type: 'error', ename, evalue, traceback: [`${ename}: ${evalue}`] };
}
