// Rendering of nbformat outputs: stream text (ANSI colours, long streams collapsed), rich
// displays (HTML in a sandboxed iframe, PNG, JPEG, SVG as images, JSON, markdown, LaTeX typeset
// by KaTeX), errors.
// Outputs are document content, written by any peer that may edit: none of them reaches the
// page (docs/SECURITY.md, "Rendering untrusted content").

import { ansiToNodes } from './ansi';
import { renderMarkdown } from './markdown';
import { renderLatex } from './math';

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

// Richest first, in the order of JupyterLab's renderers' ranks (HTML, markdown, LaTeX, SVG,
// images): SymPy's `image/png` beside its `text/latex` shows typeset math, as in JupyterLab.
const MIME_ORDER = [
  'application/vnd.jupyter.widget-view+json',
  'text/html',
  'text/markdown',
  'text/latex',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'image/gif',
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
      pre.replaceChildren(ansiToNodes(text));
      more.remove();
    });
    wrap.append(more);
    pre.replaceChildren(ansiToNodes(lines.slice(-COLLAPSE_LINES).join('\n') + '\n'));
    wrap.dataset.collapsed = 'true';
  } else {
    pre.replaceChildren(ansiToNodes(text));
  }
  wrap.append(pre);
  return wrap;
}

/**
 * The page that shows HTML outputs (web/static/output-frame.html), served by the relay under a
 * policy of its own: inline scripts run, nothing loads from the network.
 */
const OUTPUT_FRAME_URL = '/output-frame.html';

/** What the page knows of one HTML output frame. */
interface FrameState {
  html: string;
  /** Shown instead when the frame cannot load (offline: see htmlFrame). */
  fallback: () => HTMLElement;
  shown: boolean;
  blocked: Set<string>;
  notice: HTMLElement;
}

const frames = new Map<HTMLIFrameElement, FrameState>();
let listening = false;

/** The frame whose window sent `event`, if it is one of ours and still on the page. */
function frameOf(event: MessageEvent): [HTMLIFrameElement, FrameState] | undefined {
  for (const [frame, state] of frames) {
    if (!frame.isConnected) frames.delete(frame);
    else if (event.source !== null && event.source === frame.contentWindow) return [frame, state];
  }
  return undefined;
}

function listenToFrames() {
  if (listening) return;
  listening = true;
  window.addEventListener('message', (event) => {
    const msg = event.data;
    if (!msg || typeof msg !== 'object' || typeof msg.inloopFrame !== 'string') return;
    const found = frameOf(event);
    if (!found) return;
    const [frame, state] = found;
    switch (msg.inloopFrame) {
      case 'ready':
        // Only to a frame of another origin: never hand content to a frame that could reach
        // into this page (a copy of the frame page served without the relay's sandbox).
        if (state.shown || frame.contentDocument !== null) return;
        state.shown = true;
        frame.dataset.state = 'shown';
        frame.contentWindow!.postMessage({ inloopHtml: state.html }, '*');
        break;
      case 'height': {
        const height = Math.min(Math.max(Number(msg.height) || 0, 16), 5000);
        frame.style.height = `${Math.ceil(height)}px`;
        break;
      }
      case 'blocked':
        if (typeof msg.url === 'string' && state.blocked.size < 5 && !state.blocked.has(msg.url)) {
          state.blocked.add(msg.url);
          state.notice.textContent = `Not loaded: ${[...state.blocked].join(', ')}. An output may not load anything from the network (it could tell another server who reads this notebook); an output that embeds its scripts works.`;
          state.notice.hidden = false;
        }
        break;
    }
  });
}

/**
 * HTML in an iframe with `sandbox="allow-scripts allow-popups"` (an opaque origin: no access to
 * this page, its storage or its tokens), loaded from the relay's output frame page, which asks
 * for the HTML and reports its height and what its policy blocked. Not `srcdoc`: a srcdoc frame
 * inherits this page's policy, under which the output's own scripts would not run.
 *
 * Browsers do not let a service worker answer a sandboxed frame: offline, the frame cannot
 * load, and the output's other representation (`fallback`) is shown instead.
 */
function htmlFrame(html: string, fallback: () => HTMLElement): HTMLElement {
  listenToFrames();
  const wrap = el('div', 'output-html');
  const frame = document.createElement('iframe');
  frame.className = 'output-html-frame';
  frame.setAttribute('sandbox', 'allow-scripts allow-popups');
  frame.setAttribute('referrerpolicy', 'no-referrer');
  frame.setAttribute('title', 'HTML output');
  frame.style.height = '24px';
  const notice = el('p', 'output-blocked');
  notice.hidden = true;
  const state: FrameState = { html, fallback, shown: false, blocked: new Set(), notice };
  frame.addEventListener('load', () => {
    // A loaded frame says it is ready before its load event; one that did not is an error page.
    setTimeout(() => {
      if (state.shown || !frame.isConnected) return;
      frames.delete(frame);
      frame.replaceWith(state.fallback());
    }, 1000);
  }, { once: true });
  frame.src = OUTPUT_FRAME_URL;
  frames.set(frame, state);
  wrap.append(frame, notice);
  return wrap;
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

/** What an HTML output shows when its frame cannot load: its plain text, and why. */
function htmlUnavailable(plain: string, expanded: Set<string>, key: string): HTMLElement {
  const box = el('div', 'output-html-unavailable');
  box.append(el('p', 'output-blocked', 'This HTML output needs the relay to be shown (it is offline or unreachable).'));
  if (plain) box.append(terminalText(plain, 'output-plain', expanded, key));
  return box;
}

function richData(data: Record<string, unknown>, expanded: Set<string>, key: string): HTMLElement {
  const mime = pickMime(data);
  const box = el('div', 'output-data');
  if (!mime) return box;
  box.dataset.mime = mime;
  const value = data[mime];
  if (mime === 'text/html') {
    const plain = 'text/plain' in data ? joinText(data['text/plain']) : '';
    box.append(htmlFrame(joinText(value), () => htmlUnavailable(plain, expanded, key)));
  }
  else if (mime.startsWith('image/')) box.append(imageOf(mime, value));
  else if (mime === 'text/markdown') {
    const md = el('div', 'output-markdown markdown-body');
    md.append(renderMarkdown(joinText(value)));
    box.append(md);
  } else if (mime === 'application/json' || mime.endsWith('+json')) box.append(jsonView(value));
  else if (mime === 'text/latex') {
    const latex = el('div', 'output-latex');
    latex.append(renderLatex(joinText(value)));
    box.append(latex);
  }
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
      box.append(el('pre', 'output-plain', `[${type} output]`));
  }
  return box;
}

/** A signature of an output list, to skip re-rendering what did not change. */
export function outputsKey(outputs: Output[] | undefined): string {
  return outputs ? JSON.stringify(outputs) : '';
}
