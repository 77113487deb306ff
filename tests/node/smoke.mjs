#!/usr/bin/env node
// Smoke test for tests/node/yjs_peer.mjs against the reference Node
// y-websocket server (@y/websocket-server), so the peer is known good before
// it is pointed at our relay.
//
//   node tests/node/smoke.mjs
//
// Starts the server's own bin on a free loopback port, spawns two peers on one
// room, has one insert a cell and both type into it concurrently, then checks
// that both converge to the same cells and state vector (and again after a
// delete), that each sees the other's awareness, that bad commands get error
// replies, that disconnect/connect resyncs and that quit and EOF exit 0. Then
// a bare `ws` server that refuses with close code 4403 checks the request URL
// (path + ?token=) and the close event. Prints one PASS/FAIL line on stdout;
// exits non-zero on failure. SMOKE_VERBOSE=1 echoes the peers' traffic to stderr.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as net from 'node:net'
import * as readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocketServer } from 'ws'

const PEER = fileURLToPath(new URL('./yjs_peer.mjs', import.meta.url))
// The package's `./server` export is its bin (src/server.js): it reads HOST and
// PORT from the environment and serves every room at ws://HOST:PORT/ROOM.
const SERVER = fileURLToPath(import.meta.resolve('@y/websocket-server/server'))
const TIMEOUT_MS = 10_000
const VERBOSE = process.env.SMOKE_VERBOSE === '1'

const children = []
const killChildren = () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL') }
process.on('exit', killChildren)

/** A free TCP port on 127.0.0.1 (the tiny race before the server binds it is fine here). */
const freePort = () => new Promise((resolve, reject) => {
  const srv = net.createServer()
  srv.once('error', reject)
  srv.listen(0, '127.0.0.1', () => {
    const { port } = srv.address()
    srv.close(() => resolve(port))
  })
})

const startServer = async (port) => {
  const child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  children.push(child)
  child.stderr.on('data', (d) => process.stderr.write(`[server] ${d}`))
  // The bin prints "running at '127.0.0.1' on port N" once it is listening.
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start')), TIMEOUT_MS)
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('running at')) { clearTimeout(timer); resolve() }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}`)) })
  })
  return child
}

/** One yjs_peer.mjs process: send commands, collect and await events. */
class Peer {
  constructor (name, server, room, extraArgs = []) {
    this.name = name
    this.events = []
    this.waiters = new Set()
    this.pending = [] // resolvers of request()s, oldest first
    this.child = spawn(process.execPath, [PEER, '--server', server, '--room', room, '--name', name, ...extraArgs], {
      stdio: ['pipe', 'pipe', 'pipe']
    })
    children.push(this.child)
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)))
    this.child.stderr.on('data', (d) => { if (VERBOSE) process.stderr.write(d) })
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      let ev
      try {
        ev = JSON.parse(line)
      } catch {
        // The protocol promises nothing but JSON lines on stdout.
        ev = { event: 'bad-line', line }
      }
      if (VERBOSE) process.stderr.write(`${name} <- ${line}\n`)
      this.events.push(ev)
      // The peer handles commands in order and answers each with exactly one
      // ok/error/state event, so replies match pending requests first-in first-out.
      if (['ok', 'error', 'state'].includes(ev.event) && this.pending.length > 0) this.pending.shift()(ev)
      for (const w of this.waiters) w()
    })
  }

  send (cmd) { this.sendLine(JSON.stringify(cmd)) }

  sendLine (line) {
    if (VERBOSE) process.stderr.write(`${this.name} -> ${line}\n`)
    this.child.stdin.write(line + '\n')
  }

  /** Resolve with the first event at index >= `from` that matches `pred`. */
  waitFor (pred, what, from = 0) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.events.length; i++) {
          if (pred(this.events[i])) { done(); resolve(this.events[i]); return true }
        }
        return false
      }
      const timer = setTimeout(() => { done(); reject(new Error(`${this.name}: timed out waiting for ${what}`)) }, TIMEOUT_MS)
      const done = () => { clearTimeout(timer); this.waiters.delete(check) }
      if (!check()) this.waiters.add(check)
    })
  }

  /** Send a command and resolve with its reply; requests may be pipelined. */
  request (cmd) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no reply to ${cmd.cmd}`)), TIMEOUT_MS)
      this.pending.push((ev) => { clearTimeout(timer); resolve(ev) })
      this.send(cmd)
    })
  }

  state () { return this.request({ cmd: 'state' }) }
}

const check = (cond, message) => { if (!cond) throw new Error(message) }

/** Poll both peers until they report the same cells and state vector; return both states. */
const converged = async (a, b) => {
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) {
    const [sa, sb] = await Promise.all([a.state(), b.state()])
    if (JSON.stringify(sa.cells) === JSON.stringify(sb.cells) && sa.state_vector === sb.state_vector) return [sa, sb]
    if (Date.now() > deadline) throw new Error(`no convergence:\nA ${JSON.stringify(sa.cells)}\nB ${JSON.stringify(sb.cells)}`)
    await sleep(50)
  }
}

const main = async () => {
  const port = await freePort()
  const server = await startServer(port)
  const url = `ws://127.0.0.1:${port}`
  const a = new Peer('A', url, 'smoke')
  const b = new Peer('B', url, 'smoke')

  await Promise.all([a, b].map((p) => p.waitFor((e) => e.event === 'synced', 'synced')))

  await a.request({ cmd: 'set_awareness', state: { user: { name: 'A' } } })
  await b.request({ cmd: 'set_awareness', state: { user: { name: 'B' } } })

  check((await a.request({ cmd: 'insert_cell', index: 0, id: 'cell-1', cell_type: 'code', source: 'x = 1\n' })).event === 'ok', 'insert_cell failed')

  // B types into the cell as soon as it has arrived.
  for (;;) {
    const s = await b.state()
    if (s.cells.length === 1) break
    await sleep(20)
  }

  // Concurrent typing: neither side waits for the other's edits, so the
  // updates cross on the wire and the CRDT must merge them.
  const typing = []
  for (let i = 0; i < 20; i++) {
    typing.push(a.request({ cmd: 'insert_text', cell: 0, at: 0, text: `a${i} ` }))
    typing.push(b.request({ cmd: 'insert_text', cell: 0, at: 1e9, text: ` b${i}` }))
  }
  for (const reply of await Promise.all(typing)) check(reply.event === 'ok', `edit failed: ${JSON.stringify(reply)}`)

  const [sa, sb] = await converged(a, b)
  check(sa.cells.length === 1 && sa.cells[0].id === 'cell-1' && sa.cells[0].cell_type === 'code', 'wrong cells')
  let source = sa.cells[0].source
  for (let i = 0; i < 20; i++) {
    check(source.includes(`a${i} `) && source.includes(` b${i}`), `edit ${i} missing from ${JSON.stringify(source)}`)
  }
  check(sa.client_id !== sb.client_id, 'peers share a client id')

  // A delete travels too: B removes its last insert (A only ever typed at the
  // front, so " b19" is the tail on both sides once converged).
  check(source.endsWith(' b19'), `unexpected tail ${JSON.stringify(source.slice(-8))}`)
  const deleted = await b.request({ cmd: 'delete_text', cell: 0, at: source.length - 4, len: 4 })
  check(deleted.event === 'ok', 'delete_text failed')
  const [afterDelete] = await converged(a, b)
  check(afterDelete.cells[0].source === source.slice(0, -4), 'delete did not reach A')
  source = afterDelete.cells[0].source

  // Each side sees the other's awareness state.
  const sees = (peer, other) => peer.waitFor(
    (e) => e.event === 'awareness' && e.states.some((s) => s.state?.user?.name === other),
    `awareness from ${other}`)
  await Promise.all([sees(a, 'B'), sees(b, 'A')])

  // Bad input gets error replies and the peer keeps going.
  check((await a.request({ cmd: 'insert_text', cell: 7, at: 0, text: 'x' })).event === 'error', 'missing cell not rejected')
  check((await a.request({ cmd: 'no_such_command' })).event === 'error', 'unknown command not rejected')
  const fromBad = a.events.length
  a.sendLine('{not json')
  await a.waitFor((e) => e.event === 'error' && /malformed/.test(e.message), 'malformed-JSON error', fromBad)

  // disconnect/connect round trip: B goes away, A's awareness drops B, B comes back and resyncs.
  const fromA = a.events.length
  const fromB = b.events.length
  await b.request({ cmd: 'disconnect' })
  await a.waitFor((e) => e.event === 'awareness' && !e.states.some((s) => s.state?.user?.name === 'B'), 'B leaving awareness', fromA)
  await b.request({ cmd: 'connect' })
  await b.waitFor((e) => e.event === 'synced', 'resync after connect', fromB)

  // quit via command for A, EOF on stdin for B: both exit 0.
  a.send({ cmd: 'quit' })
  b.child.stdin.end()
  const codes = await Promise.all([a.exited, b.exited])
  check(codes.every((c) => c === 0), `peer exit codes ${codes}`)
  check(![...a.events, ...b.events].some((e) => e.event === 'bad-line'), 'non-JSON line on a peer stdout')

  server.kill()

  // URL shape and server-side close: a bare ws server that refuses like our
  // relay would (4403 is in y-websocket's "don't reconnect" range 4400-4499).
  const refuser = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => refuser.once('listening', resolve))
  const urls = []
  refuser.on('connection', (ws, req) => { urls.push(req.url); ws.close(4403, 'forbidden') })
  const c = new Peer('C', `ws://127.0.0.1:${refuser.address().port}/api/docs`, 'doc-1/ws', ['--token', 't ok&'])
  const closed = await c.waitFor((e) => e.event === 'close', 'close from refusing server')
  check(closed.code === 4403 && closed.reason === 'forbidden' && closed.terminal === true && closed.local === false,
    `close event ${JSON.stringify(closed)}`)
  check(urls[0] === '/api/docs/doc-1/ws?token=t%20ok%26', `request url ${urls[0]}`)
  c.send({ cmd: 'quit' })
  check(await c.exited === 0, 'peer C did not exit 0')
  refuser.close()

  return `1 cell, ${source.length}-char source converged on both peers after 40 concurrent inserts and a delete; ` +
    'awareness both ways; error replies; disconnect/connect; clean exits; 4403 close + token URL'
}

const watchdog = setTimeout(() => { console.log('FAIL smoke: overall timeout'); process.exit(1) }, 60_000)
try {
  const summary = await main()
  clearTimeout(watchdog)
  console.log(`PASS smoke: ${summary}`)
  process.exit(0)
} catch (e) {
  clearTimeout(watchdog)
  console.log(`FAIL smoke: ${e.message}`)
  process.exit(1)
}
