// Shared pieces of the browser tests: a real `inloop serve` on a free port, and Debian's
// Chromium driven by playwright-core with no network beyond localhost.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The `inloop` binary the tests run: `INLOOP_BIN`, or the debug build. */
export const inloopBin = process.env.INLOOP_BIN ?? path.join(repo, 'target/debug/inloop');

/** Where tests write screenshots and traces (ignored by git). */
export const outDir = path.join(repo, 'tests/out');

/**
 * Starts `inloop serve` serving `web`, on a free loopback port (or `port`) with a fresh data
 * folder (or `data`, which the caller keeps: start a relay again on the same port and data to
 * test reconnection). Resolves once it listens, with its URL, its admin token and helpers to
 * call its HTTP API.
 *
 * With `runtime: true` the relay starts its local server runtime (a real ipykernel from the
 * repository's `.venv`) when a document queues `server` runs; otherwise it runs with
 * `--no-runtime`.
 */
export async function startRelay({ web = path.join(repo, 'web/dist'), flags = [], port = 0, data, runtime = false } = {}) {
  const ownData = !data;
  data ??= mkdtempSync(path.join(tmpdir(), 'inloop-browser-test-'));
  const runtimeFlags = runtime ? ['--runtime-kernel-prefix', path.join(repo, '.venv')] : ['--no-runtime'];
  const child = spawn(
    inloopBin,
    ['serve', '--addr', `127.0.0.1:${port}`, '--data', data, '--web', web, ...runtimeFlags, ...flags],
    { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = readline.createInterface({ input: child.stdout });
  let url;
  let adminToken;
  for await (const line of lines) {
    const listening = line.match(/listening on (http:\/\/[^\s]+)/);
    if (listening) url = listening[1];
    const admin = line.match(/[?&]token=([^\s&]+)/);
    if (admin) adminToken = admin[1];
    if (url && adminToken) break;
  }
  if (!url || !adminToken) throw new Error(`${inloopBin} serve exited before it listened`);
  lines.on('line', () => {}); // keep draining stdout

  async function api(method, route, body, token = adminToken) {
    const response = await fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${await response.text()}`);
    return response;
  }

  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    port: Number(new URL(url).port),
    adminToken,
    api,
    /** Creates a notebook (blank, or from `.ipynb` text); resolves to its id. */
    async createDoc(ipynb) {
      return (await (await api('POST', '/api/docs', ipynb ?? '')).json()).id;
    },
    /** A share token for `docId` with `role` (read, edit, execute, runtime, admin). */
    async mint(docId, role, name = role) {
      return (await (await api('POST', `/api/docs/${docId}/tokens`, { role, name })).json()).token;
    },
    data,
    /** SIGTERM: peers get 1001 ("going away"); every change is already stored. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      if (ownData) rmSync(data, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy on loopback in front of `targetPort`: a browser context pointed at the proxy's URL
 * can be cut off from the relay (`cut()`: the listener closes and every open connection, the
 * WebSocket included, is destroyed, so requests fail as they would offline) and let back on
 * (`restore()`, on the same port: the origin, its service worker and its IndexedDB stay the
 * same) while other contexts keep talking to the relay directly.
 */
export async function startProxy(targetPort, { port = 0 } = {}) {
  const sockets = new Set();
  let server;
  const listen = (onPort) =>
    new Promise((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(targetPort, '127.0.0.1');
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => {});
        }
        client.pipe(upstream);
        upstream.pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.once('error', reject);
      server.listen(onPort, '127.0.0.1', () => resolve(server.address().port));
    });
  const boundPort = await listen(port);
  return {
    port: boundPort,
    url: `http://127.0.0.1:${boundPort}`,
    wsUrl: `ws://127.0.0.1:${boundPort}`,
    online: true,
    /** Closes the listener and drops every connection. */
    async cut() {
      this.online = false;
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    /** Listens again on the same port. */
    async restore() {
      await listen(boundPort);
      this.online = true;
    },
    async stop() {
      if (this.online) await this.cut();
    },
  };
}

/** Polls `check` (async) every 50 ms until it returns something truthy, which it resolves to. */
export async function waitFor(what, check, timeout = 20_000) {
  const started = Date.now();
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Makes a share link of `role` (read, edit, execute) in the notebook page's share dialog and
 * returns it: the page puts links on the clipboard, never in the DOM, so the page's context needs
 * the clipboard permissions (`context.grantPermissions(['clipboard-read', 'clipboard-write'])`).
 */
export async function makeShareLink(page, role, name = '') {
  const menu = page.locator('#share-menu');
  if (!(await menu.isVisible())) await page.locator('[data-action="share"]').click();
  await page.locator('[data-testid="share-role"]').selectOption(role);
  await page.locator('[data-testid="share-name"]').fill(name);
  const before = await page.evaluate(() => navigator.clipboard.readText().catch(() => ''));
  await page.locator('[data-testid="share-make"]').click();
  return waitFor(`a ${role} link on the clipboard`, async () => {
    const text = await page.evaluate(() => navigator.clipboard.readText());
    return text !== before && /\/n\/[^?]+\?token=il1\./.test(text) && text;
  });
}

/** The flags Chromium needs on these machines: headless as root, no calls home. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Debian's Chromium with a fresh profile (`userDataDir`, or a temporary one). Every request
 * to a host other than localhost fails, so a test proves it needs no network.
 * `serviceWorkers: 'block'` keeps the page's service worker from registering.
 */
export async function launchChromium({ userDataDir, serviceWorkers = 'allow' } = {}) {
  const profile = userDataDir ?? mkdtempSync(path.join(tmpdir(), 'inloop-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: chromiumArgs,
    headless: true,
    serviceWorkers,
  });
  await context.route(
    (url) => !['127.0.0.1', 'localhost'].includes(url.hostname),
    (route) => route.abort('internetdisconnected'),
  );
  const close = async () => {
    await context.close();
    if (!userDataDir) rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
