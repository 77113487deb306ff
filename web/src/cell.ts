// One cell on the page: gutter (run button, [n], duration, who is here), the editor (a plain
// <pre> until CodeMirror is mounted), rendered markdown, outputs.

import type { Cell, Execution, TextDelta } from '/engine/inloop_wasm.js';
import { h } from './common';
import { CellEditor, type EditorCommand, type RemoteCaret } from './editor';
import { type Attachments, renderMarkdown } from './markdown';
import { outputsKey, renderOutput } from './outputs';

export type CellType = 'code' | 'markdown' | 'raw';
export type CellState = 'idle' | 'queued' | 'running' | 'done' | 'error';

/** What a cell asks of the page. */
export interface CellHost {
  readonly readOnly: boolean;
  readonly canRun: boolean;
  source(id: string): string;
  localEdit(id: string, delta: TextDelta[]): void;
  selection(id: string, anchor: number, head: number, focused: boolean): void;
  editorFocused(id: string): void;
  editorBlurred(id: string): void;
  /** Whether the cell is the one in edit mode. */
  editing(id: string): boolean;
  command(id: string, name: EditorCommand): boolean;
  cellAction(id: string, action: string, value?: string): void;
  carets(id: string): RemoteCaret[];
  /** Where the cell says it runs ('' : where the notebook runs). */
  cellTarget(id: string): string;
}

export interface Peer {
  name: string;
  colour: string;
}

function stateOf(execution: Execution | undefined): CellState {
  switch (execution?.status) {
    case 'queued':
      return 'queued';
    case 'running':
      return 'running';
    case 'done':
      return 'done';
    case 'error':
    case 'interrupted':
      return 'error';
    default:
      return 'idle';
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export class CellView {
  readonly el: HTMLDivElement;
  type: CellType;
  editor: CellEditor | null = null;
  /** Markdown shown rendered (not being edited). */
  rendered = true;
  execution: Execution | undefined;
  executionCount: number | null = null;
  target: string = '';

  private readonly countEl: HTMLElement;
  private readonly durationEl: HTMLElement;
  private readonly whereEl: HTMLElement;
  private readonly peersEl: HTMLElement;
  private readonly runButton: HTMLButtonElement;
  private readonly inputEl: HTMLElement;
  private readonly markdownEl: HTMLElement;
  private readonly outputsEl: HTMLElement;
  private readonly targetSelect: HTMLSelectElement;
  private placeholder: HTMLPreElement | null = null;
  /** Shown while the cell is a copy of one deleted under the person editing it. */
  private orphanNotice: HTMLElement | null = null;
  private placeholderStale = false;
  private markdownStale = true;
  private outputKeys: string[] = [];
  private readonly expanded = new Set<string>();
  private peersKey = '';
  /** The markdown cell's attachments (its `attachment:NAME` images), and their signature. */
  private attachments: Attachments | undefined;
  private attachmentsKey = 'null';

  constructor(
    private readonly host: CellHost,
    readonly id: string,
    cell: Cell,
  ) {
    this.type = cell.cell_type;
    this.runButton = h('button', {
      class: 'cell-run icon-button',
      'data-action': 'run',
      title: 'Run this cell (Shift+Enter)',
      'aria-label': 'Run cell',
    });
    this.runButton.innerHTML = '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M4 2.5v11l9-5.5z" fill="currentColor"/></svg>';
    this.countEl = h('span', { class: 'cell-count' }, '[ ]');
    this.durationEl = h('span', { class: 'cell-duration' });
    this.whereEl = h('span', { class: 'cell-where' });
    this.peersEl = h('div', { class: 'cell-peers' });
    const gutter = h(
      'div',
      { class: 'cell-gutter' },
      this.runButton,
      this.countEl,
      h('span', { class: 'cell-spinner', 'aria-hidden': 'true' }),
      this.durationEl,
      this.whereEl,
      this.peersEl,
    );

    this.targetSelect = h(
      'select',
      { class: 'cell-target', 'data-testid': 'cell-target', title: 'Where this cell runs' },
      h('option', { value: '' }, 'default runtime'),
      h('option', { value: 'browser' }, 'this browser'),
      h('option', { value: 'server' }, 'server'),
    );
    const tools = h(
      'div',
      { class: 'cell-tools' },
      this.targetSelect,
      iconButton('move-up', 'Move up', 'M8 3l-5 5h3v5h4V8h3z'),
      iconButton('move-down', 'Move down', 'M8 13l5-5h-3V3H6v5H3z'),
      iconButton('delete-cell', 'Delete cell (D, D)', 'M5 2h6v1h3v2H2V3h3zm-2 4h10l-1 8H4z'),
    );
    // Links that cannot run have no use for a target; view-only links cannot move or delete.
    if (!host.canRun) this.targetSelect.remove();
    tools.hidden = host.readOnly;
    this.inputEl = h('div', { class: 'cell-input' });
    this.markdownEl = h('div', { class: 'markdown-rendered markdown-body', title: 'Double-click to edit' });
    this.outputsEl = h('div', { class: 'cell-outputs' });
    const main = h('div', { class: 'cell-main' }, tools, this.inputEl, this.markdownEl, this.outputsEl);
    this.el = h('div', { class: 'cell', 'data-cell-id': id, tabindex: '-1' }, gutter, main);

    this.runButton.addEventListener('click', (e) => {
      e.stopPropagation();
      host.cellAction(id, 'run');
    });
    tools.addEventListener('click', (e) => {
      const button = (e.target as HTMLElement).closest('button');
      if (button?.dataset.action) host.cellAction(id, button.dataset.action);
    });
    this.targetSelect.addEventListener('change', () => host.cellAction(id, 'target', this.targetSelect.value));
    this.markdownEl.addEventListener('dblclick', () => host.cellAction(id, 'edit'));
    this.inputEl.addEventListener('mousedown', (e) => {
      if (this.editor) return;
      // A click on the plain text before the editor is mounted: mount it and put the caret there.
      const { clientX, clientY } = e;
      e.preventDefault();
      this.mount();
      const pos = this.editor!.view.posAtCoords({ x: clientX, y: clientY });
      host.cellAction(id, 'edit');
      if (pos !== null) this.editor!.view.dispatch({ selection: { anchor: pos } });
    });

    this.showPlaceholder(cell.source);
    this.update(cell);
  }

  /** Everything but the source, from the engine's view of the cell. */
  update(cell: Cell) {
    const attachmentsKey = JSON.stringify(cell.attachments ?? null);
    if (attachmentsKey !== this.attachmentsKey) {
      this.attachments = cell.attachments;
      this.attachmentsKey = attachmentsKey;
      this.markdownStale = true;
    }
    this.setType(cell.cell_type);
    this.refresh();
    this.executionCount = cell.execution_count ?? null;
    this.target = this.host.cellTarget(this.id);
    this.targetSelect.value = this.target;
    this.targetSelect.classList.toggle('overridden', this.target !== '');
    this.targetSelect.title = this.target ? `This cell always runs in ${this.target === 'server' ? 'the server runtime' : 'this browser'}` : 'Where this cell runs';
    this.setOutputs(cell.outputs ?? []);
    this.renderState();
  }

  setType(type: CellType) {
    const changed = type !== this.type || !this.el.dataset.cellType;
    this.type = type;
    this.el.dataset.cellType = type;
    if (!changed) return;
    this.editor?.setLanguage(type === 'code' ? 'python' : type);
    if (type !== 'code') this.setOutputs([]);
    if (type === 'markdown') {
      this.markdownStale = true;
      // A cell made markdown while someone types in it keeps its editor (and their focus).
      this.setRendered(!this.host.editing(this.id));
    } else {
      this.el.classList.remove('rendered');
    }
    this.renderState();
  }

  setReadOnly(readOnly: boolean) {
    this.editor?.setReadOnly(readOnly);
    this.targetSelect.disabled = readOnly;
  }

  get mounted(): boolean {
    return this.editor !== null;
  }

  /** Creates the CodeMirror editor (cells start as plain text: 200 editors are not free). */
  mount() {
    if (this.editor) return;
    const id = this.id;
    const host = this.host;
    const text = host.source(id);
    this.placeholder?.remove();
    this.placeholder = null;
    this.editor = new CellEditor(this.inputEl, {
      doc: text,
      language: this.type === 'code' ? 'python' : this.type,
      readOnly: host.readOnly,
      hooks: {
        change: (delta) => host.localEdit(id, delta),
        selection: (anchor, head, focused) => host.selection(id, anchor, head, focused),
        focus: () => host.editorFocused(id),
        blur: () => host.editorBlurred(id),
        command: (name) => host.command(id, name),
      },
    });
    this.editor.setCarets(host.carets(id));
  }

  private showPlaceholder(source: string) {
    if (this.editor) return;
    if (!this.placeholder) {
      this.placeholder = h('pre', { class: 'cell-placeholder' });
      this.inputEl.append(this.placeholder);
    }
    this.placeholder.textContent = source || ' ';
    this.placeholderStale = false;
  }

  /** A change already in the document (a peer's, an undo) for the editor or the plain text. */
  sourceEdited(delta: TextDelta[]) {
    if (this.editor) {
      if (!this.editor.applyDelta(delta)) this.editor.setText(this.host.source(this.id));
    } else {
      this.placeholderStale = true;
    }
    if (this.type === 'markdown') this.markdownStale = true;
  }

  /** Brings the plain text and the rendered markdown up to date (once per frame). */
  refresh() {
    if (this.placeholderStale && !this.editor) this.showPlaceholder(this.host.source(this.id));
    if (this.type === 'markdown' && this.rendered && this.markdownStale) this.renderMarkdown();
  }

  /**
   * The document has a new map or text for this cell (it moved the Yjs way, came back after a
   * delete, or its text was replaced), maybe a copy that lacks keys typed here meanwhile. The
   * editor stays (focus, caret and all): keys the copy lacks are sent again; when the copy
   * differs otherwise, the document's text wins unless `mine` (a copy that lived only here since
   * its cell was deleted: what was typed into it wins).
   */
  rebind(mine: boolean) {
    const text = this.host.source(this.id);
    if (!this.editor) {
      if (this.placeholder?.textContent !== (text || ' ')) this.resync(text);
      return;
    }
    const lost = this.editor.lostChanges(text) ?? (mine ? this.editor.deltaFrom(text) : null);
    if (lost) {
      this.host.localEdit(this.id, lost);
    } else {
      this.editor.setText(text);
      this.markdownStale = true;
      this.refresh();
    }
  }

  /**
   * Marks the cell as a copy of one deleted while it was being edited (or as a cell again): a
   * notice offers to keep the copy (put it back in the notebook) or to discard it.
   */
  setOrphaned(orphaned: boolean) {
    this.el.classList.toggle('orphaned', orphaned);
    if (!orphaned) {
      this.orphanNotice?.remove();
      this.orphanNotice = null;
      return;
    }
    if (this.orphanNotice) return;
    const button = (action: string, label: string, primary = false) => {
      const b = h('button', { class: `button${primary ? ' primary' : ''}`, type: 'button', 'data-testid': action }, label);
      // Keep the focus in the editor: pressing the button is no reason to leave edit mode.
      b.addEventListener('mousedown', (e) => e.preventDefault());
      b.addEventListener('click', () => this.host.cellAction(this.id, action));
      return b;
    };
    this.orphanNotice = h(
      'div',
      { class: 'cell-orphan', role: 'alert', 'data-testid': 'orphan-notice' },
      h('span', {}, 'Someone deleted this cell while you were editing it. What you type stays in your copy here, and nowhere else.'),
      button('keep-copy', 'Keep my copy', true),
      button('discard-copy', 'Discard'),
    );
    this.inputEl.before(this.orphanNotice);
  }

  /** Re-reads the text from the document (after a cell was replaced in place). */
  resync(text = this.host.source(this.id)) {
    if (this.editor) this.editor.setText(text);
    else this.showPlaceholder(text);
    this.markdownStale = true;
    this.refresh();
  }

  private renderMarkdown() {
    this.markdownStale = false;
    const source = this.editor ? this.editor.text : this.host.source(this.id);
    if (source.trim()) {
      this.markdownEl.replaceChildren(renderMarkdown(source, this.attachments));
      this.markdownEl.classList.remove('empty');
    } else {
      this.markdownEl.textContent = 'Empty markdown cell: double-click to edit';
      this.markdownEl.classList.add('empty');
    }
  }

  /** Markdown: show it rendered (true) or the editor (false). */
  setRendered(rendered: boolean) {
    if (this.type !== 'markdown') rendered = false;
    this.rendered = rendered;
    this.el.classList.toggle('rendered', rendered);
    if (rendered) {
      this.markdownStale = true;
      this.renderMarkdown();
    }
  }

  /** Edit mode: the editor, focused (the caret at the start, the end or a given selection). */
  edit(at?: 'start' | 'end' | { anchor: number; head: number }) {
    if (this.type === 'markdown') this.setRendered(false);
    this.mount();
    this.editor!.focus(at);
  }

  setExecution(execution: Execution | undefined) {
    this.execution = execution;
    this.renderState();
  }

  setExecutionCount(count: number | null) {
    this.executionCount = count;
    this.renderState();
  }

  get state(): CellState {
    return this.type === 'code' ? stateOf(this.execution) : 'idle';
  }

  /** data-state, [n], duration, where it runs. */
  renderState() {
    const state = this.state;
    this.el.dataset.state = state;
    const ex = this.execution;
    const busy = state === 'queued' || state === 'running';
    this.countEl.textContent = this.type !== 'code' ? '' : busy ? '[*]' : this.executionCount != null ? `[${this.executionCount}]` : '[ ]';
    this.runButton.disabled = !this.host.canRun && this.type === 'code';
    this.targetSelect.hidden = this.type !== 'code';
    let duration = '';
    let where = '';
    if (this.type === 'code' && ex) {
      if (ex.status === 'running' && ex.started_at) duration = formatDuration(Date.now() / 1000 - ex.started_at);
      else if (ex.started_at && ex.finished_at) duration = formatDuration(ex.finished_at - ex.started_at);
      where = ex.target === 'server' ? 'server' : 'browser';
      if (state === 'queued') where = `queued · ${where}`;
      if (ex.status === 'interrupted' || ex.status === 'cancelled') where = ex.status;
    }
    this.durationEl.textContent = duration;
    this.whereEl.textContent = where;
    this.whereEl.title = ex?.message ?? (ex ? `requested by ${ex.requested_by}` : '');
  }

  /** Updates the running time of a running cell. */
  tick() {
    const ex = this.execution;
    if (ex?.status === 'running' && ex.started_at) {
      this.durationEl.textContent = formatDuration(Date.now() / 1000 - ex.started_at);
    }
  }

  setOutputs(outputs: Record<string, any>[]) {
    const keys = outputs.map((o) => outputsKey([o]));
    const nodes = this.outputsEl.children;
    for (let i = 0; i < outputs.length; i++) {
      if (keys[i] === this.outputKeys[i] && nodes[i]) continue;
      const node = renderOutput(outputs[i], i, this.expanded, this.id);
      if (nodes[i]) this.outputsEl.replaceChild(node, nodes[i]);
      else this.outputsEl.append(node);
    }
    while (this.outputsEl.children.length > outputs.length) this.outputsEl.lastElementChild!.remove();
    this.outputKeys = keys;
    this.el.classList.toggle('has-outputs', outputs.length > 0);
  }

  /** Who else is in this cell: dots in the gutter and carets in the editor. */
  setPeers(peers: Peer[], carets: RemoteCaret[]) {
    const key = JSON.stringify(peers);
    if (key !== this.peersKey) {
      this.peersKey = key;
      this.peersEl.replaceChildren(
        ...peers.map((p) => {
          const dot = h('span', { class: 'cell-peer', title: `${p.name} is here` }, initials(p.name));
          dot.style.backgroundColor = p.colour;
          return dot;
        }),
      );
    }
    this.editor?.setCarets(carets);
  }

  destroy() {
    this.editor?.destroy();
    this.editor = null;
    this.el.remove();
  }
}

export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  if (words.length === 1) return words[0].slice(0, 2).toUpperCase();
  return (words[0][0] + words[words.length - 1][0]).toUpperCase();
}

function iconButton(action: string, title: string, path: string): HTMLButtonElement {
  const b = h('button', { class: 'icon-button', 'data-action': action, title, 'aria-label': title });
  b.innerHTML = `<svg viewBox="0 0 16 16" width="14" height="14"><path d="${path}" fill="currentColor"/></svg>`;
  return b;
}
