// A small client of the worker protocol (see worker.js), exposed as `window.kernel`.
class KernelClient {
  constructor() {
    this.seq = 0;
    this.start();
  }

  start() {
    this.startedAt = performance.now();
    // console.html?snapshot=0 boots Python without the memory snapshot.
    const workerUrl = new URL('./worker.js', import.meta.url);
    const snapshot = new URLSearchParams(location.search).get('snapshot');
    if (snapshot !== null) workerUrl.searchParams.set('snapshot', snapshot);
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.interruptBuffer = self.crossOriginIsolated ? new Uint8Array(new SharedArrayBuffer(1)) : null;
    this.worker.postMessage({ type: 'init', interruptBuffer: this.interruptBuffer });
    this.executions = new Map(); // id -> { messages, resolve, reject, onMessage }
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => this.rejectReady(new Error(event.message || 'worker error'));
  }

  receive(message) {
    message.receivedAt = performance.now();
    if (message.type === 'ready') {
      this.kernelInfo = message.kernelInfo;
      this.readyAfterMs = message.receivedAt - this.startedAt;
      this.resolveReady(message.kernelInfo);
      return;
    }
    if (message.type === 'failed') {
      this.rejectReady(new Error(message.message));
      return;
    }
    const execution = this.executions.get(message.id);
    if (!execution) {
      console.warn('message for no known execution', message);
      return;
    }
    execution.messages.push(message);
    execution.onMessage?.(message);
    if (message.type === 'reply') {
      this.executions.delete(message.id);
      execution.resolve({ id: message.id, reply: message, messages: execution.messages });
    }
  }

  /** Runs `code`; resolves with { id, reply, messages } once the reply arrives. */
  run(code, onMessage) {
    const id = `exec-${++this.seq}`;
    return new Promise((resolve, reject) => {
      this.executions.set(id, { messages: [], resolve, reject, onMessage });
      this.worker.postMessage({ type: 'execute', id, code });
    });
  }

  /** Writes SIGINT into the interrupt buffer; returns the time it did. */
  interrupt() {
    if (!this.interruptBuffer) throw new Error('no interrupt buffer: the page is not crossOriginIsolated');
    this.interruptBuffer[0] = 2;
    return performance.now();
  }

  /** Terminates the worker and starts a new one (pending executions fail). */
  restart() {
    this.worker.terminate();
    for (const [id, execution] of this.executions) execution.reject(new Error(`restarted during ${id}`));
    this.start();
    return this.ready;
  }
}

const kernel = (window.kernel = new KernelClient());

// --- The console's own view -------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const status = (text) => ($('status').textContent = text);

function showReady() {
  status('starting…');
  kernel.ready.then(
    (info) => status(`${info.banner} · ready in ${Math.round(kernel.readyAfterMs)} ms`),
    (error) => status(`failed: ${error.message}`),
  );
}
showReady();

function render(message, box, displays) {
  if (message.type === 'clear_output') {
    box.querySelectorAll('.out').forEach((node) => node.remove());
    return;
  }
  if (message.type === 'update_display') {
    for (const node of displays.get(message.displayId) ?? []) node.replaceChildren(bundle(message.data));
    return;
  }
  if (message.type !== 'output') return;
  const output = message.output;
  const node = document.createElement('div');
  node.className = 'out';
  if (output.output_type === 'stream') {
    const pre = document.createElement('pre');
    pre.className = output.name;
    pre.textContent = output.text;
    node.append(pre);
  } else if (output.output_type === 'error') {
    const pre = document.createElement('pre');
    pre.className = 'stderr';
    pre.textContent = output.traceback.join('\n');
    node.append(pre);
  } else {
    node.append(bundle(output.data));
    const displayId = output.transient?.display_id;
    if (displayId) displays.set(displayId, [...(displays.get(displayId) ?? []), node]);
  }
  box.append(node);
}

function bundle(data) {
  const node = document.createElement('div');
  if (data['text/html']) node.innerHTML = data['text/html'];
  else if (data['image/svg+xml']) node.innerHTML = data['image/svg+xml'];
  else if (data['image/png'] || data['image/jpeg']) {
    const img = document.createElement('img');
    img.src = data['image/png'] ? `data:image/png;base64,${data['image/png']}` : `data:image/jpeg;base64,${data['image/jpeg']}`;
    node.append(img);
  } else {
    const pre = document.createElement('pre');
    pre.textContent = data['application/json'] ? JSON.stringify(data['application/json'], null, 2) : data['text/markdown'] ?? data['text/plain'] ?? '';
    node.append(pre);
  }
  return node;
}

async function runFromEditor() {
  const box = document.createElement('div');
  box.className = 'cell';
  const prompt = document.createElement('div');
  prompt.className = 'prompt';
  prompt.textContent = 'In [*]';
  box.append(prompt);
  $('cells').prepend(box);
  const displays = new Map();
  const { reply } = await kernel.run($('code').value, (message) => {
    if (message.type === 'started') prompt.textContent = `In [${message.executionCount}]`;
    render(message, box, displays);
  });
  if (reply.status !== 'ok') box.classList.add('error');
}

$('run').onclick = runFromEditor;
$('code').onkeydown = (event) => {
  if (event.key === 'Enter' && event.shiftKey) {
    event.preventDefault();
    runFromEditor();
  }
};
$('interrupt').onclick = () => kernel.interrupt();
$('restart').onclick = () => {
  kernel.restart();
  showReady();
};
