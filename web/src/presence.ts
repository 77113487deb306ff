// Who is here: this person's name and colour, what they tell the others (their cell and
// selection), and the others shown as chips, in the cells they are in and as carets.

import type { Notebook, Presence, Runtime } from '/engine/inloop_wasm.js';
import { type CellView, type Peer, initials } from './cell';
import { COLOUR_KEY, NAME_KEY, byId, h, storageGet, storageSet } from './common';
import type { RemoteCaret } from './editor';

const params = new URLSearchParams(location.search);

const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#0f9d9a', '#f032e6', '#9a6324', '#800000', '#2f6f3e', '#000075', '#c2185b'];

export function myIdentity(): { name: string; colour: string; asked: boolean } {
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

/** What presence needs of the page. */
export interface PresenceHost {
  /** The cells in the document's order, and their views. */
  readonly order: readonly string[];
  readonly views: ReadonlyMap<string, CellView>;
  /** The cell of the notebook this person is in, and their selection in it when editing. */
  whereAmI(): { cellId: string | null; selection: { anchor: number; head: number } | null };
}

export class Collaborators {
  readonly me = myIdentity();
  /** Whether the chips and carets are out of date (rendered with the next frame). */
  dirty = false;
  private list: Presence[];
  private caretsByCell = new Map<string, RemoteCaret[]>();
  private peerCells = new Set<string>();
  private timer = 0;

  constructor(
    private readonly nb: Notebook,
    private readonly host: PresenceHost,
  ) {
    this.list = nb.presence();
  }

  /** Everyone's presence changed. */
  update(list: Presence[]) {
    this.list = list;
    this.dirty = true;
  }

  /** The others' carets in a cell. */
  carets(id: string): RemoteCaret[] {
    return this.caretsByCell.get(id) ?? [];
  }

  /** Tells the others where this person is (at most every 40 ms). */
  send() {
    if (this.timer) return;
    this.timer = window.setTimeout(() => {
      this.timer = 0;
      try {
        const { cellId, selection } = this.host.whereAmI();
        this.nb.setPresence({
          name: this.me.name,
          colour: this.me.colour,
          cellId,
          selection,
          // JupyterLab's awareness shape, for Jupyter clients.
          user: { name: this.me.name, color: this.me.colour },
        });
      } catch {
        /* closed */
      }
    }, 40);
  }

  render() {
    this.dirty = false;
    const box = byId('presence');
    const chips: HTMLElement[] = [];
    const runtimesInPresence = new Set<string>();
    const carets = new Map<string, RemoteCaret[]>();
    const peersByCell = new Map<string, Peer[]>();
    const views = this.host.views;
    for (const p of this.list) {
      if (p.local) continue;
      const state = p.state ?? {};
      const name = presenceName(state);
      const colour = presenceColour(state);
      const kind = presenceKind(state);
      if (state.runtime) runtimesInPresence.add(String(state.runtime));
      const cellId = typeof state.cellId === 'string' ? state.cellId : null;
      const cellIndex = cellId ? this.host.order.indexOf(cellId) : -1;
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
        if (cellId && views.has(cellId)) views.get(cellId)!.el.scrollIntoView({ block: 'center' });
      });
      chips.push(chip);
      if (cellId && views.has(cellId)) {
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
    for (const id of touched) views.get(id)?.setPeers(peersByCell.get(id) ?? [], carets.get(id) ?? []);
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
      this.send();
      this.render();
    };
    byId('name-form').onsubmit = (e) => {
      e.preventDefault();
      done(true);
    };
    byId('name-dismiss').onclick = () => done(false);
  }
}
