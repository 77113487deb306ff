// The list page, /?token=ADMIN: the notebooks on this relay, a new one, an import.

import { ADMIN_TOKEN_KEY, adminToken, byId, h, relativeTime, storageSet, toast, tokenClaims } from './common';

interface DocSummary {
  id: string;
  created_at: number;
}

const params = new URLSearchParams(location.search);
const urlToken = params.get('token');

function showBanner(text: string, error = true) {
  const banner = byId('banner');
  banner.textContent = text;
  banner.hidden = false;
  banner.classList.toggle('banner-error', error);
}

function notebookUrl(id: string, token: string): string {
  return `/n/${encodeURIComponent(id)}?token=${encodeURIComponent(token)}`;
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
    ...docs.map((doc) =>
      h(
        'tr',
        { 'data-testid': 'doc', 'data-doc-id': doc.id },
        h('td', {}, h('a', { href: notebookUrl(doc.id, token), class: 'doc-link' }, doc.id)),
        h('td', { class: 'muted', title: new Date(doc.created_at * 1000).toLocaleString() }, relativeTime(doc.created_at)),
        h('td', { class: 'doc-actions' }, h('a', { href: `/api/docs/${encodeURIComponent(doc.id)}/ipynb?token=${encodeURIComponent(token)}`, download: `${doc.id}.ipynb`, class: 'muted' }, 'Download')),
      ),
    ),
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
  location.href = notebookUrl(id, token);
}

function askToken(text: string) {
  showBanner(text);
  byId('actions').hidden = true;
  byId('token-form').hidden = false;
  byId('token-entry').onsubmit = (e) => {
    e.preventDefault();
    const value = byId<HTMLInputElement>('token-input').value.trim();
    if (!value) return;
    const url = new URL(location.href);
    url.searchParams.set('token', value);
    location.href = url.href;
  };
}

async function main() {
  const token = adminToken(urlToken);
  if (!token) {
    const claims = tokenClaims(urlToken);
    if (urlToken && claims?.doc) {
      // A share link's token: it opens its own notebook, not the list.
      location.replace(notebookUrl(claims.doc, urlToken));
      return;
    }
    askToken(
      urlToken
        ? 'This token cannot list notebooks: the list needs the admin token that `inloop serve` printed.'
        : 'To list and make notebooks, open the URL that `inloop serve` printed (it ends in ?token=…), or paste its token here.',
    );
    document.body.dataset.ready = 'true';
    return;
  }
  // Keep the token out of the address bar (it is remembered in this browser).
  if (urlToken) history.replaceState(null, '', '/');
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
