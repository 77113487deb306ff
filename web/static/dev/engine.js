// The dev page's script: loads the engine, exposes it on `window`, and (with ?doc=) opens a
// document with a bare editor of its first cell.
import init, { Notebook } from '/engine/inloop_wasm.js';

const $ = (id) => document.getElementById(id);
const log = (...items) => {
  $('log').textContent += `${items.map((i) => (typeof i === 'string' ? i : JSON.stringify(i))).join(' ')}\n`;
};

await init();
window.inloop = { Notebook };
window.inloopReady = true;
dispatchEvent(new Event('inloop-ready'));

const params = new URLSearchParams(location.search);
const docId = params.get('doc');
if (!docId) {
  $('status').textContent = 'engine loaded; add ?doc=ID&token=T to open a document';
} else {
  const nb = await Notebook.open({
    docId,
    token: params.get('token') ?? undefined,
    worker: params.get('worker') === 'none' ? null : (params.get('worker') ?? '/kernel/worker.js'),
    name: params.get('name') ?? undefined,
  });
  window.nb = nb;
  nb.onStatus((s) => {
    $('status').textContent = `${s.state}${s.code ? ` (${s.code} ${s.reason})` : ''}, ${s.unacknowledged} unacknowledged`;
    log('status', s);
  });
  const source = $('source');
  const first = () => nb.cellIds()[0];
  const show = () => {
    const id = first();
    source.disabled = !id;
    if (id && source.value !== nb.source(id)) source.value = nb.source(id);
    const cell = id ? nb.cell(id) : null;
    $('outputs').textContent = cell?.outputs ? JSON.stringify(cell.outputs, null, 1) : '';
  };
  nb.onChange(({ origin, changes }) => {
    log(origin, changes.map((c) => c.kind).join(','));
    show();
  });
  source.addEventListener('input', () => first() && nb.setSource(first(), source.value));
  $('run').disabled = false;
  $('run').addEventListener('click', () => first() && nb.run(first()));
  show();
}
