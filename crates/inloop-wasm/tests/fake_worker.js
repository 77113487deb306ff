// A stand-in for web/kernel/worker.js speaking the same protocol (the engine's tests load it
// from a Blob URL): `loop` never ends until interrupted, anything else prints, displays,
// updates the display and returns a result; `fail` raises.
let count = 0;
let interrupt = null;
self.onmessage = ({ data }) => {
  if (data.type === 'init') {
    interrupt = data.interruptBuffer;
    setTimeout(() => postMessage({ type: 'ready', kernelInfo: { language: 'python', implementation: 'fake' } }), 10);
    return;
  }
  if (data.type !== 'execute') return;
  const id = String(data.id);
  count += 1;
  postMessage({ type: 'started', id, executionCount: count });
  if (data.code === 'loop') {
    const timer = setInterval(() => {
      if (!interrupt || interrupt[0] !== 2) return;
      interrupt[0] = 0;
      clearInterval(timer);
      postMessage({ type: 'output', id, output: { output_type: 'error', ename: 'KeyboardInterrupt', evalue: '', traceback: [] } });
      postMessage({ type: 'reply', id, status: 'error', executionCount: count });
    }, 10);
    return;
  }
  postMessage({ type: 'output', id, output: { output_type: 'stream', name: 'stdout', text: 'hello ' } });
  postMessage({ type: 'output', id, output: { output_type: 'stream', name: 'stdout', text: data.code + '\n' } });
  postMessage({ type: 'output', id, output: { output_type: 'display_data', data: { 'text/plain': 'old' }, metadata: {}, transient: { display_id: 'd' } } });
  postMessage({ type: 'update_display', id, displayId: 'd', data: { 'text/html': '<b>new</b>' }, metadata: {} });
  if (data.code === 'fail') {
    postMessage({ type: 'output', id, output: { output_type: 'error', ename: 'ValueError', evalue: 'bad', traceback: ['ValueError: bad'] } });
    postMessage({ type: 'reply', id, status: 'error', executionCount: count });
    return;
  }
  postMessage({ type: 'output', id, output: { output_type: 'execute_result', execution_count: count, data: { 'text/plain': String(count) }, metadata: {} } });
  postMessage({ type: 'reply', id, status: 'ok', executionCount: count });
};
