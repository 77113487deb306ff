// The script of bench/worker.html (a file: the relay's Content-Security-Policy allows no inline script).
const worker = new Worker('/kernel/worker.js', { type: 'module' });
worker.postMessage({ type: 'init', interruptBuffer: null });
worker.postMessage({ type: 'execute', id: 'bench', code: '1+1' });
worker.onmessage = ({ data }) => {
  if (data.type === 'output' && data.output.output_type === 'execute_result') {
    window.benchResult = { ms: performance.now(), value: data.output.data['text/plain'] };
  } else if (data.type === 'failed') {
    window.benchResult = { error: data.message };
  }
};
