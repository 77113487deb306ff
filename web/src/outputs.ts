// Rendering of nbformat outputs: stream text (ANSI colours, long streams collapsed), rich
// displays (HTML in a sandboxed iframe, PNG, JPEG, SVG as images, JSON, markdown), errors.

import { ansiToHtml, escapeHtml } from './ansi';
import { renderMarkdown } from './markdown';

/** Streams longer than this are collapsed behind an expand control. */
export const COLLAPSE_LINES = 200;

type Output = Record<string, any>;

/** The text of a multiline string (nbformat allows a list of lines). */
export function joinText(value: unknown): string {
  if (Array.isArray(value)) return value.join('');
  return typeof value === 'string' ? value : value == null ? '' : String(value);
}

/** Terminal carriage returns: text after a `\r` overwrites its line, as a console shows it. */
export function foldCarriageReturns(text: string): string {
  if (!text.includes('\r')) return text;
  return text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((line) => {
      if (!line.includes('\r')) return line;
      let result = '';
      for (const part of line.split('\r')) {
        result = part + result.slice(part.length);
      }
      return result;
    })
    .join('\n');
}

// Richest first, as JupyterLab picks.
const MIME_ORDER = [
  'application/vnd.jupyter.widget-view+json',
  'text/html',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'image/gif',
  'text/markdown',
  'text/latex',
  'application/json',
  'application/javascript',
  'text/plain',
];

function pickMime(data: Record<string, unknown>): string | undefined {
  for (const mime of MIME_ORDER) {
    if (mime === 'application/vnd.jupyter.widget-view+json') continue; // no widgets: fall through
    if (mime in data) return mime;
  }
  const json = Object.keys(data).find((m) => m.endsWith('+json'));
  return json ?? Object.keys(data)[0];
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A `<pre>` of terminal text, showing the last `COLLAPSE_LINES` lines of a long one. */
function terminalText(text: string, cls: string, expanded: Set<string>, key: string): HTMLElement {
  const wrap = el('div', 'output-text-wrap');
  const pre = el('pre', cls);
  text = foldCarriageReturns(text);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length > COLLAPSE_LINES && !expanded.has(key)) {
    const hidden = lines.length - COLLAPSE_LINES;
    const more = el('button', 'output-expand', `Show ${hidden} more line${hidden === 1 ? '' : 's'} (${lines.length} in all)`);
    more.dataset.action = 'expand-output';
    more.addEventListener('click', () => {
      expanded.add(key);
      pre.innerHTML = ansiToHtml(text);
      more.remove();
    });
    wrap.append(more);
    pre.innerHTML = ansiToHtml(lines.slice(-COLLAPSE_LINES).join('\n') + '\n');
    wrap.dataset.collapsed = 'true';
  } else {
    pre.innerHTML = ansiToHtml(text);
  }
  wrap.append(pre);
  return wrap;
}

let frameSeq = 0;
const frames = new Map<string, HTMLIFrameElement>();
let listening = false;

function listenToFrames() {
  if (listening) return;
  listening = true;
  window.addEventListener('message', (event) => {
    const msg = event.data;
    if (!msg || typeof msg !== 'object' || typeof msg.inloopFrame !== 'string') return;
    const frame = frames.get(msg.inloopFrame);
    if (!frame || event.source !== frame.contentWindow) return;
    if (!frame.isConnected) {
      frames.delete(msg.inloopFrame);
      return;
    }
    const height = Math.min(Math.max(Number(msg.height) || 0, 16), 5000);
    frame.style.height = `${Math.ceil(height)}px`;
  });
}

/**
 * HTML in an iframe with `sandbox="allow-scripts"` (an opaque origin: no access to this page,
 * its storage or its tokens); a small script in it reports its height.
 */
function htmlFrame(html: string): HTMLIFrameElement {
  listenToFrames();
  const id = `f${++frameSeq}`;
  const frame = document.createElement('iframe');
  frame.className = 'output-html-frame';
  frame.setAttribute('sandbox', 'allow-scripts allow-popups');
  frame.setAttribute('referrerpolicy', 'no-referrer');
  frame.setAttribute('title', 'HTML output');
  const reporter = `<script>(function(){var id=${JSON.stringify(id)};function h(){var d=document.documentElement,b=document.body;parent.postMessage({inloopFrame:id,height:Math.max(d.scrollHeight,b?b.scrollHeight:0)},'*')}addEventListener('load',h);if(window.ResizeObserver){new ResizeObserver(h).observe(document.documentElement)}h();setTimeout(h,100)})()</script>`;
  const style = `<style>html{margin:0;padding:0;overflow-y:hidden}body{margin:0;padding:0 4px 0 8px;font:13px/1.45 system-ui,sans-serif;color:#1f2328}table{border-collapse:collapse}th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>`;
  frame.srcdoc = `<!doctype html><html><head><meta charset="utf-8">${style}</head><body>${html}${reporter}</body></html>`;
  frame.style.height = '24px';
  if (frames.size > 100) {
    for (const [key, f] of frames) if (!f.isConnected) frames.delete(key);
  }
  frames.set(id, frame);
  return frame;
}

function imageOf(mime: string, value: unknown): HTMLImageElement {
  const img = el('img', 'output-image');
  const text = joinText(value);
  if (mime === 'image/svg+xml') {
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(text)}`;
  } else {
    img.src = `data:${mime};base64,${text.replace(/\s/g, '')}`;
  }
  img.alt = mime;
  return img;
}

function jsonView(value: unknown): HTMLElement {
  const details = el('details', 'output-json');
  details.open = true;
  const summary = el('summary', undefined, 'JSON');
  const pre = el('pre');
  pre.textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  details.append(summary, pre);
  return details;
}

function richData(data: Record<string, unknown>, expanded: Set<string>, key: string): HTMLElement {
  const mime = pickMime(data);
  const box = el('div', 'output-data');
  if (!mime) return box;
  box.dataset.mime = mime;
  const value = data[mime];
  if (mime === 'text/html') box.append(htmlFrame(joinText(value)));
  else if (mime.startsWith('image/')) box.append(imageOf(mime, value));
  else if (mime === 'text/markdown') {
    const md = el('div', 'output-markdown markdown-body');
    md.innerHTML = renderMarkdown(joinText(value));
    box.append(md);
  } else if (mime === 'application/json' || mime.endsWith('+json')) box.append(jsonView(value));
  else if (mime === 'text/latex') box.append(el('pre', 'output-latex', joinText(value)));
  else box.append(terminalText(joinText(value), 'output-plain', expanded, key));
  return box;
}

/** One output as an element `.output[data-output-type]`. */
export function renderOutput(output: Output, index: number, expanded: Set<string>, cellId: string): HTMLElement {
  const type = String(output.output_type ?? 'unknown');
  const box = el('div', 'output');
  box.dataset.outputType = type;
  const key = `${cellId}:${index}`;
  switch (type) {
    case 'stream': {
      const name = output.name === 'stderr' ? 'stderr' : 'stdout';
      box.dataset.stream = name;
      box.append(terminalText(joinText(output.text), `output-stream output-${name}`, expanded, key));
      break;
    }
    case 'error': {
      const traceback = Array.isArray(output.traceback) ? output.traceback.join('\n') : '';
      const text = traceback || `${output.ename ?? 'Error'}: ${output.evalue ?? ''}`;
      box.append(terminalText(text, 'output-error', expanded, key));
      break;
    }
    case 'execute_result':
    case 'display_data': {
      const data = (output.data ?? {}) as Record<string, unknown>;
      box.append(richData(data, expanded, key));
      break;
    }
    default:
      box.append(el('pre', 'output-plain', `[${escapeHtml(type)} output]`));
  }
  return box;
}

/** A signature of an output list, to skip re-rendering what did not change. */
export function outputsKey(outputs: Output[] | undefined): string {
  return outputs ? JSON.stringify(outputs) : '';
}
