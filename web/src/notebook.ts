// The notebook page's entry, /n/{doc_id}?token=T: opens the engine (inloop-wasm) and, once it
// has something to show, the page over it (./page.ts, which composes the rest).
// web/static/notebook-boot.js has already taken the token out of the address bar.

import init, { Notebook } from '/engine/inloop_wasm.js';
import { wireImageAttachments } from './attachments';
import { byId, errorMessage } from './common';
import { canEdit, canRun, docId, token } from './context';
import { NotebookPage } from './page';
import { myIdentity } from './presence';

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
    if (canEdit) wireImageAttachments(nb);
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
    fatal(`Could not open the notebook: ${errorMessage(error)}`);
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
      page.presence.askName();
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
