// What this tab opened, read once when the page loads: the notebook's id, the token
// (web/static/notebook-boot.js has already taken it out of the address bar) and what it allows.

import type { Notebook } from '/engine/inloop_wasm.js';
import { roleAtLeast, tokenClaims } from './common';
import type { NotebookPage } from './page';

declare global {
  interface Window {
    startedWorker?: Worker | null;
    /** Set by web/static/notebook-boot.js: the notebook and the token this tab opens it with. */
    inloopBoot?: { docId: string; token: string | null };
    inloopPage?: { nb: Notebook; page?: NotebookPage };
  }
}

export const docId = window.inloopBoot?.docId ?? '';
/** Only ever in memory (and this tab's sessionStorage): never in the DOM or the address bar. */
export const token = window.inloopBoot?.token ?? null;
export const claims = tokenClaims(token);
// A token the page cannot read: let the relay decide, show everything.
export const canEdit = claims ? roleAtLeast(claims.role, 'edit') : true;
export const canRun = claims ? roleAtLeast(claims.role, 'execute') : true;
