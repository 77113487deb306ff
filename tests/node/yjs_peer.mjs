#!/usr/bin/env node
// A stock-Yjs test peer: npm `yjs` + `y-websocket`'s WebsocketProvider, driven
// over stdin/stdout so that tests in any language can spawn it and prove that
// an unmodified Yjs client can join a y-websocket server (our relay, or the
// reference Node server) and edit a jupyter_ydoc 4.x notebook.
//
// Usage:
//   node tests/node/yjs_peer.mjs --server ws://127.0.0.1:PORT/api/docs \
//       --room DOC_ID/ws [--token T] [--name NAME]
// The provider connects to `${server}/${room}` plus `?token=T` when given.
//
// Protocol: newline-delimited JSON, one object per line, both ways. Nothing
// but these events is ever written to stdout; diagnostics go to stderr.
//
// Events (stdout):
//   {"event":"status","status":"connecting"|"connected"|"disconnected"}
//   {"event":"synced"}                 each time the provider reports sync=true
//   {"event":"close","code":N|null,"reason":"...","local":B,"terminal":B}
//        a connection closed; code null + local true when we closed it
//        ourselves; terminal true when the provider will not reconnect
//   {"event":"awareness","states":[{"client":N,"state":{...}},...]}
//        full awareness map, whenever it changes (remote or local)
// Commands (stdin), each answered by exactly one ok/error/state event, in order:
//   {"cmd":"insert_cell","index":I,"id":"..","cell_type":"code","source":".."}
//        index defaults to the end, cell_type to "code", source to ""
//   {"cmd":"insert_text","cell":I,"at":N,"text":".."}   N in UTF-16 units, clamped
//   {"cmd":"delete_text","cell":I,"at":N,"len":L}       both clamped
//   {"cmd":"move_cell","from":I,"to":J}   the way Yjs clients (JupyterLab) move a cell: one
//        transaction deletes cells[I] and inserts a copy (a new Y.Map, same id) so that it ends
//        up at J (0 to the cell count minus one)
//   {"cmd":"delete_cell","cell":I}
//   {"cmd":"set_awareness","state":{...}|null}
//   {"cmd":"state"} -> {"event":"state","cells":[{"id","cell_type","source"}],
//        "meta":{..},"client_id":N,"state_vector":B64,"update":B64}
//   {"cmd":"disconnect"} / {"cmd":"connect"}
//   {"cmd":"quit"}     replies ok, destroys the provider, exits 0 (EOF: same, no reply)
//   ok:    {"event":"ok","cmd":".."}
//   error: {"event":"error","cmd":"..","message":".."} ("cmd" absent when the
//          line was not JSON or had no "cmd"); the peer keeps going

import { parseArgs } from 'node:util'
import * as readline from 'node:readline'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

// stdout is the event channel. Route stray console output from any library to
// stderr so that a log line can never corrupt the JSON stream.
console.log = console.info = console.debug = (...args) => console.error(...args)

const { values: args } = parseArgs({
  options: {
    server: { type: 'string' },
    room: { type: 'string' },
    token: { type: 'string' },
    name: { type: 'string', default: 'yjs_peer' }
  }
})
if (!args.server || !args.room) {
  process.stderr.write('usage: yjs_peer.mjs --server WS_URL --room ROOM [--token T] [--name NAME]\n')
  process.exit(2)
}
const name = args.name

const log = (...parts) => process.stderr.write(`[${name}] ${parts.join(' ')}\n`)

// process.stdout is synchronous for files and pipes on Linux, so each event is
// on its way to the reader before the next line of this program runs.
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const ydoc = new Y.Doc()
const cells = ydoc.getArray('cells')
const meta = ydoc.getMap('meta')

// `connect: false` so the listeners below are attached before the first
// 'status: connecting', which the provider would otherwise emit inside its
// constructor.
const provider = new WebsocketProvider(args.server, args.room, ydoc, {
  connect: false,
  WebSocketPolyfill: WebSocket, // Node 20 has no global WebSocket
  params: args.token ? { token: args.token } : {},
  disableBc: true // BroadcastChannel would sync peers in-process, bypassing the server
})
log('url', provider.url)

provider.on('status', ({ status }) => emit({ event: 'status', status }))
provider.on('sync', (isSynced) => { if (isSynced) emit({ event: 'synced' }) })
provider.on('connection-close', (ev) => {
  // `ev` is null when the close was ours (disconnect(), or the provider's
  // no-message watchdog). `terminal` tells whether the provider gives up
  // reconnecting (by default: codes 4400-4499, see y-websocket's shouldReconnect).
  if (ev == null) {
    emit({ event: 'close', code: null, reason: '', local: true, terminal: false })
  } else {
    emit({
      event: 'close',
      code: ev.code,
      reason: String(ev.reason ?? ''),
      local: false,
      terminal: !provider.shouldReconnect(ev, provider)
    })
  }
})
provider.on('connection-error', (ev) => log('connection-error', ev?.message ?? ev?.error?.message ?? String(ev)))

const awarenessStates = () =>
  Array.from(provider.awareness.getStates(), ([client, state]) => ({ client, state }))
// 'change' (not 'update') fires only when some state was added, removed or
// actually changed, not on the 15 s keep-alive renewals.
provider.awareness.on('change', () => emit({ event: 'awareness', states: awarenessStates() }))

const b64 = (u8) => Buffer.from(u8).toString('base64')
const clamp = (n, lo, hi) => Math.min(Math.max(n, lo), hi)

class CommandError extends Error {}

const requireInt = (cmd, key) => {
  const v = cmd[key]
  if (!Number.isInteger(v) || v < 0) throw new CommandError(`"${key}" must be a non-negative integer`)
  return v
}

const requireString = (cmd, key) => {
  const v = cmd[key]
  if (typeof v !== 'string') throw new CommandError(`"${key}" must be a string`)
  return v
}

/** The Y.Text source of cells[i], or a CommandError. */
const cellSource = (i) => {
  if (i >= cells.length) throw new CommandError(`no cell ${i} (document has ${cells.length} cells)`)
  const cell = cells.get(i)
  const source = cell instanceof Y.Map ? cell.get('source') : undefined
  if (!(source instanceof Y.Text)) throw new CommandError(`cell ${i} has no Y.Text source`)
  return source
}

/** A cell map in jupyter_ydoc 4.x shape. */
const makeCell = (id, cellType, source) => {
  const cell = new Y.Map()
  cell.set('id', id)
  cell.set('cell_type', cellType)
  cell.set('source', new Y.Text(source))
  cell.set('metadata', new Y.Map())
  if (cellType === 'code') {
    cell.set('outputs', new Y.Array())
    cell.set('execution_count', null)
    cell.set('execution_state', 'idle')
  }
  return cell
}

const sourceString = (cell) => {
  const source = cell instanceof Y.Map ? cell.get('source') : undefined
  return source instanceof Y.Text ? source.toString() : (typeof source === 'string' ? source : null)
}

let quitting = false

const quit = () => {
  if (quitting) return
  quitting = true
  const ws = provider.ws
  // destroy() sends our awareness removal, then closes the socket.
  provider.destroy()
  // Give the close handshake a moment so the server sees a clean close, but
  // never hang on it.
  const done = () => process.exit(0)
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    ws.once('close', done)
    setTimeout(done, 1000).unref()
  } else {
    done()
  }
}

const commands = {
  insert_cell (cmd) {
    const index = cmd.index === undefined ? cells.length : requireInt(cmd, 'index')
    if (index > cells.length) throw new CommandError(`index ${index} past the end (document has ${cells.length} cells)`)
    const id = requireString(cmd, 'id')
    const cellType = cmd.cell_type ?? 'code'
    if (!['code', 'markdown', 'raw'].includes(cellType)) throw new CommandError(`bad cell_type ${JSON.stringify(cellType)}`)
    const source = cmd.source === undefined ? '' : requireString(cmd, 'source')
    // One transaction, so remote peers see the whole cell arrive as one update.
    ydoc.transact(() => cells.insert(index, [makeCell(id, cellType, source)]))
    emit({ event: 'ok', cmd: 'insert_cell' })
  },
  insert_text (cmd) {
    const source = cellSource(requireInt(cmd, 'cell'))
    const text = requireString(cmd, 'text')
    // Offsets are UTF-16 code units, which is what Y.Text counts in JS.
    const at = clamp(requireInt(cmd, 'at'), 0, source.length)
    source.insert(at, text)
    emit({ event: 'ok', cmd: 'insert_text' })
  },
  delete_text (cmd) {
    const source = cellSource(requireInt(cmd, 'cell'))
    const at = clamp(requireInt(cmd, 'at'), 0, source.length)
    const len = clamp(requireInt(cmd, 'len'), 0, source.length - at)
    if (len > 0) source.delete(at, len)
    emit({ event: 'ok', cmd: 'delete_text' })
  },
  move_cell (cmd) {
    const from = requireInt(cmd, 'from')
    const to = requireInt(cmd, 'to')
    if (from >= cells.length || to >= cells.length) throw new CommandError(`no cell ${Math.max(from, to)} (document has ${cells.length} cells)`)
    // Yjs has no move: a deep copy of the map (its Y.Text and all) replaces the original.
    ydoc.transact(() => {
      const copy = cells.get(from).clone()
      cells.delete(from, 1)
      cells.insert(to, [copy])
    })
    emit({ event: 'ok', cmd: 'move_cell' })
  },
  delete_cell (cmd) {
    const index = requireInt(cmd, 'cell')
    if (index >= cells.length) throw new CommandError(`no cell ${index} (document has ${cells.length} cells)`)
    cells.delete(index, 1)
    emit({ event: 'ok', cmd: 'delete_cell' })
  },
  set_awareness (cmd) {
    if (cmd.state !== null && (typeof cmd.state !== 'object' || Array.isArray(cmd.state))) {
      throw new CommandError('"state" must be an object or null')
    }
    provider.awareness.setLocalState(cmd.state)
    emit({ event: 'ok', cmd: 'set_awareness' })
  },
  state () {
    emit({
      event: 'state',
      cells: cells.toArray().map((cell) => ({
        id: cell instanceof Y.Map ? cell.get('id') : null,
        cell_type: cell instanceof Y.Map ? cell.get('cell_type') : null,
        source: sourceString(cell)
      })),
      meta: meta.toJSON(),
      client_id: ydoc.clientID,
      state_vector: b64(Y.encodeStateVector(ydoc)),
      update: b64(Y.encodeStateAsUpdate(ydoc))
    })
  },
  disconnect () {
    provider.disconnect()
    emit({ event: 'ok', cmd: 'disconnect' })
  },
  connect () {
    provider.connect()
    emit({ event: 'ok', cmd: 'connect' })
  },
  quit () {
    emit({ event: 'ok', cmd: 'quit' })
    quit()
  }
}

const handleLine = (line) => {
  if (line.trim() === '') return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (e) {
    emit({ event: 'error', message: `malformed JSON: ${e.message}` })
    return
  }
  if (cmd === null || typeof cmd !== 'object' || typeof cmd.cmd !== 'string') {
    emit({ event: 'error', message: 'expected an object with a string "cmd"' })
    return
  }
  if (!Object.hasOwn(commands, cmd.cmd)) {
    emit({ event: 'error', cmd: cmd.cmd, message: `unknown command ${JSON.stringify(cmd.cmd)}` })
    return
  }
  try {
    commands[cmd.cmd](cmd)
  } catch (e) {
    if (!(e instanceof CommandError)) log('command failed:', e.stack)
    emit({ event: 'error', cmd: cmd.cmd, message: e.message })
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => { if (!quitting) handleLine(line) })
rl.on('close', quit) // EOF on stdin: leave like `quit`

// A reader that went away (EPIPE) means nobody is listening: leave quietly.
process.stdout.on('error', () => process.exit(0))

provider.connect()
