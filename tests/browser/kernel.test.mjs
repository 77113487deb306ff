// The Pyodide kernel (web/kernel/worker.js) in Debian Chromium, served by a real `inloop serve`
// from web/dist, with every request beyond localhost refused.
//
//   scripts/build-web.sh && cargo build -p inloop-cli && node --test tests/browser/kernel.test.mjs
//
// One page (web/dist/kernel/console.html, whose `window.kernel` speaks the worker protocol) is
// shared by the sub-tests, in order: execution counts depend on it.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inloopBin, launchChromium, repo, startRelay } from './harness.mjs';

const dist = path.join(repo, 'web/dist');
for (const file of ['kernel/worker.js', 'kernel/console.html', 'pyodide/pyodide.mjs', 'wheels/micropip.txt']) {
  if (!existsSync(path.join(dist, file))) {
    throw new Error(`web/dist/${file} is missing: run scripts/build-web.sh first`);
  }
}
if (!existsSync(inloopBin)) throw new Error(`${inloopBin} is missing: run cargo build -p inloop-cli first`);

let relay;
let browser;
let page;
const requests = [];

/** Runs `code` in the page's kernel; resolves with { reply, messages, outputs }. */
async function run(code) {
  const result = await page.evaluate((source) => window.kernel.run(source), code);
  result.outputs = result.messages.filter((m) => m.type === 'output').map((m) => m.output);
  for (const message of result.messages) assert.equal(message.id, result.id, 'every message carries its id');
  assert.equal(result.messages.at(-1).type, 'reply', 'reply comes last');
  assert.equal(result.messages[0].type, 'started', 'started comes first');
  return result;
}

const stdout = (outputs) =>
  outputs.filter((o) => o.output_type === 'stream' && o.name === 'stdout').map((o) => o.text).join('');

function assertOk(result) {
  const errors = result.outputs.filter((o) => o.output_type === 'error');
  assert.deepEqual(errors, [], 'no error output');
  assert.equal(result.reply.status, 'ok');
}

describe('Pyodide kernel in a Web Worker', { timeout: 150_000 }, () => {
  before(async () => {
    relay = await startRelay();
    browser = await launchChromium();
    browser.context.on('request', (request) => requests.push(request.url()));
    page = await browser.context.newPage();
    page.on('pageerror', (error) => console.error('[page error]', error));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') console.error(`[page ${message.type()}]`, message.text());
    });
    await page.goto(`${relay.url}/kernel/console.html`);
  });

  after(async () => {
    await browser?.close();
    await relay?.stop();
  });

  test('the worker loads Pyodide as the page opens and reports its kernel info', async () => {
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'COOP/COEP make the page crossOriginIsolated');
    const info = await page.evaluate(() => window.kernel.ready);
    const readyMs = await page.evaluate(() => window.kernel.readyAfterMs);
    console.log(`  kernel ready ${Math.round(readyMs)} ms after the worker was created (no execute sent)`);
    assert.equal(info.language, 'python');
    assert.equal(info.implementation, 'pyodide');
    assert.match(info.language_version, /^3\.\d+\.\d+$/);
    assert.equal(info.language_info.name, 'python');
    assert.equal(info.language_info.file_extension, '.py');
    assert.match(info.banner, /Pyodide/);
    const snapshotBuilt = existsSync(path.join(dist, 'pyodide/snapshot.bin'));
    assert.equal(info.startup.snapshot, snapshotBuilt, 'started from the memory snapshot of build-web.sh when built');
  });

  test('execution counts 1, 2, 3; the last expression is the result; `;` and assignments give none', async () => {
    const first = await run('1+1');
    assertOk(first);
    assert.equal(first.messages[0].executionCount, 1);
    assert.equal(first.reply.executionCount, 1);
    assert.deepEqual(first.outputs, [{ output_type: 'execute_result', execution_count: 1, data: { 'text/plain': '2' }, metadata: {} }]);

    const second = await run('x = 41');
    assertOk(second);
    assert.equal(second.reply.executionCount, 2);
    assert.deepEqual(second.outputs, []);

    const third = await run('x + 1;');
    assertOk(third);
    assert.equal(third.reply.executionCount, 3);
    assert.deepEqual(third.outputs, []);

    const pickled = await run('import pickle\nclass Point:\n    pass\ntype(pickle.loads(pickle.dumps(Point()))).__name__');
    assertOk(pickled);
    assert.deepEqual(pickled.outputs[0].data, { 'text/plain': "'Point'" }, 'cells run in __main__');

    const fourth = await run('"s", x + 1, _');
    assert.equal(fourth.reply.executionCount, 5);
    assert.deepEqual(fourth.outputs[0].data, { 'text/plain': "('s', 42, 'Point')" });
  });

  test('stdout and stderr stream while the cell runs, in order', async () => {
    const result = await run(
      'import sys, time\nfor i in range(5):\n    print(i)\n    time.sleep(0.2)\nprint("to stderr", file=sys.stderr)\nprint("end", end="")',
    );
    assertOk(result);
    assert.equal(stdout(result.outputs), '0\n1\n2\n3\n4\nend');
    const streams = result.messages.filter((m) => m.type === 'output');
    const lines = streams.filter((m) => m.output.name === 'stdout' && /^\d\n$/.test(m.output.text));
    assert.equal(lines.length, 5, 'each printed line went out on its own while the cell slept');
    const replyAt = result.reply.receivedAt;
    const gaps = lines.map((m) => Math.round(replyAt - m.receivedAt));
    console.log(`  stdout lines arrived ${gaps.join(', ')} ms before the reply`);
    assert.ok(replyAt - lines[0].receivedAt > 700, 'the first line arrived ~1 s before the reply');
    assert.ok(replyAt - lines[3].receivedAt > 250, 'the fourth line arrived well before the reply');
    const stderr = streams.filter((m) => m.output.name === 'stderr');
    assert.deepEqual(stderr.map((m) => m.output.text), ['to stderr\n']);
    // Order: the five lines, then stderr, then "end".
    const order = streams.map((m) => m.output.text);
    assert.deepEqual(order.slice(-2), ['to stderr\n', 'end']);
  });

  test('a tight print loop is coalesced into few messages', async () => {
    const result = await run('for i in range(20000):\n    print(i)');
    assertOk(result);
    const text = stdout(result.outputs);
    assert.equal(text.split('\n').length, 20001);
    const count = result.outputs.length;
    console.log(`  20000 printed lines came in ${count} stream messages`);
    assert.ok(count < 200, `${count} messages`);
  });

  test('rich display: _repr_html_, IPython.display classes, PNG as base64, JSON', async () => {
    const result = await run(`
class Table:
    def _repr_html_(self):
        return "<table><tr><td>42</td></tr></table>"
    def __repr__(self):
        return "Table()"

display(Table())
from IPython.display import display as ipy_display, HTML, Markdown, SVG, JSON, Image
ipy_display(HTML("<b>bold</b>"), Markdown("# title"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'))
display(JSON({"a": [1, 2]}))
display(Image(data=b"\\x89PNG\\r\\n\\x1a\\nfake"))
class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": "plain", "application/vnd.custom+json": {"k": 1}}
Bundle()
`);
    assertOk(result);
    const [table, bold, markdown, svg, json, image, bundle] = result.outputs;
    assert.equal(table.output_type, 'display_data');
    assert.deepEqual(table.data, { 'text/html': '<table><tr><td>42</td></tr></table>', 'text/plain': 'Table()' });
    assert.equal(bold.data['text/html'], '<b>bold</b>');
    assert.equal(markdown.data['text/markdown'], '# title');
    assert.match(svg.data['image/svg+xml'], /^<svg/);
    assert.deepEqual(json.data['application/json'], { a: [1, 2] });
    assert.equal(image.data['image/png'], Buffer.from('\x89PNG\r\n\x1a\nfake', 'latin1').toString('base64'));
    assert.equal(bundle.output_type, 'execute_result');
    assert.deepEqual(bundle.data, { 'text/plain': 'plain', 'application/vnd.custom+json': { k: 1 } });
  });

  test('display handles update in place; clear_output', async () => {
    const result = await run(`
h = display("first", display_id=True)
h.update("second")
named = display(HTML("<i>a</i>"), display_id="progress")
named.update(HTML("<i>b</i>"))
from IPython.display import clear_output
print("gone")
clear_output(wait=True)
h.display("again")
`);
    assertOk(result);
    const kinds = result.messages.slice(1, -1).map((m) => m.type === 'output' ? m.output.output_type : m.type);
    assert.deepEqual(kinds, ['display_data', 'update_display', 'display_data', 'update_display', 'stream', 'clear_output', 'display_data']);
    const [first, update, named, namedUpdate, , clear, again] = result.messages.slice(1, -1);
    const id = first.output.transient.display_id;
    assert.ok(id, 'display_id=True makes an id');
    assert.deepEqual(first.output.data, { 'text/plain': "'first'" });
    assert.equal(update.displayId, id);
    assert.deepEqual(update.data, { 'text/plain': "'second'" });
    assert.equal(named.output.transient.display_id, 'progress');
    assert.equal(namedUpdate.displayId, 'progress');
    assert.equal(namedUpdate.data['text/html'], '<i>b</i>');
    assert.equal(clear.wait, true);
    assert.equal(again.output.transient.display_id, id);
  });

  test('errors carry a traceback that points at the cell lines', async () => {
    const result = await run('def f(n):\n    return n / 0\n\nvalue = 3\nf(value)');
    assert.equal(result.reply.status, 'error');
    const errors = result.outputs.filter((o) => o.output_type === 'error');
    assert.equal(errors.length, 1);
    const [error] = errors;
    const count = result.reply.executionCount;
    assert.equal(error.ename, 'ZeroDivisionError');
    assert.equal(error.evalue, 'division by zero');
    const text = error.traceback.join('\n');
    console.log(`  traceback:\n${error.traceback.map((l) => `    | ${l}`).join('\n')}`);
    assert.match(text, new RegExp(`File "<cell-${count}>", line 5, in <module>\\n\\s+f\\(value\\)`));
    assert.match(text, new RegExp(`File "<cell-${count}>", line 2, in f\\n\\s+return n / 0`));
    assert.doesNotMatch(text, /inloop_kernel|_pyodide|pyodide\/|CodeRunner/, 'no kernel frames');
    assert.equal(error.traceback.at(-1), 'ZeroDivisionError: division by zero');

    const syntax = await run('x = 1\ny = (1,\n');
    assert.equal(syntax.reply.status, 'error');
    const [syntaxError] = syntax.outputs;
    assert.equal(syntaxError.ename, 'SyntaxError');
    const syntaxText = syntaxError.traceback.join('\n');
    assert.match(syntaxText, new RegExp(`File "<cell-${syntax.reply.executionCount}>", line 2`));
    assert.match(syntaxText, /y = \(1,/);
    assert.doesNotMatch(syntaxText, /inloop_kernel|_pyodide/);

    // Output printed before the error is kept, and the kernel goes on.
    const partial = await run('print("before")\nraise ValueError("boom")');
    assert.equal(stdout(partial.outputs), 'before\n');
    assert.equal(partial.outputs.at(-1).ename, 'ValueError');
    assert.equal(partial.outputs.at(-1).evalue, 'boom');
    assertOk(await run('value'));
  });

  test('top-level await: asyncio.sleep(0.1)', async () => {
    const result = await run('import asyncio, time\nstart = time.monotonic()\nawait asyncio.sleep(0.1)\nprint("slept")\nround(time.monotonic() - start, 1) >= 0.1');
    assertOk(result);
    assert.equal(stdout(result.outputs), 'slept\n');
    assert.deepEqual(result.outputs.at(-1).data, { 'text/plain': 'True' });
  });

  async function interruptAfter(code, waitMs) {
    const handle = await page.evaluateHandle((source) => {
      const state = { messages: [] };
      state.done = window.kernel.run(source, (m) => state.messages.push(m));
      return state;
    }, code);
    await page.waitForFunction((state) => state.messages.some((m) => m.type === 'started'), handle);
    await page.waitForTimeout(waitMs);
    const { latency, result } = await page.evaluate(async (state) => {
      const sentAt = window.kernel.interrupt();
      const result = await state.done;
      return { latency: result.reply.receivedAt - sentAt, result };
    }, handle);
    result.outputs = result.messages.filter((m) => m.type === 'output').map((m) => m.output);
    return { latency, result };
  }

  test('interrupt: `while True: pass` stops within 2 s with KeyboardInterrupt, and the kernel goes on', async () => {
    const { latency, result } = await interruptAfter('n = 0\nwhile True:\n    n += 1', 500);
    console.log(`  interrupt of a busy loop: reply ${Math.round(latency)} ms after the buffer was written`);
    assert.equal(result.reply.status, 'error');
    const error = result.outputs.at(-1);
    assert.equal(error.output_type, 'error');
    assert.equal(error.ename, 'KeyboardInterrupt');
    assert.match(error.traceback.join('\n'), /<cell-\d+>/);
    assert.ok(latency < 2000, `interrupt took ${latency} ms`);

    const after = await run('n > 0');
    assertOk(after);
    assert.deepEqual(after.outputs[0].data, { 'text/plain': 'True' }, 'the namespace survived the interrupt');
  });

  test('interrupt also stops time.sleep and a pending await', async () => {
    const sleeping = await interruptAfter('import time\ntime.sleep(30)', 300);
    console.log(`  interrupt of time.sleep(30): ${Math.round(sleeping.latency)} ms`);
    assert.equal(sleeping.result.outputs.at(-1).ename, 'KeyboardInterrupt');
    const sleepTrace = sleeping.result.outputs.at(-1).traceback.join('\n');
    assert.match(sleepTrace, /<cell-\d+>", line 2, in <module>\n\s+time\.sleep\(30\)/);
    assert.doesNotMatch(sleepTrace, /inloop_kernel/);
    assert.ok(sleeping.latency < 2000, `took ${sleeping.latency} ms`);

    // A cell that keeps stepping the event loop: the interrupt may land between two steps.
    const stepping = await interruptAfter('import asyncio\nwhile True:\n    sum(range(2000))\n    await asyncio.sleep(0)', 300);
    console.log(`  interrupt of an async loop: ${Math.round(stepping.latency)} ms`);
    assert.equal(stepping.result.outputs.at(-1).ename, 'KeyboardInterrupt');
    assert.ok(stepping.latency < 2000, `took ${stepping.latency} ms`);

    const waiting = await interruptAfter('import asyncio\nawait asyncio.sleep(30)', 300);
    console.log(`  interrupt of await asyncio.sleep(30): ${Math.round(waiting.latency)} ms`);
    assert.equal(waiting.result.outputs.at(-1).ename, 'KeyboardInterrupt');
    assert.match(waiting.result.outputs.at(-1).traceback.join('\n'), /<cell-\d+>/);
    assert.ok(waiting.latency < 2000, `took ${waiting.latency} ms`);
    assertOk(await run('1'));
  });

  test('%pip install and micropip.install of served wheels, offline', async () => {
    const pip = await run('%pip install tabulate\nfrom tabulate import tabulate\nprint(tabulate([[1, 2]], headers=["a", "b"], tablefmt="github"))');
    assertOk(pip);
    const text = stdout(pip.outputs);
    assert.match(text, /Successfully installed tabulate-0\.10\.0/);
    assert.match(text, /\| {3}a \| {3}b \|\n\|-+\|-+\|\n\| {3}1 \| {3}2 \|/);

    const micropip = await run('import micropip\nawait micropip.install("humanize")\nimport humanize\nhumanize.intcomma(1234567)');
    assertOk(micropip);
    assert.deepEqual(micropip.outputs.at(-1).data, { 'text/plain': "'1,234,567'" });

    const noInput = await run('input("name? ")');
    assert.equal(noInput.outputs[0].ename, 'StdinNotImplementedError');

    const served = requests.filter((url) => url.includes('/wheels/')).map((url) => new URL(url).pathname);
    assert.ok(served.includes('/wheels/tabulate-0.10.0-py3-none-any.whl'), served.join(' '));
    assert.ok(served.includes('/wheels/humanize-4.17.0-py3-none-any.whl'), served.join(' '));
  });

  test('restart: a new worker counts from 1 with a fresh namespace', async () => {
    const before = await run('x');
    assertOk(before);
    const draw = 'import random\nrandom.random()';
    const randomBefore = (await run(draw)).outputs[0].data['text/plain'];
    await page.evaluate(() => window.kernel.restart());
    const first = await run('sorted(name for name in globals() if not name.startswith("_"))');
    assertOk(first);
    assert.equal(first.reply.executionCount, 1);
    assert.deepEqual(first.outputs[0].data, { 'text/plain': "['In', 'Out']" }, 'nothing of the kernel in the namespace');
    const gone = await run('x');
    assert.equal(gone.reply.status, 'error');
    assert.equal(gone.outputs[0].ename, 'NameError');
    assert.equal(gone.reply.executionCount, 2);
    const randomAfter = (await run(draw)).outputs[0].data['text/plain'];
    assert.notEqual(randomAfter, randomBefore, 'a worker restored from the snapshot draws its own random seed');
  });

  test('without the snapshot (worker.js?snapshot=0) the kernel boots Python normally', async () => {
    const other = await browser.context.newPage();
    try {
      await other.goto(`${relay.url}/kernel/console.html?snapshot=0`);
      const info = await other.evaluate(() => window.kernel.ready);
      const readyMs = await other.evaluate(() => window.kernel.readyAfterMs);
      console.log(`  kernel ready ${Math.round(readyMs)} ms after the worker was created, without the snapshot`);
      assert.equal(info.startup.snapshot, false);
      const result = await other.evaluate(() => window.kernel.run('print("hi")\n1+1'));
      const outputs = result.messages.filter((m) => m.type === 'output').map((m) => m.output);
      assert.deepEqual(outputs.map((o) => o.text ?? o.data['text/plain']), ['hi\n', '2']);
    } finally {
      await other.close();
    }
  });

  test('no request left localhost', () => {
    const outside = requests.filter((url) => !['127.0.0.1', 'localhost'].includes(new URL(url).hostname));
    assert.deepEqual(outside, []);
    assert.ok(requests.some((url) => url.endsWith('/pyodide/pyodide.asm.wasm')), 'Pyodide came from the relay');
  });
});
