// Images pasted or dropped into a markdown cell's editor become attachments of the cell, as in
// JupyterLab: the image goes into the cell's `attachments` (nbformat's {name: {mime: data}}, under
// a fresh name that keeps the file's extension) and `![file name](attachment:NAME)` is inserted
// where the caret is (or where the image was dropped). Anything else pasted or dropped (text, an
// .ipynb on the page) goes on to its usual handlers.

import { EditorView } from '@codemirror/view';
import type { Notebook } from '/engine/inloop_wasm.js';
import { errorMessage, toast } from './common';

/** The image types markdown.ts shows (an attachment of another type would show nothing). */
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml'];

/** One image at most this big: it travels to every peer inside the document. */
const MAX_IMAGE_BYTES = 16 << 20;

/** The markdown cell editor an event happened in, with the cell's id. */
function markdownEditorOf(target: EventTarget | null): { cellId: string; view: EditorView } | null {
  if (!(target instanceof Element)) return null;
  const cell = target.closest<HTMLElement>('.cell[data-cell-type="markdown"]');
  const editor = target.closest<HTMLElement>('.cm-editor');
  if (!cell?.dataset.cellId || !editor || !cell.contains(editor)) return null;
  const view = EditorView.findFromDOM(editor);
  if (!view || view.state.readOnly) return null;
  return { cellId: cell.dataset.cellId, view };
}

function imagesOf(data: DataTransfer | null): File[] {
  return Array.from(data?.files ?? []).filter((file) => IMAGE_TYPES.includes(file.type));
}

/** A name no attachment of the cell has: a random id and the file's extension (as JupyterLab). */
function attachmentName(file: File): string {
  const dot = file.name.lastIndexOf('.');
  const extension = dot > 0 ? file.name.slice(dot).replace(/[^.\w-]/g, '') : `.${file.type.split('/')[1].replace('+xml', '')}`;
  return `${crypto.randomUUID()}${extension}`;
}

/** nbformat's data of `file`: base64 for images, the text itself for SVG. */
async function bundleOf(file: File): Promise<Record<string, string>> {
  if (file.type === 'image/svg+xml') return { [file.type]: await file.text() };
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { [file.type]: btoa(binary) };
}

async function attach(nb: Notebook, cellId: string, view: EditorView, files: File[], at: number | null) {
  const links: string[] = [];
  for (const file of files) {
    if (file.size > MAX_IMAGE_BYTES) {
      toast(`${file.name} is too large to attach (${Math.ceil(file.size / 1048576)} MiB; at most ${MAX_IMAGE_BYTES >> 20} MiB).`, 'error');
      continue;
    }
    try {
      const name = attachmentName(file);
      nb.setCellAttachment(cellId, name, await bundleOf(file));
      const alt = (file.name || 'image').replace(/[[\]\\]/g, '');
      links.push(`![${alt}](attachment:${name})`);
    } catch (error) {
      toast(`Could not attach ${file.name}: ${errorMessage(error)}`, 'error');
    }
  }
  if (!links.length || !view.dom.isConnected) return;
  const { from, to } = at === null ? view.state.selection.main : { from: at, to: at };
  const insert = links.join('\n');
  view.dispatch({ changes: { from, to, insert }, selection: { anchor: from + insert.length }, userEvent: at === null ? 'input.paste' : 'input.drop', scrollIntoView: true });
  view.focus();
}

/** Listens, before CodeMirror and the page's .ipynb drop, for images pasted or dropped into markdown editors. */
export function wireImageAttachments(nb: Notebook) {
  document.addEventListener(
    'paste',
    (event) => {
      const images = imagesOf(event.clipboardData);
      const editor = images.length ? markdownEditorOf(event.target) : null;
      if (!editor) return;
      event.preventDefault(); // CodeMirror handles no event a listener prevented
      void attach(nb, editor.cellId, editor.view, images, null);
    },
    true,
  );
  document.addEventListener(
    'drop',
    (event) => {
      const images = imagesOf(event.dataTransfer);
      const editor = images.length ? markdownEditorOf(event.target) : null;
      if (!editor) return;
      // Neither CodeMirror (which would insert the file as text) nor the page's .ipynb drop
      // (commands.ts, which still hides its overlay) acts on a prevented drop.
      event.preventDefault();
      const at = editor.view.posAtCoords({ x: event.clientX, y: event.clientY });
      void attach(nb, editor.cellId, editor.view, images, at);
    },
    true,
  );
}
