// The list page, /?token=ADMIN: the notebooks on this relay, a new one, an import.
//
// The admin token leaves the address bar at once and is remembered in this browser
// (localStorage). It is never put in the page: a notebook link is /n/{id}, and a click hands the
// token to the notebook page of this tab through sessionStorage (a link opened in a new tab
// finds the remembered one); downloads are fetched with it in a header.

import {
  ADMIN_TOKEN_KEY,
  adminToken,
  byId,
  h,
  relativeTime,
  rememberTabToken,
  saveFile,
  storageSet,
  toast,
  tokenClaims,
} from './common';

interface DocSummary {
  id: string;
  created_at: number;
}

const urlToken = new URLSearchParams(location.search).get('token');

function showBanner(text: string, error = true) {
  const banner = byId('banner');
  banner.textContent = text;
  banner.hidden = false;
  banner.classList.toggle('banner-error', error);
}

function notebookPath(id: string): string {
  return `/n/${encodeURIComponent(id)}`;
}

/** Opens notebook `id` in this tab with `token`, which never appears in the address bar. */
function openNotebook(id: string, token: string, replace = false) {
  rememberTabToken(id, token);
  if (replace) location.replace(notebookPath(id));
  else location.href = notebookPath(id);
}

async function download(id: string, token: string) {
  const response = await api(`/api/docs/${encodeURIComponent(id)}/ipynb`, token);
  if (!response.ok) {
    toast(`Could not download ${id}: ${await refusal(response)}`, 'error');
    return;
  }
  saveFile(`${id}.ipynb`, await response.blob());
}

async function api(path: string, token: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
  });
  return response;
}

async function refusal(response: Response): Promise<string> {
  if (response.status === 401) return 'the admin token was refused (wrong or expired)';
  if (response.status === 403) return 'this token is not an admin token';
  const text = await response.text().catch(() => '');
  return `${response.status} ${response.statusText}${text ? `: ${text}` : ''}`;
}

async function listDocs(token: string) {
  const response = await api('/api/docs', token);
  if (!response.ok) {
    const why = await refusal(response);
    if (response.status === 401 || response.status === 403) {
      storageSet(ADMIN_TOKEN_KEY, null);
      askToken(`Cannot list the notebooks: ${why}. Paste the admin token that \`inloop serve\` printed, or open the URL it printed.`);
    } else {
      showBanner(`Cannot list the notebooks: ${why}`);
    }
    return;
  }
  const docs = ((await response.json()) as DocSummary[]).sort((a, b) => b.created_at - a.created_at);
  const table = byId<HTMLTableElement>('docs');
  const body = table.tBodies[0];
  body.replaceChildren(
    ...docs.map((doc) => {
      const link = h('a', { href: notebookPath(doc.id), class: 'doc-link' }, doc.id);
      link.addEventListener('click', (e) => {
        if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return; // a new tab or window
        e.preventDefault();
        openNotebook(doc.id, token);
      });
      const save = h('button', { class: 'link-button muted', type: 'button' }, 'Download');
      save.addEventListener('click', () => void download(doc.id, token));
      return h(
        'tr',
        { 'data-testid': 'doc', 'data-doc-id': doc.id },
        h('td', {}, link),
        h('td', { class: 'muted', title: new Date(doc.created_at * 1000).toLocaleString() }, relativeTime(doc.created_at)),
        h('td', { class: 'doc-actions' }, save),
      );
    }),
  );
  table.hidden = docs.length === 0;
  byId('list-empty').hidden = docs.length > 0;
}

async function create(token: string, ipynb?: string, name?: string) {
  const response = await api('/api/docs', token, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: ipynb ?? '',
  });
  if (!response.ok) {
    showBanner(`Could not ${ipynb ? `import ${name}` : 'make a notebook'}: ${await refusal(response)}`);
    return;
  }
  const { id } = (await response.json()) as { id: string };
  openNotebook(id, token);
}

function askToken(text: string) {
  showBanner(text);
  byId('actions').hidden = true;
  byId('token-form').hidden = false;
  byId('token-entry').onsubmit = (e) => {
    e.preventDefault();
    const value = byId<HTMLInputElement>('token-input').value.trim();
    if (!value) return;
    const accepted = acceptToken(value);
    if (accepted === 'admin') location.reload();
    else if (!accepted) showBanner('That is not an inloop token: paste the part after ?token= of the URL `inloop serve` printed.');
  };
}

/**
 * A token given in the URL or pasted: an admin token (for every notebook) is remembered, to list
 * them; a share link's token opens its own notebook.
 */
function acceptToken(value: string): 'admin' | 'notebook' | null {
  const claims = tokenClaims(value);
  if (claims?.role === 'admin' && !claims.doc) {
    storageSet(ADMIN_TOKEN_KEY, value);
    return 'admin';
  }
  if (claims?.doc) {
    openNotebook(claims.doc, value, true);
    return 'notebook';
  }
  return null;
}

async function main() {
  if (urlToken !== null) {
    // Out of the address bar first, whatever the token is.
    history.replaceState(null, '', '/');
    if (acceptToken(urlToken) === 'notebook') return;
  }
  const token = adminToken(null);
  if (!token) {
    askToken(
      urlToken
        ? 'This token cannot list notebooks: the list needs the admin token that `inloop serve` printed.'
        : 'To list and make notebooks, open the URL that `inloop serve` printed (it ends in ?token=…), or paste its token here.',
    );
    document.body.dataset.ready = 'true';
    return;
  }
  byId('actions').hidden = false;
  byId('forget').hidden = false;
  byId('forget').onclick = () => {
    storageSet(ADMIN_TOKEN_KEY, null);
    location.href = '/';
  };
  document.querySelector<HTMLButtonElement>('[data-action="new"]')!.onclick = () => create(token);
  const input = byId<HTMLInputElement>('import');
  input.onchange = async () => {
    const file = input.files?.[0];
    input.value = '';
    if (file) await create(token, await file.text(), file.name);
  };
  const overlay = byId('drop');
  let depth = 0;
  document.addEventListener('dragenter', () => {
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', async (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const file = e.dataTransfer?.files?.[0];
    if (!file) return;
    if (!file.name.endsWith('.ipynb')) {
      toast('Drop an .ipynb file.', 'error');
      return;
    }
    await create(token, await file.text(), file.name);
  });
  await listDocs(token);
  document.body.dataset.ready = 'true';
}

void main();
