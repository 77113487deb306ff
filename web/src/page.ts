// The notebook page, /n/{doc_id}: a view over the engine (inloop-wasm), which owns the document,
// sync, kernels and execution, and decides where cells run and who holds the lease. The page
// composes the cell list, presence, the status bar and the commands; it holds the selection and
// the mode, and forwards what the person asks.

import type { ChangeBatch, Notebook, RunTarget, TextDelta } from '/engine/inloop_wasm.js';
import type { CellType } from './cell';
import { CellList, type CellListHost } from './cell-list';
import { type CommandHost, type Mode, wireCommands } from './commands';
import { byId, errorMessage, saveFile, toast } from './common';
import { canEdit, canRun, docId } from './context';
import type { EditorCommand, RemoteCaret } from './editor';
import { Collaborators, type PresenceHost } from './presence';
import { StatusBar } from './status-bar';

export class NotebookPage implements CellListHost, CommandHost, PresenceHost {
  readonly readOnly = !canEdit;
  readonly canRun = canRun;
  selected: string | null = null;
  mode: Mode = 'command';
  private readonly container = byId('cells');
  /** The cell whose editor is sending its own edit to the engine (not echoed back). */
  private echo: string | null = null;
  /** When the person last pressed a pointer anywhere on the page (see editorBlurred). */
  private pointerAt = -Infinity;
  private mySelection: { anchor: number; head: number } | null = null;
  private frame = 0;
  private statusDirty = false;
  private readonly list: CellList;
  readonly presence: Collaborators;
  private readonly status: StatusBar;

  constructor(readonly nb: Notebook) {
    this.list = new CellList(nb, this);
    this.presence = new Collaborators(nb, this);
    this.status = new StatusBar(nb);
    wireCommands(this);
    nb.onChange((batch) => this.onChange(batch));
    nb.onStatus((status) => this.status.onStatus(status));
    nb.onPresence((presence) => {
      this.presence.update(presence);
      this.schedule();
    });
    this.reconcile();
    this.loadExecutions();
    if (this.order.length) this.select(this.order[0], 'command', { focus: false });
    this.presence.send();
    this.presence.render();
    this.status.renderRuntimeChoice();
    this.renderStatus();
    setInterval(() => this.tick(), 250);
    this.list.mountWhenIdle();
  }

  /** Each cell's view, by id. */
  get views() {
    return this.list.views;
  }

  get order(): string[] {
    return this.list.order;
  }

  get unacknowledged(): number {
    return this.status.unacknowledged;
  }

  isOrphan(id: string): boolean {
    return this.list.isOrphan(id);
  }

  pointerPressed() {
    this.pointerAt = performance.now();
  }

  whereAmI() {
    // In a deleted cell's copy, this person is in no cell of the notebook.
    const cellId = this.selected && !this.list.isOrphan(this.selected) ? this.selected : null;
    return { cellId, selection: cellId && this.mode === 'edit' ? this.mySelection : null };
  }

  // ---- CellHost ----------------------------------------------------------------------------

  source(id: string): string {
    try {
      return this.nb.source(id);
    } catch {
      return '';
    }
  }

  localEdit(id: string, delta: TextDelta[]) {
    // A deleted cell's copy: what is typed stays in its editor (and goes in with "keep my copy").
    if (delta.length === 0 || this.list.isOrphan(id)) return;
    this.echo = id;
    try {
      this.nb.editSource(id, delta);
    } catch (error) {
      // Refused (closed engine, a cell deleted meanwhile): show the document's text again.
      toast(`Edit not saved: ${errorMessage(error)}`, 'error');
      queueMicrotask(() => this.views.get(id)?.resync());
    } finally {
      this.echo = null;
    }
    this.updateUndoButtons();
  }

  selection(id: string, anchor: number, head: number, focused: boolean) {
    if (!focused) return;
    this.mySelection = { anchor, head };
    if (this.selected !== id) this.select(id, 'edit', { focus: false });
    this.presence.send();
  }

  editorFocused(id: string) {
    if (this.selected !== id || this.mode !== 'edit') this.select(id, 'edit', { focus: false });
  }

  editorBlurred(id: string) {
    // Leaving for a control of the page (a menu, the toolbar) or a click elsewhere: command
    // mode. Only the person's own doing changes the mode, never a remote change.
    setTimeout(() => {
      const active = document.activeElement;
      if (active?.closest('.cm-editor') || !this.editing(id)) return;
      const view = this.views.get(id);
      if ((!active || active === document.body) && performance.now() - this.pointerAt > 1000 && view?.editor?.view.dom.isConnected) {
        // The focus fell to the body with no click: the page itself moved, hid or removed the
        // editor's element (remote changes are rendered so as not to; this is the net under
        // that). Still edit mode: the focus goes back to the editor.
        view.editor.focus();
        return;
      }
      this.mode = 'command';
      this.renderSelection();
      if (view?.type === 'markdown') view.setRendered(true);
    }, 0);
  }

  editing(id: string): boolean {
    return this.selected === id && this.mode === 'edit';
  }

  command(id: string, name: EditorCommand): boolean {
    if (this.list.isOrphan(id) && name !== 'escape' && name !== 'up-out' && name !== 'down-out') {
      // A deleted cell's copy runs nothing and undoes nothing: its keys act on nothing else.
      toast('This cell was deleted: “Keep my copy” puts it back in the notebook.');
      return true;
    }
    switch (name) {
      case 'run-next':
        this.runAndAdvance(id);
        return true;
      case 'run':
        this.runInPlace(id);
        return true;
      case 'run-insert':
        this.runAndInsert(id);
        return true;
      case 'escape':
        this.select(id, 'command');
        return true;
      case 'undo':
        this.undo();
        return true;
      case 'redo':
        this.redo();
        return true;
      case 'up-out': {
        const prev = this.list.neighbour(id, -1);
        if (!prev) return false;
        this.select(prev, 'edit', { at: 'end' });
        return true;
      }
      case 'down-out': {
        const next = this.list.neighbour(id, 1);
        if (!next) return false;
        this.select(next, 'edit', { at: 'start' });
        return true;
      }
    }
    return false;
  }

  cellAction(id: string, action: string, value?: string) {
    switch (action) {
      case 'run':
        this.select(id, this.mode, { focus: false });
        this.runCell(id);
        break;
      case 'edit':
        this.select(id, 'edit');
        break;
      case 'target':
        this.setCellTarget(id, value ?? '');
        break;
      case 'move-up':
      case 'move-down': {
        const index = this.order.indexOf(id);
        const to = index + (action === 'move-up' ? -1 : 1);
        if (index < 0 || to < 0 || to >= this.order.length) return;
        this.structural(() => this.nb.moveCell(id, to));
        this.select(id, 'command');
        break;
      }
      case 'delete-cell':
        this.deleteCell(id);
        break;
      case 'keep-copy':
        this.keepCopy(id);
        break;
      case 'discard-copy':
        this.discardCopy(id);
        break;
    }
  }

  carets(id: string): RemoteCaret[] {
    return this.presence.carets(id);
  }

  cellTarget(id: string): string {
    try {
      return this.nb.cellTarget(id) ?? '';
    } catch {
      return '';
    }
  }

  /** CellListHost: the view of `id` was updated from its cell. */
  refreshed(id: string) {
    if (id === this.selected) this.renderSelection();
  }

  // ---- the document -------------------------------------------------------------------------

  private onChange(batch: ChangeBatch) {
    let structural = false;
    const inserted = new Set<string>();
    for (const change of batch.changes) {
      switch (change.kind) {
        case 'cell_inserted':
          inserted.add(change.cell_id);
          structural = true;
          break;
        case 'cell_deleted':
        case 'cell_moved':
          structural = true;
          break;
        case 'source_edited':
          if (batch.origin === 'local' && this.echo === change.cell_id) break;
          this.list.sourceEdited(change.cell_id, change.delta);
          break;
        case 'outputs_changed':
          this.list.outputsChanged(change.cell_id);
          break;
        case 'cell_changed':
          this.list.cellChanged(change.cell_id, change.field);
          break;
        case 'notebook_metadata_changed':
          this.status.renderRuntimeChoice();
          break;
        case 'execution_changed':
          this.executionChanged(change.execution_id);
          break;
        case 'runtime_changed':
          this.statusDirty = true;
          break;
      }
    }
    if (structural) this.reconcile(inserted, batch.origin === 'remote');
    this.updateUndoButtons();
    this.schedule();
  }

  /**
   * The cell list made to match the document (`CellList.reconcile`), then the selection: the
   * cell being edited here, when someone else (`remote`) deleted it, stays as this person's
   * copy; a selected cell deleted in command mode gives the selection to the one in its place.
   */
  private reconcile(inserted: ReadonlySet<string> = new Set(), remote = false) {
    const selectedAt = this.selected ? this.order.indexOf(this.selected) : -1;
    const editing = remote && !this.readOnly && this.mode === 'edit' ? this.selected : null;
    if (this.list.reconcile(inserted, editing)) this.presence.send();
    const order = this.order;
    if (this.selected && !this.views.has(this.selected)) {
      // The selected cell was deleted (in command mode): the one now in its place is selected.
      this.selected = null;
      const next = order[Math.min(selectedAt, order.length - 1)];
      if (next) this.select(next, 'command', { focus: false });
    }
    if (!this.selected && order.length) this.select(order[0], 'command', { focus: false });
    this.presence.dirty = true;
  }

  /** "Keep my copy": the deleted cell back where it was, with what was typed into it. */
  private keepCopy(id: string) {
    const view = this.views.get(id);
    if (!view?.editor || !this.list.isOrphan(id)) return;
    // A new cell (the engine names it): the copy's editor hands it its text and caret.
    const created = this.insertCell(this.list.shownIndex(id), view.type, view.editor.text);
    if (!created) return;
    if (view.target) this.setCellTarget(created, view.target);
    this.select(created, 'edit', { at: view.editor.selection });
    this.dropOrphan(id);
  }

  private discardCopy(id: string) {
    const index = this.list.shownIndex(id);
    this.dropOrphan(id);
    const next = this.order[Math.min(index, this.order.length - 1)];
    if (next) this.select(next, 'command');
  }

  private dropOrphan(id: string) {
    if (this.selected === id) {
      this.selected = null;
      this.mode = 'command';
      this.renderSelection();
    }
    this.list.dropOrphan(id);
  }

  /** An execution changed: its cell shows it if it is (still) the cell's latest. */
  private executionChanged(executionId: string) {
    let cellId: string;
    try {
      cellId = this.nb.execution(executionId).cell_id;
    } catch {
      return;
    }
    const ex = this.nb.latestExecution(cellId);
    if (ex?.id !== executionId) return;
    this.views.get(ex.cell_id)?.setExecution(ex);
    this.statusDirty = true;
  }

  private loadExecutions() {
    for (const ex of this.nb.latestExecutions()) this.views.get(ex.cell_id)?.setExecution(ex);
  }

  /** One frame's worth of rendering: text, outputs, presence, status. */
  private schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.list.render();
      if (this.presence.dirty) this.presence.render();
      if (this.statusDirty) this.renderStatus();
    });
  }

  private renderStatus() {
    this.statusDirty = false;
    this.status.render();
  }

  private tick() {
    for (const ex of this.nb.runningExecutions()) this.views.get(ex.cell_id)?.tick();
    this.renderStatus();
  }

  // ---- selection and modes -----------------------------------------------------------------

  select(id: string, mode: Mode = this.mode, opts: { focus?: boolean; at?: 'start' | 'end' | { anchor: number; head: number } } = {}) {
    const view = this.views.get(id);
    if (!view) return;
    if (this.selected !== id) {
      this.nb.undoBoundary();
      const old = this.selected ? this.views.get(this.selected) : undefined;
      if (old?.type === 'markdown' && !old.rendered) old.setRendered(true);
      this.mySelection = null;
    }
    this.selected = id;
    const wasEdit = this.mode === 'edit';
    this.mode = mode;
    this.renderSelection();
    if (opts.focus !== false) {
      if (mode === 'edit') view.edit(opts.at);
      else {
        if (view.type === 'markdown' && !view.rendered) view.setRendered(true);
        view.el.focus({ preventScroll: true });
        view.el.scrollIntoView({ block: 'nearest' });
      }
    } else if (mode === 'command' && wasEdit && view.type === 'markdown') {
      view.setRendered(true);
    }
    this.presence.send();
  }

  private renderSelection() {
    for (const el of this.container.querySelectorAll('.cell.selected')) {
      if ((el as HTMLElement).dataset.cellId !== this.selected) el.classList.remove('selected', 'editing');
    }
    document.body.dataset.mode = this.mode;
    const view = this.selected ? this.views.get(this.selected) : undefined;
    if (!view) return;
    view.el.classList.add('selected');
    view.el.classList.toggle('editing', this.mode === 'edit');
    const typeSelect = byId<HTMLSelectElement>('cell-type');
    typeSelect.value = view.type;
  }

  // ---- running (where and by whom: the engine decides) ---------------------------------------

  private runCell(id: string): boolean {
    const view = this.views.get(id);
    if (!view) return false;
    if (view.type === 'markdown') {
      view.setRendered(true);
      return true;
    }
    if (view.type !== 'code') return true;
    if (!this.canRun) {
      toast('This link can view or edit but not run cells.', 'error');
      return false;
    }
    try {
      this.nb.runCell(id);
    } catch (error) {
      toast(`Could not run the cell: ${errorMessage(error)}`, 'error');
      return false;
    }
    return true;
  }

  runAndAdvance(id: string) {
    this.runCell(id);
    const next = this.list.neighbour(id, 1);
    if (next) {
      this.select(next, 'command');
    } else if (!this.readOnly) {
      const created = this.insertCell(this.order.length, 'code');
      if (created) this.select(created, 'edit');
    } else {
      this.select(id, 'command');
    }
  }

  runInPlace(id: string) {
    this.runCell(id);
    this.select(id, 'command');
  }

  runAndInsert(id: string) {
    this.runCell(id);
    if (this.readOnly) return;
    const created = this.insertCell(this.order.indexOf(id) + 1, 'code');
    if (created) this.select(created, 'edit');
  }

  runAll() {
    for (const id of this.order) {
      const view = this.views.get(id);
      if (view?.type === 'code') {
        if (!this.runCell(id)) return;
      } else if (view?.type === 'markdown') view.setRendered(true);
    }
  }

  interruptAll() {
    try {
      if (!this.nb.interruptAll()) toast('Nothing is running.');
    } catch (error) {
      toast(`Could not interrupt: ${errorMessage(error)}`, 'error');
    }
  }

  restart() {
    try {
      const restarted = this.nb.restartKernel();
      if (restarted.target === 'browser') toast('Restarting the browser kernel…');
      else if (!restarted.runtime) toast('No server runtime is connected.', 'error');
      else toast(`Restarting ${restarted.runtime.name}…`);
    } catch (error) {
      toast(`Could not restart: ${errorMessage(error)}`, 'error');
    }
  }

  private setCellTarget(id: string, target: string) {
    try {
      this.nb.setCellTarget(id, target as RunTarget | '');
    } catch (error) {
      toast(`Could not change the runtime: ${errorMessage(error)}`, 'error');
    }
  }

  setNotebookTarget(target: RunTarget) {
    try {
      this.nb.setNotebookTarget(target, !this.readOnly);
    } catch (error) {
      toast(errorMessage(error), 'error');
    }
    this.renderStatus();
  }

  // ---- editing cells -----------------------------------------------------------------------

  private structural<T>(f: () => T): T | undefined {
    this.nb.undoBoundary();
    try {
      return f();
    } catch (error) {
      toast(errorMessage(error), 'error');
      return undefined;
    } finally {
      this.nb.undoBoundary();
    }
  }

  insertCell(index: number, type: CellType, source = ''): string | undefined {
    if (this.readOnly) return undefined;
    return this.structural(() => this.nb.insertCell(Math.max(0, Math.min(index, this.order.length)), type, source));
  }

  deleteCell(id: string) {
    if (this.readOnly) return;
    const next = this.list.neighbour(id, 1) ?? this.list.neighbour(id, -1);
    this.structural(() => this.nb.deleteCell(id));
    if (next) this.select(next, 'command');
  }

  setType(id: string, type: CellType) {
    const view = this.views.get(id);
    if (!view || view.type === type || this.readOnly) return;
    this.structural(() => this.nb.setCellType(id, type));
  }

  undo() {
    try {
      if (!this.nb.undo()) toast('Nothing to undo.');
    } catch (error) {
      toast(errorMessage(error), 'error');
    }
    this.afterHistory();
  }

  redo() {
    try {
      if (!this.nb.redo()) toast('Nothing to redo.');
    } catch (error) {
      toast(errorMessage(error), 'error');
    }
    this.afterHistory();
  }

  private afterHistory() {
    this.updateUndoButtons();
    if (this.selected && !this.views.has(this.selected) && this.order.length) this.select(this.order[0], 'command');
  }

  private updateUndoButtons() {
    const undo = document.querySelector<HTMLButtonElement>('[data-action="undo"]');
    const redo = document.querySelector<HTMLButtonElement>('[data-action="redo"]');
    if (undo) undo.disabled = this.readOnly || !this.nb.canUndo();
    if (redo) redo.disabled = this.readOnly || !this.nb.canRedo();
  }

  // ---- the notebook as a file --------------------------------------------------------------

  download() {
    saveFile(`${docId}.ipynb`, new Blob([this.nb.toIpynb()], { type: 'application/x-ipynb+json' }));
  }

  /** Replaces the notebook by an .ipynb (asking first unless the notebook is empty). */
  async importFile(file: File) {
    if (this.readOnly) {
      toast('This link cannot change the notebook.', 'error');
      return;
    }
    const text = await file.text();
    const blank = this.order.every((id) => !this.source(id).trim());
    if (!blank && !confirm(`Replace this notebook by ${file.name}? Everyone here sees the change.`)) return;
    try {
      this.nb.replaceFromIpynb(text);
      toast(`Imported ${file.name}`);
      if (this.order.length) this.select(this.order[0], 'command');
    } catch (error) {
      toast(`Could not import ${file.name}: ${errorMessage(error)}`, 'error');
    }
  }
}
