// The list of cells on the page: a CellView per cell in the document's order, kept in step with
// the document with few DOM moves and without ever taking the focus from the person here; a cell
// deleted by someone else while edited here kept as this person's copy (an orphan) until they
// keep or discard it; editors mounted as cells come into view or while the browser is idle; and
// each frame's re-rendering of the text and outputs that changed.

import type { Cell, CellField, Notebook, TextDelta } from '/engine/inloop_wasm.js';
import { type CellHost, CellView } from './cell';
import { byId } from './common';

/** What the list needs of the page, besides what its cells need. */
export interface CellListHost extends CellHost {
  /** The view of `id` was updated from its cell (its type may have changed). */
  refreshed(id: string): void;
}

export class CellList {
  readonly views = new Map<string, CellView>();
  /** The document's cells, in its order (the first copy of a cell moved twice at once). */
  order: string[] = [];
  private readonly container = byId('cells');
  /**
   * Cells deleted by someone else while being edited here, kept on the page as this person's
   * copy (where the cell was: after `after`, else at `index`) until they keep or discard it.
   */
  private readonly orphans = new Map<string, { after: string | null; index: number }>();
  /** Cells whose map or text the document replaced, to follow once the delivery is over. */
  private readonly rebinds = new Map<string, boolean>();
  private readonly dirtyCells = new Set<string>();
  private readonly dirtyOutputs = new Set<string>();
  private readonly observer: IntersectionObserver;

  constructor(
    private readonly nb: Notebook,
    private readonly host: CellListHost,
  ) {
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
  }

  /** Whether `id` is a deleted cell's copy, kept for the person who was editing it. */
  isOrphan(id: string): boolean {
    return this.orphans.has(id);
  }

  neighbour(id: string, step: number): string | undefined {
    const index = this.order.indexOf(id);
    return index < 0 ? undefined : this.order[index + step];
  }

  // ---- the document's changes --------------------------------------------------------------

  /** Someone else's edit of a cell's text (rendered with the next frame). */
  sourceEdited(id: string, delta: TextDelta[]) {
    const view = this.views.get(id);
    if (view) {
      view.sourceEdited(delta);
      this.dirtyCells.add(id);
    }
  }

  /** A cell's outputs changed (rendered with the next frame). */
  outputsChanged(id: string) {
    this.dirtyOutputs.add(id);
  }

  /** A field of a cell changed. */
  cellChanged(id: string, field: CellField) {
    const view = this.views.get(id);
    if (!view) return;
    if (field === 'cell_type' || field === 'metadata' || field === 'attachments') {
      this.refresh(view);
    } else if (field === 'execution_count' || field === 'execution_state') {
      this.dirtyOutputs.add(id);
    } else if (field === 'source') {
      this.rebindSoon(id, false);
    }
  }

  private refresh(view: CellView) {
    try {
      view.update(this.nb.cell(view.id));
    } catch {
      /* deleted meanwhile */
    }
    this.host.refreshed(view.id);
  }

  /**
   * Makes the cell list match the document's order: O(cells) DOM checks, few moves. A remote
   * change never takes the focus from the person here (their next keys would be commands): the
   * cell with the focus keeps its element in place, and `editing`, the cell being edited here,
   * when deleted by someone else, stays as their copy. Returns whether it did.
   */
  reconcile(inserted: ReadonlySet<string>, editing: string | null): boolean {
    const ids = this.nb.cellIds();
    const seen = new Set<string>();
    const order: string[] = [];
    for (const id of ids) {
      if (seen.has(id)) continue; // two copies after concurrent moves: show the first
      seen.add(id);
      order.push(id);
    }
    const moved = reordered(this.order, order);
    let orphaned = false;
    for (const [id, view] of this.views) {
      if (seen.has(id) || this.orphans.has(id)) continue;
      if (id === editing) {
        this.orphan(id, seen);
        orphaned = true;
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
        const created = new CellView(this.host, id, cell);
        created.setReadOnly(this.host.readOnly);
        const ex = this.nb.latestExecution(id);
        if (ex) created.setExecution(ex);
        this.views.set(id, created);
        this.observer.observe(created.el);
      } else if (this.orphans.has(id)) {
        // Back (the delete undone, a move made of two changes): a cell again, and what was
        // typed into the copy meanwhile goes in.
        this.orphans.delete(id);
        view.setOrphaned(false);
        this.refresh(view);
        this.rebindSoon(id, true);
      } else if (inserted.has(id)) {
        // Re-inserted under its id: a new map, maybe of another type.
        this.refresh(view);
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
    return orphaned;
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
  shownIndex(id: string): number {
    const layout = this.layout();
    return layout.slice(0, layout.indexOf(id)).filter((other) => !this.orphans.has(other)).length;
  }

  /** The cell being edited here was deleted by someone else: it stays as this person's copy. */
  private orphan(id: string, remaining: ReadonlySet<string>) {
    const before = this.order.slice(0, Math.max(this.order.indexOf(id), 0)).filter((other) => remaining.has(other));
    this.orphans.set(id, { after: before.at(-1) ?? null, index: before.length });
    this.views.get(id)!.setOrphaned(true);
  }

  /** Takes a deleted cell's copy off the page. */
  dropOrphan(id: string) {
    const view = this.views.get(id);
    this.orphans.delete(id);
    this.views.delete(id);
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

  // ---- rendering ---------------------------------------------------------------------------

  /** The text and outputs changed since the last frame. */
  render() {
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
  }

  /** Mounts the editors of cells not seen yet while the browser is idle, a few at a time. */
  mountWhenIdle() {
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
