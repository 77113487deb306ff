// The status bar and the runtime choice: the connection to the relay (online, syncing, offline
// with N unsent changes, refused and why), the kernel the notebook runs in, and who holds the
// runtime lease.

import type { Notebook, Runtime, Status } from '/engine/inloop_wasm.js';
import { byId } from './common';
import { docId, token } from './context';

export class StatusBar {
  private status: Status = { state: 'connecting', unacknowledged: 0 };
  private everSynced = false;
  private probed = false;
  private refusal: string | null = null;

  constructor(private readonly nb: Notebook) {}

  /** Changes made here that the relay has not stored yet. */
  get unacknowledged(): number {
    return this.status.unacknowledged;
  }

  onStatus(status: Status) {
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

  renderConnection() {
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

  renderRuntimeChoice() {
    const select = byId<HTMLSelectElement>('runtime');
    const target = this.nb.notebookTarget();
    if (select.value !== target) select.value = target;
  }

  /** The runtime choice's server entry, the kernel's state, the lease, the interrupt button. */
  render() {
    const server = this.nb.serverRuntime();
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
    if (this.nb.notebookTarget() === 'server') {
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
    const holder = this.nb.leaseHolder();
    const leaseText = holder
      ? `Runtime lease: ${holder.runtime.name}${holder.epoch != null ? ` (epoch ${holder.epoch})` : ''}`
      : 'Runtime lease: nobody';
    lease.dataset.state = holder ? 'held' : 'none';
    lease.title = holder ? `${holder.runtime.name} runs this notebook's server cells (${holder.runtime.kernels.join(', ')}${holder.runtime.gpu ? `, GPU ${holder.runtime.gpu}` : ''})` : 'No server runtime holds the lease: one starts when a cell is sent to the server';
    if (lease.textContent !== leaseText) lease.textContent = leaseText;

    const interrupt = document.querySelector<HTMLButtonElement>('[data-action="interrupt"]');
    if (interrupt) interrupt.classList.toggle('active', this.nb.isBusy());
  }
}
