// Where cells run and who runs them: the notebook's target and each cell's, the latest execution
// of each cell, the live server runtimes and which of them holds the runtime lease.
//
// These are decisions, not rendering. They are due to move into the engine (crates/inloop-wasm,
// issue 15 item 2), after which the page only renders them and forwards intents; until then they
// live here, together, and nowhere else on the page.

import type { Execution, Notebook, Runtime } from '/engine/inloop_wasm.js';
import { storageGet, storageSet } from './common';
import { docId } from './context';

export type Target = 'browser' | 'server';

/** Where this browser remembers the notebook's target (for notebooks that name none). */
const TARGET_KEY = `inloop.target.${docId}`;

export class Runs {
  /** Each cell's latest execution (the one requested last). */
  readonly byCell = new Map<string, Execution>();

  constructor(private readonly nb: Notebook) {}

  // ---- executions --------------------------------------------------------------------------

  /** Reads every execution of the document, keeping each cell's latest. */
  load() {
    for (const ex of this.nb.executions()) {
      const current = this.byCell.get(ex.cell_id);
      if (!current || current.requested_at <= ex.requested_at) this.byCell.set(ex.cell_id, ex);
    }
  }

  /** An execution changed: returns it when it is (still) its cell's latest, else undefined. */
  changed(executionId: string): Execution | undefined {
    let ex: Execution;
    try {
      ex = this.nb.execution(executionId);
    } catch {
      return undefined;
    }
    const current = this.byCell.get(ex.cell_id);
    if (current && current.id !== ex.id && current.requested_at > ex.requested_at) return undefined;
    this.byCell.set(ex.cell_id, ex);
    return ex;
  }

  /** The cells' latest executions that are running now. */
  running(): Execution[] {
    return [...this.byCell.values()].filter((ex) => ex.status === 'running');
  }

  /** Whether any cell's latest execution is queued or running. */
  busy(): boolean {
    return [...this.byCell.values()].some((e) => e.status === 'queued' || e.status === 'running');
  }

  // ---- targets -----------------------------------------------------------------------------

  /** Where the notebook runs: its metadata's choice, else this browser's, else the browser. */
  notebookTarget(): Target {
    try {
      const meta = this.nb.notebookMetadata() as { inloop?: { target?: string } };
      if (meta.inloop?.target === 'server') return 'server';
      if (meta.inloop?.target === 'browser') return 'browser';
    } catch {
      /* closed */
    }
    return (storageGet(TARGET_KEY) as Target) ?? 'browser';
  }

  /** Runs the notebook on `target`: remembered here, and in the notebook when `write` (throws if refused). */
  setNotebookTarget(target: Target, write: boolean) {
    storageSet(TARGET_KEY, target);
    if (!write) return;
    const meta = this.nb.notebookMetadata() as { inloop?: Record<string, unknown> };
    this.nb.setNotebookMetadata('inloop', { ...(meta.inloop ?? {}), target });
  }

  /** Has a cell run on `target` ('' : where the notebook runs). Throws if refused. */
  setCellTarget(id: string, target: string) {
    const cell = this.nb.cell(id);
    const inloop = { ...((cell.metadata?.inloop ?? {}) as Record<string, unknown>) };
    if (target) inloop.target = target;
    else delete inloop.target;
    this.nb.setCellMetadata(id, 'inloop', inloop);
  }

  // ---- running -----------------------------------------------------------------------------

  /** Runs a code cell where it says (`cellTarget`), else where the notebook runs. Throws if refused. */
  run(id: string, cellTarget: string) {
    const target: Target = cellTarget === 'browser' || cellTarget === 'server' ? cellTarget : this.notebookTarget();
    this.nb.run(id, target);
  }

  /** Interrupts every queued or running execution; returns how many. Throws at the first refusal. */
  interruptAll(): number {
    let stopped = 0;
    for (const ex of this.nb.executions()) {
      if (ex.status !== 'queued' && ex.status !== 'running') continue;
      this.nb.interrupt(ex.id);
      stopped++;
    }
    return stopped;
  }

  /**
   * Restarts the kernel the notebook runs in: the server runtime's (returned; undefined when no
   * server runtime is connected) or this browser's ('browser'). Throws if refused.
   */
  restart(): Runtime | 'browser' | undefined {
    if (this.notebookTarget() === 'server') {
      const server = this.serverRuntime();
      if (server) this.nb.restartRuntime(server.session_id);
      return server;
    }
    this.nb.restart();
    return 'browser';
  }

  // ---- runtimes and the lease --------------------------------------------------------------

  liveServers(): Runtime[] {
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
  leaseHolder(): { runtime: Runtime; epoch: number | null } | undefined {
    const live = this.liveServers();
    const stated = live.filter((r) => r.lease_epoch != null).sort((a, b) => b.lease_epoch! - a.lease_epoch!)[0];
    if (stated) return { runtime: stated, epoch: stated.lease_epoch };
    let best: Execution | undefined;
    for (const ex of this.byCell.values()) {
      if (ex.lease_epoch == null || !ex.runtime || !live.some((r) => r.session_id === ex.runtime)) continue;
      if (!best || ex.lease_epoch > best.lease_epoch! || (ex.lease_epoch === best.lease_epoch && (ex.started_at ?? 0) > (best.started_at ?? 0))) best = ex;
    }
    if (best) return { runtime: live.find((r) => r.session_id === best!.runtime)!, epoch: best.lease_epoch };
    if (live.length === 1) return { runtime: live[0], epoch: null };
    return undefined;
  }

  /** The server runtime cells go to: the lease holder, else the freshest live one. */
  serverRuntime(): Runtime | undefined {
    const holder = this.leaseHolder();
    if (holder) return holder.runtime;
    return this.liveServers().sort((a, b) => b.heartbeat_at - a.heartbeat_at)[0];
  }
}
