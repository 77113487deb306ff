// The share dialog of the notebook page: make a link of a role (view, edit, edit and run) with
// an optional name and lifetime, copy it, list the document's live links, revoke one.
//
// A link carries a token, so links live in this module's memory and go to the clipboard when
// asked: the DOM only ever shows roles, names and expiry dates, which a notebook's content may
// see (docs/SECURITY.md, "Secrets stay out of the DOM").
//
// The relay's API (admin token): POST /api/docs/{id}/tokens {role, expires_in?, name?} -> 201
// {id, token, role, name, expires_at, page}; GET /api/docs/{id}/tokens -> [{id, role, name,
// created_at, expires_at}] (never a token); DELETE /api/docs/{id}/tokens/{token_id} -> 204.

import { type Role, byId, copyText, h, toast } from './common';

/** A share link as the relay lists it. */
interface LinkInfo {
  id?: string;
  role: Role;
  name?: string | null;
  created_at?: number;
  expires_at?: number | null;
}

const ROLE_LABELS: Record<Role, string> = {
  read: 'Can view',
  edit: 'Can edit',
  execute: 'Can edit and run',
  runtime: 'Runtime',
  admin: 'Admin',
};

/** "in 3 days", "in 5 h": how long until `seconds` (unix time). */
function untilText(seconds: number): string {
  const left = seconds - Date.now() / 1000;
  if (left <= 0) return 'expired';
  if (left < 3600) return `expires in ${Math.max(1, Math.round(left / 60))} min`;
  if (left < 86400) return `expires in ${Math.round(left / 3600)} h`;
  const days = Math.round(left / 86400);
  return `expires in ${days} day${days === 1 ? '' : 's'}`;
}

/** The error message of a refused API call: the relay's `{error}`, or the status. */
async function refusal(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    if (typeof error === 'string') return error;
  } catch {
    /* not JSON */
  }
  return `${response.status} ${response.statusText}${text ? `: ${text}` : ''}`;
}

export class ShareDialog {
  /** The links made in this tab, by token id: the only place their tokens are kept. */
  private readonly madeHere = new Map<string, string>();
  /** Links made in this tab, for a relay that cannot list links. */
  private readonly madeList: LinkInfo[] = [];
  private readonly menu = byId('share-menu');
  private readonly status = byId('share-status');

  /**
   * `token` is the one this tab opened the notebook with; `admin` the admin token that may make
   * and revoke links (this tab's or the one this browser remembers), if any.
   */
  constructor(
    private readonly docId: string,
    private readonly token: string | null,
    private readonly admin: string | null,
  ) {
    byId('share-mint').hidden = !admin;
    byId('share-nomint').hidden = !!admin;
    const button = document.querySelector<HTMLButtonElement>('[data-action="share"]')!;
    button.addEventListener('click', (e) => {
      e.stopPropagation();
      this.menu.hidden = !this.menu.hidden;
      if (!this.menu.hidden && this.admin) void this.refresh();
    });
    document.addEventListener('mousedown', (e) => {
      if (!this.menu.hidden && !(e.target as HTMLElement).closest('#share-menu, [data-action="share"]')) this.menu.hidden = true;
    });
    this.menu.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.menu.hidden = true;
    });
    byId<HTMLFormElement>('share-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.make();
    });
    byId('share-nomint')
      .querySelector('[data-action="copy-current"]')!
      .addEventListener('click', () => void this.copy(this.pageLink(this.token), 'Link copied'));
  }

  private pageLink(token: string | null): string {
    const url = new URL(`/n/${encodeURIComponent(this.docId)}`, location.origin);
    if (token) url.searchParams.set('token', token);
    return url.href;
  }

  private async copy(link: string, done: string) {
    try {
      await copyText(link);
      toast(done);
    } catch (error) {
      toast(`Could not copy the link: ${error instanceof Error ? error.message : String(error)}`, 'error');
    }
  }

  private api(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`/api/docs/${encodeURIComponent(this.docId)}/tokens${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.admin}`, 'content-type': 'application/json' },
    });
  }

  /** Makes a link of the chosen role, name and lifetime, and puts it on the clipboard. */
  private async make() {
    const role = byId<HTMLSelectElement>('share-role').value as Role;
    const expiresIn = Number(byId<HTMLSelectElement>('share-expiry').value);
    const nameInput = byId<HTMLInputElement>('share-name');
    const name = nameInput.value.trim();
    this.status.textContent = 'Making the link…';
    let response: Response;
    try {
      response = await this.api('', {
        method: 'POST',
        body: JSON.stringify({ role, expires_in: expiresIn, ...(name ? { name } : {}) }),
      });
    } catch {
      this.status.textContent = 'Could not make the link: the relay is unreachable.';
      return;
    }
    if (!response.ok) {
      const why = await refusal(response);
      this.status.textContent = `Could not make the link: ${why}.${response.status === 401 ? ' The admin token may have expired: open the admin URL that `inloop serve` printed.' : ''}`;
      return;
    }
    const made = (await response.json()) as LinkInfo & { token: string; page?: string };
    const link = made.page ? new URL(made.page, location.origin).href : this.pageLink(made.token);
    const info: LinkInfo = { id: made.id, role: made.role ?? role, name: made.name ?? (name || null), expires_at: made.expires_at };
    if (made.id) this.madeHere.set(made.id, link);
    this.madeList.push(info);
    nameInput.value = '';
    this.status.textContent = '';
    await this.copy(link, `${ROLE_LABELS[info.role]} link copied`);
    await this.refresh();
  }

  private async revoke(link: LinkInfo) {
    if (!link.id) return;
    let response: Response;
    try {
      response = await this.api(`/${encodeURIComponent(link.id)}`, { method: 'DELETE' });
    } catch {
      toast('Could not revoke the link: the relay is unreachable.', 'error');
      return;
    }
    if (!response.ok && response.status !== 404) {
      toast(`Could not revoke the link: ${await refusal(response)}`, 'error');
      return;
    }
    this.madeHere.delete(link.id);
    const index = this.madeList.findIndex((l) => l.id === link.id);
    if (index >= 0) this.madeList.splice(index, 1);
    toast('Link revoked: whoever opened it is disconnected');
    await this.refresh();
  }

  /** Shows the live links (from the relay; or those made here when it cannot list them). */
  private async refresh() {
    const note = byId('share-links-note');
    let links: LinkInfo[] = this.madeList;
    let listed = false;
    try {
      const response = await this.api('');
      if (response.ok) {
        links = (await response.json()) as LinkInfo[];
        listed = true;
      } else if (response.status === 404 || response.status === 405) {
        note.textContent = 'This relay cannot list or revoke links (it is older than this page): the links made here are shown until the page reloads.';
      } else {
        note.textContent = `Could not list the links: ${await refusal(response)}`;
      }
    } catch {
      note.textContent = 'Could not list the links: the relay is unreachable.';
    }
    if (listed) note.textContent = links.length ? '' : 'No live links yet.';
    const now = Date.now() / 1000;
    const live = links.filter((l) => !l.expires_at || l.expires_at > now).sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0));
    byId('share-links').replaceChildren(...live.map((link) => this.row(link, listed)));
  }

  private row(link: LinkInfo, revocable: boolean): HTMLTableRowElement {
    const actions = h('td', { class: 'share-link-actions' });
    const url = link.id ? this.madeHere.get(link.id) : undefined;
    if (url) {
      const copy = h('button', { class: 'button', type: 'button', title: 'Made in this tab: copy it again' }, 'Copy');
      copy.addEventListener('click', () => void this.copy(url, 'Link copied'));
      actions.append(copy);
    }
    if (revocable && link.id) {
      const revoke = h('button', { class: 'button', type: 'button', 'data-testid': 'share-revoke' }, 'Revoke');
      revoke.addEventListener('click', () => void this.revoke(link));
      actions.append(revoke);
    }
    return h(
      'tr',
      { 'data-testid': 'share-link', 'data-role': link.role },
      h('td', { class: 'share-link-role' }, ROLE_LABELS[link.role] ?? link.role),
      h('td', { class: 'share-link-name' }, link.name || '—'),
      h('td', { class: 'muted' }, link.expires_at ? untilText(link.expires_at) : 'no expiry'),
      actions,
    );
  }
}
