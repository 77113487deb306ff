// The notebook page, /n/{doc_id}?token=T: a view over the engine (inloop-wasm). The engine owns
// the document, sync, kernels and execution; this renders and forwards what the user asks.
// web/static/notebook-boot.js has already taken the token out of the address bar.

import init, { Notebook } from '/engine/inloop_wasm.js';
import type { Cell, ChangeBatch, Execution, Presence, Runtime, Status, TextDelta } from '/engine/inloop_wasm.js';
import { CellView, type CellHost, type CellType, type Peer, initials } from './cell';
import {
  COLOUR_KEY,
  NAME_KEY,
  adminToken,
  byId,
  h,
  roleAtLeast,
  saveFile,
  storageGet,
  storageSet,
  toast,
  tokenClaims,
} from './common';
import type { EditorCommand, RemoteCaret } from './editor';
import { ShareDialog } from './share';

declare global {
  interface Window {
    startedWorker?: Worker | null;
    /** Set by web/static/notebook-boot.js: the notebook and the token this tab opens it with. */
    inloopBoot?: { docId: string; token: string | null };
    inloopPage?: { nb: Notebook; page?: NotebookPage };
  }
}

type Mode = 'command' | 'edit';
type Target = 'browser' | 'server';

const params = new URLSearchParams(location.search);
const docId = window.inloopBoot?.docId ?? '';
/** Only ever in memory (and this tab's sessionStorage): never in the DOM or the address bar. */
const token = window.inloopBoot?.token ?? null;
const claims = tokenClaims(token);
// A token the page cannot read: let the relay decide, show everything.
const canEdit = claims ? roleAtLeast(claims.role, 'edit') : true;
const canRun = claims ? roleAtLeast(claims.role, 'execute') : true;

const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#0f9d9a', '#f032e6', '#9a6324', '#800000', '#2f6f3e', '#000075', '#c2185b'];

function myIdentity(): { name: string; colour: string; asked: boolean } {
  const fromUrl = params.get('name');
  if (fromUrl) storageSet(NAME_KEY, fromUrl);
  let name = fromUrl ?? storageGet(NAME_KEY);
  const asked = !!name;
  if (!name) name = `Guest ${Math.floor(100 + Math.random() * 900)}`;
  let colour = storageGet(COLOUR_KEY);
  if (!colour) {
    colour = COLOURS[Math.floor(Math.random() * COLOURS.length)];
    storageSet(COLOUR_KEY, colour);
  }
  return { name, colour, asked };
}

function presenceName(state: Presence['state']): string {
  const user = state.user as { name?: string } | undefined;
  return String(state.name ?? user?.name ?? 'Anonymous');
}

/** A peer's colour if it is a plain hex colour (presence is any peer's input), else grey. */
function presenceColour(state: Presence['state']): string {
  const user = state.user as { color?: string; colour?: string } | undefined;
  const colour = String(state.colour ?? user?.color ?? user?.colour ?? '');
  return /^#[0-9a-f]{3,8}$/i.test(colour) ? colour : '#888';
}

function presenceKind(state: Presence['state']): 'person' | 'runtime' | 'agent' {
  if (state.runtime) return 'runtime';
  if (state.agent || state.kind === 'agent') return 'agent';
  return 'person';
}

export class NotebookPage implements CellHost {
  readonly readOnly = !canEdit;
  readonly canRun = canRun;
  private readonly views = new Map<string, CellView>();
  private order: string[] = [];
  private readonly container = byId('cells');
  private selected: string | null = null;
  private mode: Mode = 'command';
  /** The cell whose editor is sending its own edit to the engine (not echoed back). */
  private echo: string | null = null;
  /**
   * Cells deleted by someone else while being edited here, kept on the page as this person's
   * copy (where the cell was: after `after`, else at `index`) until they keep or discard it.
   */
  private readonly orphans = new Map<string, { after: string | null; index: number }>();
  /** Cells whose map or text the document replaced, to follow once the delivery is over. */
  private readonly rebinds = new Map<string, boolean>();
  /** When the person last pressed a pointer anywhere on the page (see editorBlurred). */
  private pointerAt = -Infinity;
  private readonly execByCell = new Map<string, Execution>();
  private presenceList: Presence[] = [];
  private caretsByCell = new Map<string, RemoteCaret[]>();
  private peerCells = new Set<string>();
  private mySelection: { anchor: number; head: number } | null = null;
  private readonly me = myIdentity();
  private lastKey = { key: '', at: 0 };
  private clipboard: { type: CellType; source: string }[] = [];
  private frame = 0;
  private dirtyCells = new Set<string>();
  private dirtyOutputs = new Set<string>();
  private statusDirty = false;
  private presenceDirty = false;
  private presenceTimer = 0;
  private status: Status = { state: 'connecting', unacknowledged: 0 };
  private everSynced = false;
  private probed = false;
  private readonly observer: IntersectionObserver;

  constructor(readonly nb: Notebook) {
    this.observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          const id = (entry.target as HTMLElement).dataset.cellId!;
          const view = this.views.get(id);
          if (view && !(view.type === 'markdown' && view.rendered)) view.mount();
          this.observer.unobserve(entry.target);
        }
      },
      { rootMargin: '800px 0px' },
    );
    this.wireToolbar();
    this.wireKeys();
    this.wireDrop();
    nb.onChange((batch) => this.onChange(batch));
    nb.onStatus((status) => this.onStatus(status));
    nb.onPresence((presence) => {
      this.presenceList = presence;
      this.presenceDirty = true;
      this.schedule();
    });
    this.reconcile();
    this.loadExecutions();
    if (this.order.length) this.select(this.order[0], 'command', { focus: false });
    this.presenceList = nb.presence();
    this.sendPresence();
    this.renderPresence();
    this.renderRuntimeChoice();
    this.renderStatus();
    setInterval(() => this.tick(), 250);
    this.mountWhenIdle();
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
    if (delta.length === 0 || this.orphans.has(id)) return;
    this.echo = id;
    try {
      this.nb.editSource(id, delta);
    } catch (error) {
      // Refused (closed engine, a cell deleted meanwhile): show the document's text again.
      toast(`Edit not saved: ${message(error)}`, 'error');
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
    this.sendPresence();
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
    if (this.orphans.has(id) && name !== 'escape' && name !== 'up-out' && name !== 'down-out') {
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
        const prev = this.neighbour(id, -1);
        if (!prev) return false;
        this.select(prev, 'edit', { at: 'end' });
        return true;
      }
      case 'down-out': {
        const next = this.neighbour(id, 1);
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
    return this.caretsByCell.get(id) ?? [];
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
        case 'source_edited': {
          if (batch.origin === 'local' && this.echo === change.cell_id) break;
          const view = this.views.get(change.cell_id);
          if (view) {
            view.sourceEdited(change.delta);
            this.dirtyCells.add(change.cell_id);
          }
          break;
        }
        case 'outputs_changed':
          this.dirtyOutputs.add(change.cell_id);
          break;
        case 'cell_changed': {
          const view = this.views.get(change.cell_id);
          if (!view) break;
          const field = change.field;
          if (field === 'cell_type' || field === 'metadata' || field === 'attachments') {
            this.refreshCell(view);
          } else if (field === 'execution_count' || field === 'execution_state') {
            this.dirtyOutputs.add(change.cell_id);
          } else if (field === 'source') {
            this.rebindSoon(change.cell_id, false);
          }
          break;
        }
        case 'notebook_metadata_changed':
          this.renderRuntimeChoice();
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

  private refreshCell(view: CellView) {
    try {
      view.update(this.nb.cell(view.id));
    } catch {
      /* deleted meanwhile */
    }
    if (view.id === this.selected) this.renderSelection();
  }

  /**
   * Makes the cell list match the document's order: O(cells) DOM checks, few moves. A remote
   * change never takes the focus from the person here (their next keys would be commands): the
   * cell with the focus keeps its element in place, and the cell being edited, when deleted by
   * someone else (`remote`), stays as their copy.
   */
  private reconcile(inserted: ReadonlySet<string> = new Set(), remote = false) {
    const ids = this.nb.cellIds();
    const seen = new Set<string>();
    const order: string[] = [];
    for (const id of ids) {
      if (seen.has(id)) continue; // two copies after concurrent moves: show the first
      seen.add(id);
      order.push(id);
    }
    const selectedAt = this.selected ? this.order.indexOf(this.selected) : -1;
    const moved = reordered(this.order, order);
    for (const [id, view] of this.views) {
      if (seen.has(id) || this.orphans.has(id)) continue;
      if (remote && this.editing(id) && !this.readOnly) {
        this.orphan(id, seen);
        continue;
      }
      this.observer.unobserve(view.el);
      view.destroy();
      this.views.delete(id);
    }
    for (const id of order) {
      const view = this.views.get(id);
      if (!view) {
        let cell: Cell;
        try {
          cell = this.nb.cell(id);
        } catch {
          continue;
        }
        const created = new CellView(this, id, cell);
        created.setReadOnly(this.readOnly);
        const ex = this.execByCell.get(id);
        if (ex) created.setExecution(ex);
        this.views.set(id, created);
        this.observer.observe(created.el);
      } else if (this.orphans.has(id)) {
        // Back (the delete undone, a move made of two changes): a cell again, and what was
        // typed into the copy meanwhile goes in.
        this.orphans.delete(id);
        view.setOrphaned(false);
        this.refreshCell(view);
        this.rebindSoon(id, true);
      } else if (inserted.has(id)) {
        // Re-inserted under its id: a new map, maybe of another type.
        this.refreshCell(view);
        this.rebindSoon(id, false);
      } else if (moved.has(id)) {
        // Yjs has no move: a moved cell is a copy, a new map with the same id. (The engine
        // names one cell per move, not always the copy: moving a cell down past its neighbour
        // reads as the neighbour moving up. So every cell whose place changed is followed.)
        this.rebindSoon(id, false);
      }
    }
    this.order = order;
    const layout = this.layout();
    this.place(layout);
    byId('empty').hidden = layout.length > 0;
    if (this.selected && !this.views.has(this.selected)) {
      // The selected cell was deleted (in command mode): the one now in its place is selected.
      this.selected = null;
      const next = order[Math.min(selectedAt, order.length - 1)];
      if (next) this.select(next, 'command', { focus: false });
    }
    if (!this.selected && order.length) this.select(order[0], 'command', { focus: false });
    this.presenceDirty = true;
  }

  /** The cells as shown: the document's order, and each orphan where its cell was. */
  private layout(): string[] {
    const layout = this.order.filter((id) => this.views.has(id));
    for (const [id, where] of this.orphans) {
      const after = where.after ? layout.indexOf(where.after) : -1;
      layout.splice(after >= 0 ? after + 1 : Math.min(where.index, layout.length), 0, id);
    }
    return layout;
  }

  /**
   * Puts the cells' elements in `layout` order. The cell holding the focus is never taken out
   * of the DOM (that takes the focus away): the others move around it.
   */
  private place(layout: string[]) {
    const els = layout.map((id) => this.views.get(id)!.el);
    const focused = document.activeElement?.closest('.cell');
    const pin = els.findIndex((el) => el === focused);
    let previous: Element | null = pin >= 0 ? els[pin] : null;
    for (const el of els.slice(pin + 1)) {
      const expected = previous ? previous.nextElementSibling : this.container.firstElementChild;
      if (expected !== el) this.container.insertBefore(el, expected);
      previous = el;
    }
    let next = pin >= 0 ? els[pin] : null;
    for (const el of els.slice(0, Math.max(pin, 0)).reverse()) {
      if (next!.previousElementSibling !== el) this.container.insertBefore(el, next);
      next = el;
    }
  }

  /** Where the cell `id` is among the document's cells as shown (an orphan: where it would go). */
  private shownIndex(id: string): number {
    const layout = this.layout();
    return layout.slice(0, layout.indexOf(id)).filter((other) => !this.orphans.has(other)).length;
  }

  /** The cell being edited here was deleted by someone else: it stays as this person's copy. */
  private orphan(id: string, remaining: ReadonlySet<string>) {
    const before = this.order.slice(0, Math.max(this.order.indexOf(id), 0)).filter((other) => remaining.has(other));
    this.orphans.set(id, { after: before.at(-1) ?? null, index: before.length });
    this.views.get(id)!.setOrphaned(true);
    this.sendPresence();
  }

  /** "Keep my copy": the deleted cell back where it was, with what was typed into it. */
  private keepCopy(id: string) {
    const view = this.views.get(id);
    if (!view?.editor || !this.orphans.has(id)) return;
    // A new cell (the engine names it): the copy's editor hands it its text and caret.
    const created = this.insertCell(this.shownIndex(id), view.type, view.editor.text);
    if (!created) return;
    if (view.target) this.setCellTarget(created, view.target);
    this.select(created, 'edit', { at: view.editor.selection });
    this.dropOrphan(id);
  }

  private discardCopy(id: string) {
    const index = this.shownIndex(id);
    this.dropOrphan(id);
    const next = this.order[Math.min(index, this.order.length - 1)];
    if (next) this.select(next, 'command');
  }

  private dropOrphan(id: string) {
    const view = this.views.get(id);
    this.orphans.delete(id);
    this.views.delete(id);
    if (this.selected === id) {
      this.selected = null;
      this.mode = 'command';
      this.renderSelection();
    }
    if (view) {
      this.observer.unobserve(view.el);
      view.destroy();
    }
    byId('empty').hidden = this.views.size > 0;
  }

  /**
   * Has the view of `id` follow its new map or text (`CellView.rebind`) once the engine has
   * delivered the current changes: keys sent again from inside that delivery would come back
   * after `localEdit` returned, and be applied to the editor a second time. No key event can
   * come in between.
   */
  private rebindSoon(id: string, mine: boolean) {
    if (!this.rebinds.size) {
      queueMicrotask(() => {
        const rebinds = [...this.rebinds];
        this.rebinds.clear();
        for (const [id, mine] of rebinds) if (!this.orphans.has(id)) this.views.get(id)?.rebind(mine);
      });
    }
    this.rebinds.set(id, mine || (this.rebinds.get(id) ?? false));
  }

  private executionChanged(executionId: string) {
    let ex: Execution;
    try {
      ex = this.nb.execution(executionId);
    } catch {
      return;
    }
    const current = this.execByCell.get(ex.cell_id);
    if (current && current.id !== ex.id && current.requested_at > ex.requested_at) return;
    this.execByCell.set(ex.cell_id, ex);
    this.views.get(ex.cell_id)?.setExecution(ex);
    this.statusDirty = true;
  }

  private loadExecutions() {
    for (const ex of this.nb.executions()) {
      const current = this.execByCell.get(ex.cell_id);
      if (!current || current.requested_at <= ex.requested_at) this.execByCell.set(ex.cell_id, ex);
    }
    for (const [id, ex] of this.execByCell) this.views.get(id)?.setExecution(ex);
  }

  /** One frame's worth of rendering: text, outputs, presence, status. */
  private schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const id of this.dirtyCells) this.views.get(id)?.refresh();
      this.dirtyCells.clear();
      for (const id of this.dirtyOutputs) {
        const view = this.views.get(id);
        if (!view) continue;
        try {
          const cell = this.nb.cell(id);
          view.setOutputs(cell.outputs ?? []);
          view.setExecutionCount(cell.execution_count ?? null);
        } catch {
          /* deleted */
        }
      }
      this.dirtyOutputs.clear();
      if (this.presenceDirty) this.renderPresence();
      if (this.statusDirty) this.renderStatus();
    });
  }

  private tick() {
    for (const ex of this.execByCell.values()) {
      if (ex.status === 'running') this.views.get(ex.cell_id)?.tick();
    }
    this.renderStatus();
  }

  /** Mounts the editors of cells not seen yet while the browser is idle, a few at a time. */
  private mountWhenIdle() {
    const idle = (window.requestIdleCallback ?? ((f: IdleRequestCallback) => setTimeout(() => f({ timeRemaining: () => 8, didTimeout: false }), 50))) as typeof requestIdleCallback;
    const step = (deadline: IdleDeadline) => {
      for (const id of this.order) {
        if (deadline.timeRemaining() < 4) break;
        const view = this.views.get(id);
        if (view && !view.mounted && !(view.type === 'markdown' && view.rendered)) view.mount();
      }
      const left = this.order.some((id) => {
        const v = this.views.get(id);
        return v && !v.mounted && !(v.type === 'markdown' && v.rendered);
      });
      if (left) idle(step, { timeout: 2000 });
      else setTimeout(() => idle(step), 3000); // new cells from peers
    };
    idle(step, { timeout: 2000 });
  }

  // ---- selection and modes -----------------------------------------------------------------

  private select(id: string, mode: Mode = this.mode, opts: { focus?: boolean; at?: 'start' | 'end' | { anchor: number; head: number } } = {}) {
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
    this.sendPresence();
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

  private neighbour(id: string, step: number): string | undefined {
    const index = this.order.indexOf(id);
    return index < 0 ? undefined : this.order[index + step];
  }

  // ---- running -----------------------------------------------------------------------------

  private notebookTarget(): Target {
    try {
      const meta = this.nb.notebookMetadata() as { inloop?: { target?: string } };
      if (meta.inloop?.target === 'server') return 'server';
      if (meta.inloop?.target === 'browser') return 'browser';
    } catch {
      /* closed */
    }
    return (storageGet(`inloop.target.${docId}`) as Target) ?? 'browser';
  }

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
    const target: Target = view.target === 'browser' || view.target === 'server' ? view.target : this.notebookTarget();
    try {
      this.nb.run(id, target);
    } catch (error) {
      toast(`Could not run the cell: ${message(error)}`, 'error');
      return false;
    }
    return true;
  }

  private runAndAdvance(id: string) {
    this.runCell(id);
    const next = this.neighbour(id, 1);
    if (next) {
      this.select(next, 'command');
    } else if (!this.readOnly) {
      const created = this.insertCell(this.order.length, 'code');
      if (created) this.select(created, 'edit');
    } else {
      this.select(id, 'command');
    }
  }

  private runInPlace(id: string) {
    this.runCell(id);
    this.select(id, 'command');
  }

  private runAndInsert(id: string) {
    this.runCell(id);
    if (this.readOnly) return;
    const created = this.insertCell(this.order.indexOf(id) + 1, 'code');
    if (created) this.select(created, 'edit');
  }

  private runAll() {
    for (const id of this.order) {
      const view = this.views.get(id);
      if (view?.type === 'code') {
        if (!this.runCell(id)) return;
      } else if (view?.type === 'markdown') view.setRendered(true);
    }
  }

  private interruptAll() {
    let stopped = 0;
    for (const ex of this.nb.executions()) {
      if (ex.status !== 'queued' && ex.status !== 'running') continue;
      try {
        this.nb.interrupt(ex.id);
        stopped++;
      } catch (error) {
        toast(`Could not interrupt: ${message(error)}`, 'error');
        return;
      }
    }
    if (!stopped) toast('Nothing is running.');
  }

  private restart() {
    try {
      if (this.notebookTarget() === 'server') {
        const server = this.serverRuntime();
        if (!server) {
          toast('No server runtime is connected.', 'error');
          return;
        }
        this.nb.restartRuntime(server.session_id);
        toast(`Restarting ${server.name}…`);
      } else {
        this.nb.restart();
        toast('Restarting the browser kernel…');
      }
    } catch (error) {
      toast(`Could not restart: ${message(error)}`, 'error');
    }
  }

  private setCellTarget(id: string, target: string) {
    try {
      const cell = this.nb.cell(id);
      const inloop = { ...((cell.metadata?.inloop ?? {}) as Record<string, unknown>) };
      if (target) inloop.target = target;
      else delete inloop.target;
      this.nb.setCellMetadata(id, 'inloop', inloop);
    } catch (error) {
      toast(`Could not change the runtime: ${message(error)}`, 'error');
    }
  }

  // ---- editing cells -----------------------------------------------------------------------

  private structural<T>(f: () => T): T | undefined {
    this.nb.undoBoundary();
    try {
      return f();
    } catch (error) {
      toast(message(error), 'error');
      return undefined;
    } finally {
      this.nb.undoBoundary();
    }
  }

  private insertCell(index: number, type: CellType, source = ''): string | undefined {
    if (this.readOnly) return undefined;
    return this.structural(() => this.nb.insertCell(Math.max(0, Math.min(index, this.order.length)), type, source));
  }

  private deleteCell(id: string) {
    if (this.readOnly) return;
    const next = this.neighbour(id, 1) ?? this.neighbour(id, -1);
    this.structural(() => this.nb.deleteCell(id));
    if (next) this.select(next, 'command');
  }

  private setType(id: string, type: CellType) {
    const view = this.views.get(id);
    if (!view || view.type === type || this.readOnly) return;
    this.structural(() => this.nb.setCellType(id, type));
  }

  private undo() {
    try {
      if (!this.nb.undo()) toast('Nothing to undo.');
    } catch (error) {
      toast(message(error), 'error');
    }
    this.afterHistory();
  }

  private redo() {
    try {
      if (!this.nb.redo()) toast('Nothing to redo.');
    } catch (error) {
      toast(message(error), 'error');
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

  // ---- keys --------------------------------------------------------------------------------

  private wireKeys() {
    document.addEventListener('keydown', (e) => {
      // Ctrl/Cmd+S: every change is saved as it is made (no browser "save page" dialog).
      if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 's') {
        e.preventDefault();
        const n = this.status.unacknowledged;
        toast(n ? `${n} change${n === 1 ? '' : 's'} not saved on the relay yet (kept in this browser)` : 'Every change is saved as you make it.');
        return;
      }
      const target = e.target as HTMLElement;
      if (target.closest?.('.cm-editor')) return; // the editor's own keymap
      if (this.mode === 'edit' && (target === document.body || target === document.documentElement)) {
        // Edit mode with the focus fallen out of the editor (see editorBlurred): the key is
        // for the cell being edited, never a command. Focused now, the editor gets its text.
        const editor = this.selected ? this.views.get(this.selected)?.editor : undefined;
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
    document.addEventListener('pointerdown', () => (this.pointerAt = performance.now()), true);
    this.container.addEventListener('mousedown', (e) => {
      const cellEl = (e.target as HTMLElement).closest<HTMLElement>('.cell');
      if (!cellEl) return;
      const id = cellEl.dataset.cellId!;
      if ((e.target as HTMLElement).closest('.cm-editor, .cell-input, button, select, iframe, a')) return;
      if (this.selected !== id || this.mode === 'edit') {
        e.preventDefault();
        this.select(id, 'command');
      }
    });
  }

  /** Jupyter's command mode. Returns whether the key was handled. */
  private commandKey(e: KeyboardEvent): boolean {
    // A deleted cell's copy is no cell of the notebook: no command acts on it (Enter edits it).
    const orphan = this.selected !== null && this.orphans.has(this.selected);
    const id = orphan ? null : this.selected;
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key;
    if (key === 'Enter') {
      if (orphan && !e.shiftKey && !mod && !e.altKey) this.select(this.selected!, 'edit');
      if (!id) return orphan;
      if (e.shiftKey) this.runAndAdvance(id);
      else if (mod) this.runInPlace(id);
      else if (e.altKey) this.runAndInsert(id);
      else this.select(id, 'edit');
      return true;
    }
    if (mod && (key === 'z' || key === 'Z')) {
      if (e.shiftKey) this.redo();
      else this.undo();
      return true;
    }
    if (mod && (key === 'y' || key === 'Y')) {
      this.redo();
      return true;
    }
    if (mod || e.altKey) return false;
    const now = Date.now();
    const twice = this.lastKey.key === key && now - this.lastKey.at < 800;
    this.lastKey = { key, at: twice ? 0 : now };
    const index = id ? this.order.indexOf(id) : -1;
    switch (key) {
      case 'ArrowUp':
      case 'k':
      case 'K':
        if (index > 0) this.select(this.order[index - 1], 'command');
        return true;
      case 'ArrowDown':
      case 'j':
      case 'J':
        if (index >= 0 && index < this.order.length - 1) this.select(this.order[index + 1], 'command');
        return true;
      case 'a':
      case 'A': {
        const created = this.insertCell(Math.max(index, 0), 'code');
        if (created) this.select(created, 'command');
        return true;
      }
      case 'b':
      case 'B': {
        const created = this.insertCell(index + 1, 'code');
        if (created) this.select(created, 'command');
        return true;
      }
      case 'd':
      case 'D':
        if (twice && id) this.deleteCell(id);
        return true;
      case 'm':
      case 'M':
        if (id) this.setType(id, 'markdown');
        return true;
      case 'y':
      case 'Y':
        if (id) this.setType(id, 'code');
        return true;
      case 'r':
      case 'R':
        if (id) this.setType(id, 'raw');
        return true;
      case 'i':
      case 'I':
        if (twice) this.interruptAll();
        return true;
      case '0':
        if (twice) this.restart();
        return true;
      case 'c':
      case 'C':
      case 'x':
      case 'X':
        if (!id) return true;
        this.clipboard = [{ type: this.views.get(id)!.type, source: this.source(id) }];
        if (key.toLowerCase() === 'x') this.deleteCell(id);
        return true;
      case 'v':
      case 'V': {
        let at = key === 'V' ? index : index + 1;
        let last: string | undefined;
        for (const c of this.clipboard) {
          last = this.insertCell(at++, c.type, c.source) ?? last;
        }
        if (last) this.select(last, 'command');
        return true;
      }
      case 'z':
        this.undo();
        return true;
      case 'Escape':
        return true;
    }
    return false;
  }

  // ---- toolbar -----------------------------------------------------------------------------

  private wireToolbar() {
    const toolbar = byId('toolbar');
    toolbar.addEventListener('click', (e) => {
      const button = (e.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
      if (!button) return;
      const id = this.selected;
      switch (button.dataset.action) {
        case 'add-cell': {
          const index = id ? this.order.indexOf(id) + 1 : this.order.length;
          const created = this.insertCell(index, 'code');
          if (created) this.select(created, 'edit');
          break;
        }
        case 'run':
          if (id) this.runAndAdvance(id);
          break;
        case 'run-all':
          this.runAll();
          break;
        case 'interrupt':
          this.interruptAll();
          break;
        case 'restart':
          this.restart();
          break;
        case 'undo':
          this.undo();
          break;
        case 'redo':
          this.redo();
          break;
        case 'download':
          this.download();
          break;
      }
    });
    byId('empty-add').addEventListener('click', () => {
      const created = this.insertCell(0, 'code');
      if (created) this.select(created, 'edit');
    });
    const typeSelect = byId<HTMLSelectElement>('cell-type');
    typeSelect.addEventListener('change', () => {
      if (this.selected) this.setType(this.selected, typeSelect.value as CellType);
      if (this.selected) this.select(this.selected, 'command');
    });
    const runtime = byId<HTMLSelectElement>('runtime');
    runtime.addEventListener('change', () => {
      const target = runtime.value as Target;
      storageSet(`inloop.target.${docId}`, target);
      if (!this.readOnly) {
        try {
          const meta = this.nb.notebookMetadata() as { inloop?: Record<string, unknown> };
          this.nb.setNotebookMetadata('inloop', { ...(meta.inloop ?? {}), target });
        } catch (error) {
          toast(message(error), 'error');
        }
      }
      this.renderStatus();
    });
    const upload = byId<HTMLInputElement>('upload');
    upload.addEventListener('change', async () => {
      const file = upload.files?.[0];
      upload.value = '';
      if (file) await this.importFile(file);
    });
    new ShareDialog(docId, token, adminToken(token)); // wires the share button and its dialog
    for (const el of document.querySelectorAll<HTMLElement>('[data-needs="edit"]')) {
      if (this.readOnly) (el as HTMLButtonElement).disabled = true;
    }
    for (const el of document.querySelectorAll<HTMLElement>('[data-needs="run"]')) {
      if (!this.canRun) (el as HTMLButtonElement).disabled = true;
    }
    upload.disabled = this.readOnly;
    runtime.disabled = !this.canRun;
    const badge = byId('role');
    badge.textContent = claims?.role ? `${claims.role === 'execute' ? 'can run' : claims.role === 'edit' ? 'can edit' : claims.role === 'read' ? 'view only' : claims.role}` : '';
    badge.hidden = !claims?.role;
  }

  private download() {
    saveFile(`${docId}.ipynb`, new Blob([this.nb.toIpynb()], { type: 'application/x-ipynb+json' }));
  }

  /** Replaces the notebook by an .ipynb (asking first unless the notebook is empty). */
  private async importFile(file: File) {
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
      toast(`Could not import ${file.name}: ${message(error)}`, 'error');
    }
  }

  private wireDrop() {
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
      if (!file) return;
      e.preventDefault();
      if (!file.name.endsWith('.ipynb')) {
        toast('Drop an .ipynb file to import it.', 'error');
        return;
      }
      await this.importFile(file);
    });
  }

  // ---- presence ----------------------------------------------------------------------------

  private sendPresence() {
    if (this.presenceTimer) return;
    this.presenceTimer = window.setTimeout(() => {
      this.presenceTimer = 0;
      try {
        // In a deleted cell's copy, this person is in no cell of the notebook.
        const cellId = this.selected && !this.orphans.has(this.selected) ? this.selected : null;
        this.nb.setPresence({
          name: this.me.name,
          colour: this.me.colour,
          cellId,
          selection: cellId && this.mode === 'edit' ? this.mySelection : null,
          // JupyterLab's awareness shape, for Jupyter clients.
          user: { name: this.me.name, color: this.me.colour },
        });
      } catch {
        /* closed */
      }
    }, 40);
  }

  private renderPresence() {
    this.presenceDirty = false;
    const box = byId('presence');
    const chips: HTMLElement[] = [];
    const runtimesInPresence = new Set<string>();
    const carets = new Map<string, RemoteCaret[]>();
    const peersByCell = new Map<string, Peer[]>();
    for (const p of this.presenceList) {
      if (p.local) continue;
      const state = p.state ?? {};
      const name = presenceName(state);
      const colour = presenceColour(state);
      const kind = presenceKind(state);
      if (state.runtime) runtimesInPresence.add(String(state.runtime));
      const cellId = typeof state.cellId === 'string' ? state.cellId : null;
      const cellIndex = cellId ? this.order.indexOf(cellId) : -1;
      const chip = h(
        'span',
        {
          class: `presence-chip presence-${kind}`,
          'data-testid': 'presence-user',
          'data-kind': kind,
          'data-client-id': String(p.clientId),
          title: `${name}${kind !== 'person' ? ` (${kind})` : ''}${cellIndex >= 0 ? ` · in cell ${cellIndex + 1}` : ''}`,
        },
        kind === 'runtime' ? '⚙' : kind === 'agent' ? '✦' : initials(name),
      );
      chip.style.backgroundColor = colour;
      chip.addEventListener('click', () => {
        if (cellId && this.views.has(cellId)) this.views.get(cellId)!.el.scrollIntoView({ block: 'center' });
      });
      chips.push(chip);
      if (cellId && this.views.has(cellId)) {
        if (!peersByCell.has(cellId)) peersByCell.set(cellId, []);
        peersByCell.get(cellId)!.push({ name, colour });
        const sel = state.selection as { anchor?: number; head?: number } | null | undefined;
        if (sel && typeof sel.head === 'number') {
          if (!carets.has(cellId)) carets.set(cellId, []);
          carets.get(cellId)!.push({
            clientId: p.clientId,
            name,
            colour,
            anchor: typeof sel.anchor === 'number' ? sel.anchor : sel.head,
            head: sel.head,
          });
        }
      }
    }
    let runtimes: Runtime[] = [];
    try {
      runtimes = this.nb.runtimes();
    } catch {
      /* closed */
    }
    for (const r of runtimes) {
      if (r.kind !== 'server' || r.status === 'gone' || runtimesInPresence.has(r.session_id)) continue;
      const chip = h('span', { class: 'presence-chip presence-runtime', 'data-testid': 'presence-runtime', 'data-kind': 'runtime', title: `${r.name} (server runtime, ${r.status})` }, '⚙');
      chips.push(chip);
    }
    const self = h('span', { class: 'presence-chip presence-self', 'data-testid': 'presence-self', title: `You: ${this.me.name} (click to rename)` }, initials(this.me.name));
    self.style.backgroundColor = this.me.colour;
    self.addEventListener('click', () => this.askName(true));
    box.replaceChildren(...chips, self);
    byId('presence-count').textContent = chips.length ? `${chips.length + 1} here` : '';

    this.caretsByCell = carets;
    const touched = new Set<string>([...this.peerCells, ...peersByCell.keys()]);
    for (const id of touched) this.views.get(id)?.setPeers(peersByCell.get(id) ?? [], carets.get(id) ?? []);
    this.peerCells = new Set(peersByCell.keys());
  }

  askName(force = false) {
    if (this.me.asked && !force) return;
    const prompt = byId('name-prompt');
    const input = byId<HTMLInputElement>('name-input');
    input.value = this.me.asked ? this.me.name : '';
    input.placeholder = this.me.name;
    prompt.hidden = false;
    if (force) input.focus();
    const done = (save: boolean) => {
      prompt.hidden = true;
      const name = input.value.trim();
      if (save && name) this.me.name = name;
      this.me.asked = true;
      storageSet(NAME_KEY, this.me.name);
      this.sendPresence();
      this.renderPresence();
    };
    byId('name-form').onsubmit = (e) => {
      e.preventDefault();
      done(true);
    };
    byId('name-dismiss').onclick = () => done(false);
  }

  // ---- status ------------------------------------------------------------------------------

  private onStatus(status: Status) {
    this.status = status;
    if (status.state === 'synced') this.everSynced = true;
    if (status.state === 'offline' && !this.everSynced && !this.probed) {
      this.probed = true;
      void this.probeAccess();
    }
    this.renderConnection();
  }

  /** Offline before ever syncing: is it the network, or a refused token? */
  private async probeAccess() {
    try {
      const response = await fetch(`/api/docs/${encodeURIComponent(docId)}/ipynb`, {
        method: 'HEAD',
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      if (response.status === 401 || response.status === 403 || response.status === 404) {
        this.refusal = response.status === 404 ? 'no such notebook' : token ? 'the link’s token was refused (wrong, expired or for another notebook)' : 'this link has no token';
        this.renderConnection();
      }
    } catch {
      /* really offline */
    }
  }

  private refusal: string | null = null;

  private renderConnection() {
    const el = byId('status-connection');
    const s = this.status;
    const n = s.unacknowledged;
    let text: string;
    let state: string = s.state;
    switch (s.state) {
      case 'connecting':
        text = 'Connecting…';
        break;
      case 'syncing':
        text = 'Syncing…';
        break;
      case 'synced':
        text = n ? `Online · saving ${n} change${n === 1 ? '' : 's'}` : 'Online · all changes saved';
        break;
      case 'offline':
        text = `Offline · ${n} unsent change${n === 1 ? '' : 's'} (kept in this browser)`;
        if (this.refusal) {
          text = `Cannot connect: ${this.refusal}`;
          state = 'closed';
        }
        break;
      case 'closed':
      default: {
        const reason = s.reason || (s.code ? `code ${s.code}` : 'closed');
        const refused = s.code === 4401 || s.code === 4403;
        text = `Disconnected: ${s.reason || (s.code === 4403 ? 'access refused' : reason)}${s.code ? ` (${s.code})` : ''}${refused ? ' · ask for a new link' : ''}`;
        break;
      }
    }
    el.dataset.state = state;
    el.textContent = text;
    el.title = s.reason ? `${s.reason}${s.code ? ` (close code ${s.code})` : ''}` : '';
    document.body.dataset.connection = state;
  }

  private liveServers(): Runtime[] {
    try {
      return this.nb.runtimes().filter((r) => r.kind === 'server' && r.status !== 'gone');
    } catch {
      return [];
    }
  }

  /**
   * Who holds the runtime lease: a live server runtime that states its epoch, else the one
   * that started the newest entry under an epoch, else the only live server runtime.
   */
  private leaseHolder(): { runtime: Runtime; epoch: number | null } | undefined {
    const live = this.liveServers();
    const stated = live.filter((r) => r.lease_epoch != null).sort((a, b) => b.lease_epoch! - a.lease_epoch!)[0];
    if (stated) return { runtime: stated, epoch: stated.lease_epoch };
    let best: Execution | undefined;
    for (const ex of this.execByCell.values()) {
      if (ex.lease_epoch == null || !ex.runtime || !live.some((r) => r.session_id === ex.runtime)) continue;
      if (!best || ex.lease_epoch > best.lease_epoch! || (ex.lease_epoch === best.lease_epoch && (ex.started_at ?? 0) > (best.started_at ?? 0))) best = ex;
    }
    if (best) return { runtime: live.find((r) => r.session_id === best!.runtime)!, epoch: best.lease_epoch };
    if (live.length === 1) return { runtime: live[0], epoch: null };
    return undefined;
  }

  /** The server runtime cells go to: the lease holder, else the freshest live one. */
  private serverRuntime(): Runtime | undefined {
    const holder = this.leaseHolder();
    if (holder) return holder.runtime;
    return this.liveServers().sort((a, b) => b.heartbeat_at - a.heartbeat_at)[0];
  }

  private renderRuntimeChoice() {
    const select = byId<HTMLSelectElement>('runtime');
    const target = this.notebookTarget();
    if (select.value !== target) select.value = target;
  }

  private renderStatus() {
    this.statusDirty = false;
    const server = this.serverRuntime();
    // The runtime choice: the server's kernel, GPU and status.
    const serverOption = document.querySelector<HTMLOptionElement>('#runtime option[value="server"]')!;
    const label = server
      ? `Server: ${server.name} · ${server.kernels.join(', ') || 'kernel'}${server.gpu ? ` · GPU ${server.gpu}` : ''} · ${server.status}`
      : 'Server runtime (starts on first run)';
    if (serverOption.textContent !== label) serverOption.textContent = label;
    this.renderRuntimeChoice();

    // Kernel state.
    const kernel = byId('status-kernel');
    let text: string;
    let state: string;
    if (this.notebookTarget() === 'server') {
      state = server ? server.status : 'none';
      text = server ? `Server kernel (${server.kernels[0] ?? 'python'}): ${server.status}` : 'Server kernel: not started';
    } else {
      const ks = this.nb.kernelState();
      let mine: Runtime | undefined;
      try {
        mine = this.nb.runtimes().find((r) => r.session_id === this.nb.runtimeId);
      } catch {
        mine = undefined;
      }
      if (ks === 'ready') state = mine?.status === 'busy' ? 'busy' : mine?.status === 'restarting' ? 'restarting' : 'idle';
      else if (ks.startsWith('failed')) state = 'failed';
      else if (ks === 'none') state = 'none';
      else state = ks === 'starting' ? 'starting' : ks;
      text = state === 'none' ? 'No kernel (this link cannot run)' : `Python in this browser: ${state === 'failed' ? ks : state}`;
    }
    kernel.dataset.state = state;
    if (kernel.textContent !== text) kernel.textContent = text;

    // The runtime lease.
    const lease = byId('status-lease');
    const holder = this.leaseHolder();
    const leaseText = holder
      ? `Runtime lease: ${holder.runtime.name}${holder.epoch != null ? ` (epoch ${holder.epoch})` : ''}`
      : 'Runtime lease: nobody';
    lease.dataset.state = holder ? 'held' : 'none';
    lease.title = holder ? `${holder.runtime.name} runs this notebook's server cells (${holder.runtime.kernels.join(', ')}${holder.runtime.gpu ? `, GPU ${holder.runtime.gpu}` : ''})` : 'No server runtime holds the lease: one starts when a cell is sent to the server';
    if (lease.textContent !== leaseText) lease.textContent = leaseText;

    const running = [...this.execByCell.values()].some((e) => e.status === 'queued' || e.status === 'running');
    const interrupt = document.querySelector<HTMLButtonElement>('[data-action="interrupt"]');
    if (interrupt) interrupt.classList.toggle('active', running);
  }
}

/**
 * The cells of `after` (an order of cell ids) whose place among the cells of `before` changed:
 * from the first to the last place where the two differ, cells added or removed left aside.
 */
function reordered(before: string[], after: string[]): Set<string> {
  const kept = new Set(after);
  const was = before.filter((id) => kept.has(id));
  const old = new Set(was);
  const now = after.filter((id) => old.has(id));
  let first = 0;
  while (first < now.length && now[first] === was[first]) first++;
  let last = now.length - 1;
  while (last > first && now[last] === was[last]) last--;
  return new Set(now.slice(first, last + 1));
}

function message(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

async function main() {
  document.title = `${docId || 'notebook'} · inloop`;
  byId('title').textContent = docId || 'notebook';
  if (!docId) {
    fatal('No notebook id in this address: open a notebook from the list.');
    return;
  }
  if (!token) {
    byId('banner').textContent = 'This tab has no token for this notebook: the relay will refuse it. Open the notebook from the list, or use a share link.';
    byId('banner').hidden = false;
  }
  const identity = myIdentity();
  try {
    await init();
    const nb = await Notebook.open({
      docId,
      token: token ?? undefined,
      worker: canRun ? '/kernel/worker.js' : null,
      startedWorker: canRun ? (window.startedWorker ?? undefined) : undefined,
      name: identity.name,
    });
    window.inloopPage = { nb };
    const start = () => {
      const page = new NotebookPage(nb);
      window.inloopPage = { nb, page };
      pageReady(page, nb);
    };
    // Show what IndexedDB had at once; an empty copy waits for the first sync (or a failure).
    if (nb.cellIds().length > 0) {
      start();
    } else {
      let started = false;
      const go = () => {
        if (started) return;
        started = true;
        nb.off(watcher);
        start();
      };
      const watcher = nb.onStatus((s) => {
        if (s.state === 'synced' || s.state === 'offline' || s.state === 'closed') queueMicrotask(go);
      });
      setTimeout(go, 4000);
    }
  } catch (error) {
    fatal(`Could not open the notebook: ${message(error)}`);
  }
}

/**
 * Marks the page ready once the first render is painted and the connection has left
 * 'connecting' (it says online or offline; at most 3 s later).
 */
function pageReady(page: NotebookPage, nb: Notebook) {
  let done = false;
  const ready = () => {
    if (done) return;
    done = true;
    nb.off(watcher);
    requestAnimationFrame(() => {
      document.body.dataset.ready = 'true';
      performance.mark('inloop:ready');
      page.askName();
    });
  };
  const watcher = nb.onStatus((s) => {
    if (s.state !== 'connecting') queueMicrotask(ready);
  });
  setTimeout(ready, 3000);
}

function fatal(text: string) {
  const banner = byId('banner');
  banner.textContent = text;
  banner.hidden = false;
  banner.classList.add('banner-error');
  document.body.dataset.ready = 'error';
}

void main();
