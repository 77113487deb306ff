// What both pages share: tokens, storage keys, small DOM helpers.

export type Role = 'read' | 'edit' | 'execute' | 'runtime' | 'admin';
const ROLES: Role[] = ['read', 'edit', 'execute', 'runtime', 'admin'];

export interface Claims {
  doc?: string | null;
  role?: Role;
  exp?: number;
  name?: string;
}

/**
 * The claims of an `il1.<base64url JSON>.<mac>` token, for display only (the relay checks
 * tokens; the page only hides what a role cannot do).
 */
export function tokenClaims(token: string | null | undefined): Claims | null {
  if (!token) return null;
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== 'il1') return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? (claims as Claims) : null;
  } catch {
    return null;
  }
}

/** Whether `role` includes `needed` (read < edit < execute < runtime < admin). */
export function roleAtLeast(role: Role | undefined, needed: Role): boolean {
  if (!role) return false;
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** The admin token this browser remembers (localStorage: every tab, until "Sign out"). */
export const ADMIN_TOKEN_KEY = 'inloop.adminToken';
export const NAME_KEY = 'inloop.name';
export const COLOUR_KEY = 'inloop.colour';

export function storageGet(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function storageSet(key: string, value: string | null) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* private mode: the page works without */
  }
}

/** The admin token: `token` when it is one (then remembered), else the remembered one. */
export function adminToken(token: string | null): string | null {
  if (token && tokenClaims(token)?.role === 'admin') {
    storageSet(ADMIN_TOKEN_KEY, token);
    return token;
  }
  const stored = storageGet(ADMIN_TOKEN_KEY);
  const claims = tokenClaims(stored);
  if (stored && claims?.role === 'admin' && (!claims.exp || claims.exp * 1000 > Date.now())) return stored;
  return null;
}

/**
 * Where a tab keeps the token it opened `docId` with: sessionStorage, so it lives as long as the
 * tab (a reload finds it, other tabs and the next visit do not) and never in the address bar.
 * web/static/notebook-boot.js, which moves a link's `?token=` here, uses the same key.
 */
export function tabTokenKey(docId: string): string {
  return `inloop.token.${docId}`;
}

/** Hands `token` to the next page of this tab that opens `docId`. */
export function rememberTabToken(docId: string, token: string) {
  try {
    sessionStorage.setItem(tabTokenKey(docId), token);
  } catch {
    /* storage disabled: the notebook page falls back to the remembered admin token */
  }
}

/**
 * The nonce the relay put on this page's stylesheet link and in its Content-Security-Policy,
 * for the `<style>` elements CodeMirror creates (empty when the page was served without one).
 * Read as the `nonce` property: Chromium hides the attribute from CSS and `getAttribute`.
 */
export function styleNonce(): string {
  return document.querySelector<HTMLLinkElement>('link[rel="stylesheet"][nonce]')?.nonce ?? '';
}

/**
 * Puts `text` on the clipboard. Without the asynchronous clipboard (no permission, an old
 * browser) a detached textarea's value (a property, never an attribute or a text node) is copied.
 */
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    /* below */
  }
  const area = document.createElement('textarea');
  area.className = 'offscreen';
  document.body.append(area);
  area.value = text;
  area.select();
  const copied = document.execCommand('copy');
  area.value = '';
  area.remove();
  if (!copied) throw new Error('the browser refused to use the clipboard');
}

/** Offers `blob` as a download named `name`. */
export function saveFile(name: string, blob: Blob) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') e.className = String(v);
    else if (k.startsWith('data-')) e.setAttribute(k, v === true ? '' : String(v));
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

/** What went wrong, for a person: an Error's message, or the thing thrown as text. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export function toast(message: string, kind: 'info' | 'error' = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const item = h('div', { class: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 3500);
}

export function relativeTime(seconds: number): string {
  const diff = Date.now() / 1000 - seconds;
  if (diff < 60) return 'just now';
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}
