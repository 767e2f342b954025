// The whiteboard channel: a y-websocket–compatible WebSocket endpoint on the
// HTTP port, `/whiteboard/{GroupId}?sdkappid=…&userid=…&usersig=…`, so that the
// stock `y-websocket` provider (or any client speaking y-protocols' sync and
// awareness messages) draws on the board of that app and GroupId.
//
// Every update is checked against the document model (model.ts) before it is
// applied; a refused one closes its connection with the reason (code 4400)
// and is never applied, stored or relayed. Accepted updates are relayed at
// once and written to the store with their server time in small batches; on
// PostgreSQL other processes are told (NOTIFY) and relay them to their own
// clients. A board is loaded from the store when its first client comes and
// dropped from memory when its last one leaves.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { WebSocket, WebSocketServer } from 'ws'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import type { Clock } from '../clock.ts'
import type { Authorization } from '../media/contracts.ts'
import { CheckedDoc, LIMITS, ModelError } from './model.ts'
import { BOARD_CHANNEL, type BoardKey, type BoardStore } from './store.ts'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_QUERY_AWARENESS = 3
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2

/** Close codes (4000–4999 are the application's). */
export const CLOSE = { refused: 4401, badUpdate: 4400, full: 1013, tooSlow: 4408 } as const

export const PATH_PREFIX = '/whiteboard/'
const MAX_AWARENESS_BYTES = 64 * 1024
const MAX_AWARENESS_CLIENTS = 2000
/** A client this far behind on what it is sent is dropped rather than holding memory for it. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024
const PING_MS = 30_000
/** A user whose update was refused is kept off that board this long. */
const REFUSED_COOLDOWN_MS = 30_000
/** Messages held while a client's UserSig is checked and its board loads. */
const MAX_EARLY_MESSAGES = 64
/** A board gets a snapshot after this many updates accepted by one process, at most one a minute. */
const SNAPSHOT_EVERY = 2000
const SNAPSHOT_MIN_INTERVAL_MS = 60_000
/** A snapshot covers updates at least this old: every write older than that has committed. */
const SNAPSHOT_SETTLE_MS = 10_000

export interface BoardsOptions {
  store: BoardStore
  clock: Clock
  authorize(sdkAppId: number, userId: string, userSig: string): Promise<Authorization>
  /** An accepted update: room activity for the tasks recording this board (called at most once a second a board). */
  activity(key: BoardKey): void
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string): void
  maxClientsPerBoard?: number
  /** Accepted updates are written at least this often. */
  flushMs?: number
}

interface Connection {
  socket: WebSocket
  board: Board
  userId: string
  /** Awareness client ids this connection has announced. */
  clients: Set<number>
  alive: boolean
}

interface Board {
  key: BoardKey
  id: string
  checked: CheckedDoc
  awareness: awarenessProtocol.Awareness
  connections: Set<Connection>
  /** Bytes of the stored updates (and snapshot) it is made of. */
  bytes: number
  lastActivityMs: number
  /** Updates accepted here since this process last wrote a snapshot of it. */
  sinceSnapshot: number
  /** When this process last started a snapshot of it (0: never). */
  snapshotAtMs: number
}

const idOf = (key: BoardKey) => `${key.sdkAppId}/${key.groupId}`

function message(write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}

/** The close reason of a WebSocket is at most 123 bytes. */
function reasonText(text: string): string {
  const buf = Buffer.from(text, 'utf8')
  return buf.length <= 123
    ? text
    : `${buf
        .subarray(0, 120)
        .toString('utf8')
        .replace(/\uFFFD$/, '')}…`
}

/** Parses `/whiteboard/{GroupId}?sdkappid=…&userid=…&usersig=…`; undefined when it is not that. */
export function parseBoardUrl(
  url: string | undefined,
):
  | { groupId: string; sdkAppId: number; userId: string; userSig: string }
  | { error: string }
  | undefined {
  if (url === undefined || !url.startsWith(PATH_PREFIX)) return undefined
  let parsed: URL
  try {
    parsed = new URL(url, 'http://board')
  } catch {
    return { error: 'malformed URL' }
  }
  let groupId: string
  try {
    groupId = decodeURIComponent(parsed.pathname.slice(PATH_PREFIX.length))
  } catch {
    return { error: 'malformed GroupId' }
  }
  if (groupId.length === 0 || groupId.length > LIMITS.idChars || groupId.includes('/'))
    return { error: 'GroupId must be 1 to 256 characters without "/"' }
  const q = parsed.searchParams
  const sdkAppId = Number(q.get('sdkappid'))
  const userId = q.get('userid') ?? ''
  const userSig = q.get('usersig') ?? ''
  if (!Number.isSafeInteger(sdkAppId) || sdkAppId <= 0)
    return { error: 'sdkappid is missing or not a number' }
  if (userId.length === 0 || userId.length > LIMITS.idChars) return { error: 'userid is missing' }
  if (userSig.length === 0 || userSig.length > 4096) return { error: 'usersig is missing' }
  return { groupId, sdkAppId, userId, userSig }
}

export class Boards {
  readonly #o: BoardsOptions
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.updateBytes + 64,
    perMessageDeflate: false,
  })
  readonly #boards = new Map<string, Board>()
  readonly #loading = new Map<string, Promise<Board>>()
  /** Updates relayed while their board loads, applied when it has. */
  readonly #waiting = new Map<string, Uint8Array[]>()
  /** Users refused on a board, and until when their reconnections are refused unread. */
  readonly #cooling = new Map<string, number>()
  #pending: (BoardKey & { atMs: number; update: Uint8Array })[] = []
  #flushing: Promise<void> = Promise.resolve()
  #flushTimer: NodeJS.Timeout | undefined
  #lastSeq = 0
  #stopListening: (() => Promise<void>) | undefined
  #poll: NodeJS.Timeout | undefined
  #ping: NodeJS.Timeout | undefined
  #relaying: Promise<void> | undefined
  #relayAgain = false
  #closed = false

  constructor(options: BoardsOptions) {
    this.#o = options
  }

  /** Boards in memory and their clients, for metrics. */
  get stats(): { boards: number; clients: number } {
    let clients = 0
    for (const b of this.#boards.values()) clients += b.connections.size
    return { boards: this.#boards.size, clients }
  }

  async start(): Promise<void> {
    this.#lastSeq = await this.#o.store.lastSeq()
    const db = this.#o.store.db
    if (db.dialect === 'postgres') {
      this.#stopListening = await db.listen(BOARD_CHANNEL, () => this.#relayOthers())
      // NOTIFY can be missed (a reconnect): look now and then anyway.
      this.#poll = setInterval(() => this.#relayOthers(), 1000)
    }
    this.#ping = setInterval(() => this.#heartbeat(), PING_MS)
  }

  /** Takes an HTTP upgrade if it is for a board; returns false when it is not. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const target = parseBoardUrl(request.url)
    if (target === undefined) return false
    if (this.#closed) {
      socket.destroy()
      return true
    }
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      void this.#connected(ws, target).catch((error) => {
        this.#o.log('error', `whiteboard connection failed: ${(error as Error).message}`)
        ws.terminate()
      })
    })
    return true
  }

  async #connected(
    ws: WebSocket,
    target: NonNullable<ReturnType<typeof parseBoardUrl>>,
  ): Promise<void> {
    // Messages that arrive while the UserSig is checked and the board loads wait.
    const early: Buffer[] = []
    const hold = (data: Buffer) => {
      if (early.length >= MAX_EARLY_MESSAGES) ws.terminate()
      else early.push(data)
    }
    ws.on('message', hold)
    ws.on('error', () => ws.terminate())
    if ('error' in target) return this.#refuse(ws, target.error)
    const auth = await this.#o.authorize(target.sdkAppId, target.userId, target.userSig)
    if (!auth.ok) return this.#refuse(ws, `refused: ${auth.reason}`)
    const key = { sdkAppId: target.sdkAppId, groupId: target.groupId }
    const coolKey = `${idOf(key)}\n${target.userId}`
    const until = this.#cooling.get(coolKey)
    if (until !== undefined) {
      if (until > this.#o.clock.now()) {
        ws.close(CLOSE.badUpdate, 'an update of yours was refused: try again later')
        return
      }
      this.#cooling.delete(coolKey)
    }
    const board = await this.#open(key)
    if (ws.readyState !== WebSocket.OPEN) return this.#maybeDrop(board)
    if (board.connections.size >= (this.#o.maxClientsPerBoard ?? 1000)) {
      ws.close(CLOSE.full, 'this board has as many clients as it takes')
      return this.#maybeDrop(board)
    }
    const conn: Connection = {
      socket: ws,
      board,
      userId: target.userId,
      clients: new Set(),
      alive: true,
    }
    board.connections.add(conn)
    ws.off('message', hold)
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#message(conn, data, isBinary))
    ws.on('pong', () => {
      conn.alive = true
    })
    ws.on('close', () => this.#closedConnection(conn))
    // The server's state, so the client sends what the server lacks, and who else is here.
    this.#send(
      conn,
      message((e) => {
        encoding.writeVarUint(e, MESSAGE_SYNC)
        encoding.writeVarUint(e, SYNC_STEP1)
        encoding.writeVarUint8Array(e, Y.encodeStateVector(board.checked.doc))
      }),
    )
    if (board.awareness.getStates().size > 0) {
      this.#send(conn, awarenessMessage(board.awareness, [...board.awareness.getStates().keys()]))
    }
    for (const data of early) this.#message(conn, data, true)
  }

  #refuse(ws: WebSocket, reason: string): void {
    this.#o.log('info', `whiteboard client refused: ${reason}`)
    if (ws.readyState !== WebSocket.OPEN) return
    ws.send(
      message((e) => {
        encoding.writeVarUint(e, MESSAGE_AUTH)
        encoding.writeVarUint(e, 0) // permission denied
        encoding.writeVarString(e, reason)
      }),
    )
    ws.close(CLOSE.refused, reasonText(reason))
  }

  async #open(key: BoardKey): Promise<Board> {
    const id = idOf(key)
    const known = this.#boards.get(id)
    if (known) return known
    let loading = this.#loading.get(id)
    if (loading === undefined) {
      this.#waiting.set(id, [])
      loading = this.#load(key).finally(() => {
        this.#loading.delete(id)
        this.#waiting.delete(id)
      })
      this.#loading.set(id, loading)
    }
    return loading
  }

  async #load(key: BoardKey): Promise<Board> {
    const stored = await this.#o.store.load(key)
    const checked = new CheckedDoc()
    if (stored.snapshot) checked.load(stored.snapshot)
    for (const u of stored.updates) checked.load(u.update)
    // Writes of this process still on their way to the store.
    for (const p of this.#pending) {
      if (p.sdkAppId === key.sdkAppId && p.groupId === key.groupId) checked.load(p.update)
    }
    for (const u of this.#waiting.get(idOf(key)) ?? []) checked.load(u)
    const awareness = new awarenessProtocol.Awareness(checked.doc)
    awareness.setLocalState(null)
    const board: Board = {
      key,
      id: idOf(key),
      checked,
      awareness,
      connections: new Set(),
      bytes: stored.bytes,
      lastActivityMs: 0,
      sinceSnapshot: stored.updates.length,
      snapshotAtMs: 0,
    }
    checked.doc.on('update', (update: Uint8Array, origin: unknown) => {
      const data = message((e) => {
        encoding.writeVarUint(e, MESSAGE_SYNC)
        encoding.writeVarUint(e, SYNC_UPDATE)
        encoding.writeVarUint8Array(e, update)
      })
      for (const c of board.connections) if (c !== origin) this.#send(c, data)
    })
    awareness.on(
      'update',
      (
        { added, updated, removed }: Record<'added' | 'updated' | 'removed', number[]>,
        origin: unknown,
      ) => {
        const changed = [...added, ...updated, ...removed]
        if (origin && typeof origin === 'object' && 'clients' in origin) {
          const conn = origin as Connection
          for (const id of [...added, ...updated]) conn.clients.add(id)
          for (const id of removed) conn.clients.delete(id)
        }
        const data = awarenessMessage(awareness, changed)
        for (const c of board.connections) this.#send(c, data)
      },
    )
    this.#boards.set(board.id, board)
    return board
  }

  /** Applies every stored row of a board again (idempotent), for what a relay missed. */
  async #reload(board: Board): Promise<void> {
    const stored = await this.#o.store.load(board.key)
    if (stored.snapshot) board.checked.load(stored.snapshot, 'remote')
    for (const u of stored.updates) board.checked.load(u.update, 'remote')
    if (board.checked.incomplete) {
      this.#o.log('warn', `whiteboard ${board.id}: holds changes whose base is not in the store`)
    }
  }

  #message(conn: Connection, data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      this.#badMessage(conn, 'messages are binary')
      return
    }
    try {
      const decoder = decoding.createDecoder(
        new Uint8Array(data.buffer, data.byteOffset, data.length),
      )
      const type = decoding.readVarUint(decoder)
      if (type === MESSAGE_SYNC) {
        const step = decoding.readVarUint(decoder)
        if (step === SYNC_STEP1) {
          const sv = decoding.readVarUint8Array(decoder)
          const doc = conn.board.checked.doc
          this.#send(
            conn,
            message((e) => {
              encoding.writeVarUint(e, MESSAGE_SYNC)
              encoding.writeVarUint(e, SYNC_STEP2)
              encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(doc, sv))
            }),
          )
        } else if (step === SYNC_STEP2 || step === SYNC_UPDATE) {
          this.#update(conn, decoding.readVarUint8Array(decoder))
        } else this.#badMessage(conn, `unknown sync message ${step}`)
      } else if (type === MESSAGE_AWARENESS) {
        const update = decoding.readVarUint8Array(decoder)
        if (update.length > MAX_AWARENESS_BYTES) {
          this.#badMessage(conn, 'awareness state too large')
          return
        }
        awarenessProtocol.applyAwarenessUpdate(conn.board.awareness, update, conn)
        if (conn.board.awareness.getStates().size > MAX_AWARENESS_CLIENTS)
          this.#badMessage(conn, 'too many awareness clients')
      } else if (type === MESSAGE_QUERY_AWARENESS) {
        const a = conn.board.awareness
        this.#send(conn, awarenessMessage(a, [...a.getStates().keys()]))
      } else this.#badMessage(conn, `unknown message type ${type}`)
    } catch (error) {
      this.#badMessage(conn, `malformed message: ${(error as Error).message}`)
    }
  }

  #update(conn: Connection, update: Uint8Array): void {
    const board = conn.board
    if (board.bytes + update.length > LIMITS.boardBytes) {
      this.#badMessage(conn, 'the board is full (20 MB of updates)')
      return
    }
    let changed: boolean
    try {
      changed = board.checked.apply(update, conn)
    } catch (error) {
      if (error instanceof ModelError) {
        // Checking it cost a rebuild of the shadow; a client that sends it
        // again on every reconnection is kept out for a while instead.
        this.#cooling.set(`${board.id}\n${conn.userId}`, this.#o.clock.now() + REFUSED_COOLDOWN_MS)
        this.#badMessage(conn, `update refused: ${error.message}`)
        return
      }
      throw error
    }
    if (!changed) return
    board.bytes += update.length
    const now = this.#o.clock.now()
    if (
      ++board.sinceSnapshot >= SNAPSHOT_EVERY &&
      now - board.snapshotAtMs >= SNAPSHOT_MIN_INTERVAL_MS
    ) {
      board.sinceSnapshot = 0
      board.snapshotAtMs = now
      void this.#snapshot(board.key)
    }
    this.#pending.push({ ...board.key, atMs: now, update })
    this.#scheduleFlush()
    if (now - board.lastActivityMs >= 1000) {
      board.lastActivityMs = now
      this.#o.activity(board.key)
    }
  }

  #badMessage(conn: Connection, reason: string): void {
    this.#o.log('warn', `whiteboard ${conn.board.id}, user ${conn.userId}: ${reason}`)
    conn.socket.close(CLOSE.badUpdate, reasonText(reason))
  }

  #send(conn: Connection, data: Uint8Array): void {
    const ws = conn.socket
    if (ws.readyState !== WebSocket.OPEN) return
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      ws.close(CLOSE.tooSlow, 'too far behind')
      return
    }
    ws.send(data)
  }

  #closedConnection(conn: Connection): void {
    const board = conn.board
    board.connections.delete(conn)
    if (conn.clients.size > 0) {
      awarenessProtocol.removeAwarenessStates(board.awareness, [...conn.clients], null)
    }
    this.#maybeDrop(board)
  }

  /** A board without clients leaves memory once its updates are written. */
  #maybeDrop(board: Board): void {
    if (board.connections.size > 0) return
    void this.flush().then(() => {
      if (board.connections.size > 0 || this.#boards.get(board.id) !== board) return
      this.#boards.delete(board.id)
      board.awareness.destroy()
      board.checked.doc.destroy()
    })
  }

  /** Writes a snapshot of a board from the store, once its latest updates have settled. */
  async #snapshot(key: BoardKey): Promise<void> {
    try {
      await this.flush()
      await new Promise((r) => setTimeout(r, SNAPSHOT_SETTLE_MS).unref())
      if (this.#closed) return
      await this.#o.store.snapshot(key, this.#o.clock.now() - SNAPSHOT_SETTLE_MS, mergeUpdates)
    } catch (error) {
      this.#o.log('warn', `whiteboard ${idOf(key)}: snapshot failed: ${(error as Error).message}`)
    }
  }

  #scheduleFlush(): void {
    if (this.#pending.length >= 200) {
      void this.flush()
      return
    }
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined
      void this.flush()
    }, this.#o.flushMs ?? 20)
  }

  /** Writes the accepted updates not written yet. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      while (this.#pending.length > 0) {
        const rows = this.#pending.slice(0, 200)
        try {
          await this.#o.store.append(rows)
          this.#pending.splice(0, rows.length)
        } catch (error) {
          this.#o.log(
            'error',
            `whiteboard updates could not be written, retrying: ${(error as Error).message}`,
          )
          await new Promise((r) => setTimeout(r, 500))
          if (this.#closed) return
        }
      }
    })
    return this.#flushing
  }

  /** Relays what other processes accepted to this process's clients. */
  #relayOthers(): void {
    if (this.#relaying) {
      this.#relayAgain = true
      return
    }
    const stale = new Set<Board>()
    this.#relaying = (async () => {
      do {
        this.#relayAgain = false
        const rows = await this.#o.store.others(this.#lastSeq)
        for (const r of rows) {
          this.#lastSeq = Math.max(this.#lastSeq, r.seq)
          const id = idOf(r)
          const board = this.#boards.get(id)
          if (board === undefined) {
            // Loading: its load may have read the store before this row; apply it after.
            this.#waiting.get(id)?.push(r.update)
            continue
          }
          if (board.checked.load(r.update, 'remote')) board.bytes += r.update.length
          if (board.checked.incomplete) stale.add(board)
        }
        // A relayed update that builds on one this process never saw: read the board's rows again.
        for (const board of stale) await this.#reload(board)
        stale.clear()
      } while (this.#relayAgain && !this.#closed)
    })()
      .catch((error) => this.#o.log('warn', `whiteboard relay: ${(error as Error).message}`))
      .finally(() => {
        this.#relaying = undefined
      })
  }

  #heartbeat(): void {
    for (const board of this.#boards.values()) {
      for (const conn of board.connections) {
        if (!conn.alive) {
          conn.socket.terminate()
          continue
        }
        conn.alive = false
        conn.socket.ping()
      }
    }
  }

  /** Closes every client (1001, going away) and writes what is pending. */
  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#poll)
    clearInterval(this.#ping)
    clearTimeout(this.#flushTimer)
    await this.#stopListening?.()
    for (const board of this.#boards.values()) {
      for (const conn of board.connections) conn.socket.close(1001, 'the service is shutting down')
    }
    await this.flush()
    await this.#relaying
  }
}

/** The state of a list of updates, as one update. */
export function mergeUpdates(updates: Uint8Array[]): Uint8Array {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  const state = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return state
}

function awarenessMessage(awareness: awarenessProtocol.Awareness, clients: number[]): Uint8Array {
  return message((e) => {
    encoding.writeVarUint(e, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(awareness, clients))
  })
}
