// What the person's keys, toolbar and drops ask for: Jupyter's command mode (Esc, Enter, A, B,
// D D, M, Y, R, J/K and arrows, C/X/V, I I, 0 0, undo and redo), the toolbar's buttons and
// choices, and an .ipynb dropped on the page. Each becomes a call to the page (CommandHost).

import type { RunTarget } from '/engine/inloop_wasm.js';
import type { CellView, CellType } from './cell';
import { adminToken, byId, toast } from './common';
import { canRun, claims, docId, token } from './context';
import { ShareDialog } from './share';

/** Jupyter's modes: keys are commands, or they type into the selected cell. */
export type Mode = 'command' | 'edit';

/** What the keys, the toolbar and drops act on. */
export interface CommandHost {
  readonly readOnly: boolean;
  /** The selected cell, and the mode. */
  readonly selected: string | null;
  readonly mode: Mode;
  readonly order: readonly string[];
  readonly views: ReadonlyMap<string, CellView>;
  /** Changes made here that the relay has not stored yet. */
  readonly unacknowledged: number;
  /** Whether `id` is a deleted cell's copy kept for this person (no cell of the notebook). */
  isOrphan(id: string): boolean;
  source(id: string): string;
  /** The person pressed a pointer somewhere on the page. */
  pointerPressed(): void;
  select(id: string, mode: Mode): void;
  runAndAdvance(id: string): void;
  runInPlace(id: string): void;
  runAndInsert(id: string): void;
  runAll(): void;
  interruptAll(): void;
  restart(): void;
  insertCell(index: number, type: CellType, source?: string): string | undefined;
  deleteCell(id: string): void;
  setType(id: string, type: CellType): void;
  undo(): void;
  redo(): void;
  setNotebookTarget(target: RunTarget): void;
  download(): void;
  importFile(file: File): Promise<void>;
}

/** Wires the page's keys, toolbar and drops to `page`. */
export function wireCommands(page: CommandHost) {
  wireToolbar(page);
  new Keys(page);
  wireDrop(page);
}

class Keys {
  private lastKey = { key: '', at: 0 };
  private clipboard: { type: CellType; source: string }[] = [];

  constructor(private readonly page: CommandHost) {
    document.addEventListener('keydown', (e) => {
      // Ctrl/Cmd+S: every change is saved as it is made (no browser "save page" dialog).
      if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 's') {
        e.preventDefault();
        const n = this.page.unacknowledged;
        toast(n ? `${n} change${n === 1 ? '' : 's'} not saved on the relay yet (kept in this browser)` : 'Every change is saved as you make it.');
        return;
      }
      const target = e.target as HTMLElement;
      if (target.closest?.('.cm-editor')) return; // the editor's own keymap
      if (this.page.mode === 'edit' && (target === document.body || target === document.documentElement)) {
        // Edit mode with the focus fallen out of the editor (see editorBlurred): the key is
        // for the cell being edited, never a command. Focused now, the editor gets its text.
        const editor = this.page.selected ? this.page.views.get(this.page.selected)?.editor : undefined;
        if (editor) {
          editor.focus();
          return;
        }
      }
      if (target.closest?.('input, textarea, select, [contenteditable="true"], .share-menu, .name-prompt')) return;
      if (target.tagName === 'BUTTON' && (e.key === 'Enter' || e.key === ' ')) return;
      if (this.commandKey(e)) {
        e.preventDefault();
        e.stopPropagation();
      }
    });
    document.addEventListener('pointerdown', () => this.page.pointerPressed(), true);
    byId('cells').addEventListener('mousedown', (e) => {
      const cellEl = (e.target as HTMLElement).closest<HTMLElement>('.cell');
      if (!cellEl) return;
      const id = cellEl.dataset.cellId!;
      if ((e.target as HTMLElement).closest('.cm-editor, .cell-input, button, select, iframe, a')) return;
      if (this.page.selected !== id || this.page.mode === 'edit') {
        e.preventDefault();
        this.page.select(id, 'command');
      }
    });
  }

  /** Jupyter's command mode. Returns whether the key was handled. */
  private commandKey(e: KeyboardEvent): boolean {
    const page = this.page;
    // A deleted cell's copy is no cell of the notebook: no command acts on it (Enter edits it).
    const orphan = page.selected !== null && page.isOrphan(page.selected);
    const id = orphan ? null : page.selected;
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key;
    if (key === 'Enter') {
      if (orphan && !e.shiftKey && !mod && !e.altKey) page.select(page.selected!, 'edit');
      if (!id) return orphan;
      if (e.shiftKey) page.runAndAdvance(id);
      else if (mod) page.runInPlace(id);
      else if (e.altKey) page.runAndInsert(id);
      else page.select(id, 'edit');
      return true;
    }
    if (mod && (key === 'z' || key === 'Z')) {
      if (e.shiftKey) page.redo();
      else page.undo();
      return true;
    }
    if (mod && (key === 'y' || key === 'Y')) {
      page.redo();
      return true;
    }
    if (mod || e.altKey) return false;
    const now = Date.now();
    const twice = this.lastKey.key === key && now - this.lastKey.at < 800;
    this.lastKey = { key, at: twice ? 0 : now };
    const index = id ? page.order.indexOf(id) : -1;
    switch (key) {
      case 'ArrowUp':
      case 'k':
      case 'K':
        if (index > 0) page.select(page.order[index - 1], 'command');
        return true;
      case 'ArrowDown':
      case 'j':
      case 'J':
        if (index >= 0 && index < page.order.length - 1) page.select(page.order[index + 1], 'command');
        return true;
      case 'a':
      case 'A': {
        const created = page.insertCell(Math.max(index, 0), 'code');
        if (created) page.select(created, 'command');
        return true;
      }
      case 'b':
      case 'B': {
        const created = page.insertCell(index + 1, 'code');
        if (created) page.select(created, 'command');
        return true;
      }
      case 'd':
      case 'D':
        if (twice && id) page.deleteCell(id);
        return true;
      case 'm':
      case 'M':
        if (id) page.setType(id, 'markdown');
        return true;
      case 'y':
      case 'Y':
        if (id) page.setType(id, 'code');
        return true;
      case 'r':
      case 'R':
        if (id) page.setType(id, 'raw');
        return true;
      case 'i':
      case 'I':
        if (twice) page.interruptAll();
        return true;
      case '0':
        if (twice) page.restart();
        return true;
      case 'c':
      case 'C':
      case 'x':
      case 'X':
        if (!id) return true;
        this.clipboard = [{ type: page.views.get(id)!.type, source: page.source(id) }];
        if (key.toLowerCase() === 'x') page.deleteCell(id);
        return true;
      case 'v':
      case 'V': {
        let at = key === 'V' ? index : index + 1;
        let last: string | undefined;
        for (const c of this.clipboard) {
          last = page.insertCell(at++, c.type, c.source) ?? last;
        }
        if (last) page.select(last, 'command');
        return true;
      }
      case 'z':
        page.undo();
        return true;
      case 'Escape':
        return true;
    }
    return false;
  }
}

function wireToolbar(page: CommandHost) {
  const toolbar = byId('toolbar');
  toolbar.addEventListener('click', (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
    if (!button) return;
    const id = page.selected;
    switch (button.dataset.action) {
      case 'add-cell': {
        const index = id ? page.order.indexOf(id) + 1 : page.order.length;
        const created = page.insertCell(index, 'code');
        if (created) page.select(created, 'edit');
        break;
      }
      case 'run':
        if (id) page.runAndAdvance(id);
        break;
      case 'run-all':
        page.runAll();
        break;
      case 'interrupt':
        page.interruptAll();
        break;
      case 'restart':
        page.restart();
        break;
      case 'undo':
        page.undo();
        break;
      case 'redo':
        page.redo();
        break;
      case 'download':
        page.download();
        break;
    }
  });
  byId('empty-add').addEventListener('click', () => {
    const created = page.insertCell(0, 'code');
    if (created) page.select(created, 'edit');
  });
  const typeSelect = byId<HTMLSelectElement>('cell-type');
  typeSelect.addEventListener('change', () => {
    if (page.selected) page.setType(page.selected, typeSelect.value as CellType);
    if (page.selected) page.select(page.selected, 'command');
  });
  const runtime = byId<HTMLSelectElement>('runtime');
  runtime.addEventListener('change', () => page.setNotebookTarget(runtime.value as RunTarget));
  const upload = byId<HTMLInputElement>('upload');
  upload.addEventListener('change', async () => {
    const file = upload.files?.[0];
    upload.value = '';
    if (file) await page.importFile(file);
  });
  new ShareDialog(docId, token, adminToken(token)); // wires the share button and its dialog
  for (const el of document.querySelectorAll<HTMLElement>('[data-needs="edit"]')) {
    if (page.readOnly) (el as HTMLButtonElement).disabled = true;
  }
  for (const el of document.querySelectorAll<HTMLElement>('[data-needs="run"]')) {
    if (!canRun) (el as HTMLButtonElement).disabled = true;
  }
  upload.disabled = page.readOnly;
  runtime.disabled = !canRun;
  const badge = byId('role');
  badge.textContent = claims?.role ? `${claims.role === 'execute' ? 'can run' : claims.role === 'edit' ? 'can edit' : claims.role === 'read' ? 'view only' : claims.role}` : '';
  badge.hidden = !claims?.role;
}

/** An .ipynb dropped anywhere on the page replaces the notebook. */
function wireDrop(page: CommandHost) {
  let depth = 0;
  const overlay = byId('drop');
  const files = (e: DragEvent) => Array.from(e.dataTransfer?.items ?? []).some((i) => i.kind === 'file');
  document.addEventListener('dragenter', (e) => {
    if (!files(e)) return;
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  document.addEventListener('dragover', (e) => {
    if (files(e)) e.preventDefault();
  });
  document.addEventListener('drop', async (e) => {
    depth = 0;
    overlay.hidden = true;
    const file = e.dataTransfer?.files?.[0];
    // A drop a cell's editor took already (an image into a markdown cell: attachments.ts).
    if (!file || e.defaultPrevented) return;
    e.preventDefault();
    if (!file.name.endsWith('.ipynb')) {
      toast('Drop an .ipynb file to import it.', 'error');
      return;
    }
    await page.importFile(file);
  });
}
