// The whiteboard channel: a y-websocket–compatible WebSocket endpoint on the
// HTTP port, `/whiteboard/{GroupId}?sdkappid=…&userid=…&usersig=…`, so that the
// stock `y-websocket` provider (or any client speaking y-protocols' sync and
// awareness messages) draws on the board of that app and GroupId.
//
// This thread keeps the sockets, the store and each board's bytes; the boards
// themselves live in a worker thread per app (board-worker.ts), which checks
// every update against the document model (model.ts) and applies it under
// that app's CPU and heap budgets. A refused update closes its connection
// with the reason (4400) and is never applied, stored or relayed. Accepted
// updates are relayed at once and written to the store with their server time
// (merged a few times a second); on PostgreSQL other processes are told
// (NOTIFY) and relay them to their own clients. A board is loaded when its
// first client comes and leaves memory when its last one goes.
//
// Nothing a client sends costs this thread more than its budget: a socket is
// not read until its UserSig is checked and its board is ready; a sync
// request is answered with bytes the board already has; every connection and
// every app has message, byte and relay budgets, every app a memory budget and
// quotas in the store. One over a budget is closed with the reason (4429).
import type { IncomingMessage } from 'node:http'
import { extname } from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { WebSocket, WebSocketServer } from 'ws'
import { Bucket, type Rate } from '../budget.ts'
import type { Clock } from '../clock.ts'
import type { Authorization } from '../media/contracts.ts'
import {
  type BoardWorkerData,
  CLOSE,
  type ConnId,
  type CpuBudgets,
  type FromBoardWorker,
  type ToBoardWorker,
} from './board-protocol.ts'
import {
  MESSAGE_AUTH,
  MESSAGE_SYNC,
  SYNC_STEP1,
  SYNC_STEP2,
  SYNC_UPDATE,
  syncMessage,
} from './board-worker.ts'
import { LIMITS } from './model.ts'
import { BOARD_CHANNEL, type BoardKey, type BoardStore, LOOK_BACK, storedBytes } from './store.ts'

export { CLOSE } from './board-protocol.ts'

export const PATH_PREFIX = '/whiteboard/'
/**
 * A client this far behind on what it is sent is dropped rather than holding
 * memory for it: 16 MiB beyond the largest board (its sync answer shares the
 * board's bytes, it is no copy).
 */
const MAX_BUFFERED_BYTES = LIMITS.boardBytes + 16 * 1024 * 1024
const PING_MS = 30_000
/** A user whose update was refused is kept off that board this long. */
const REFUSED_COOLDOWN_MS = 30_000
/** What a socket may have sent (already read) before it is authorized and its board ready. */
const MAX_EARLY_MESSAGES = 16
const MAX_EARLY_BYTES = 64 * 1024
/** A board gets a snapshot after this many updates stored by one process, at most one a minute. */
const SNAPSHOT_EVERY = 2000
const SNAPSHOT_MIN_INTERVAL_MS = 60_000
/** A snapshot covers updates at least this old: every write older than that has committed. */
const SNAPSHOT_SETTLE_MS = 10_000
/** Accepted updates waiting for the store above this: the boards take no more until they are written. */
const MAX_UNSTORED_BYTES = 64 * 1024 * 1024
/** Estimated heap of a board per byte of it (a board of unmergeable items, measured: 28). */
export const HEAP_PER_BOARD_BYTE = 30
const HEAP_PER_BOARD = 1024 * 1024
/** The worker's entry beside this module (`.ts` from source, `.js` when built). */
const WORKER = fileURLToPath(new URL(`./board-worker${extname(import.meta.url)}`, import.meta.url))

/** Budgets and quotas of the boards; docs/security.md lists them with their settings. */
export interface BoardLimits {
  /** Clients on one board. */
  clientsPerBoard: number
  /** Estimated heap of one app's open boards (its worker's heap limit follows it), MiB. */
  appMemoryMb: number
  /** Estimated heap of every app's open boards together, MiB (an app under its fair share is never refused for it). */
  memoryMb: number
  /** Boards of one app open at once in this process. */
  appOpenBoards: number
  /** Boards (GroupIds) of one app in the store. */
  appBoards: number
  /** What one app's boards hold in the store, bytes. */
  appStoredBytes: number
  /** Messages of one connection. */
  connectionMessages: Rate
  /** Bytes of one connection. */
  connectionBytes: Rate
  /** Sync requests of one connection (each answered with the whole board). */
  connectionSyncs: Rate
  /** Bytes one app's clients are sent in answer to sync requests. */
  appSyncBytes: Rate
  /** Messages relayed to one app's clients (an update to a board of 30 is 29). */
  appRelays: Rate
  /** Thread CPU of a connection's and a board's messages in its app's worker. */
  cpu: CpuBudgets
}

export const DEFAULT_BOARD_LIMITS: BoardLimits = {
  clientsPerBoard: 1000,
  appMemoryMb: 1024,
  memoryMb: 4096,
  appOpenBoards: 500,
  appBoards: 100_000,
  appStoredBytes: 2 * 1024 ** 3,
  connectionMessages: { perSecond: 200, burst: 500 },
  connectionBytes: { perSecond: 1024 ** 2, burst: 8 * 1024 ** 2 },
  connectionSyncs: { perSecond: 0.1, burst: 3 },
  appSyncBytes: { perSecond: 32 * 1024 ** 2, burst: 256 * 1024 ** 2 },
  appRelays: { perSecond: 30_000, burst: 60_000 },
  cpu: {
    connection: { perSecond: 250, burst: 3000 },
    board: { perSecond: 500, burst: 10_000 },
  },
}

export interface BoardsOptions {
  store: BoardStore
  clock: Clock
  authorize(sdkAppId: number, userId: string, userSig: string): Promise<Authorization>
  /** An accepted update: room activity for the tasks recording this board (called at most once a second a board). */
  activity(key: BoardKey): void
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string): void
  limits?: Partial<BoardLimits>
  /** Accepted updates of a board are stored at least this often, merged. */
  flushMs?: number
  /** Boards not changed for this long are deleted from the store; 0 keeps them. */
  retentionMs?: number
}

interface Connection {
  id: ConnId
  socket: WebSocket
  board: Board
  userId: string
  alive: boolean
  messages: Bucket
  bytes: Bucket
  syncs: Bucket
}

interface Board {
  key: BoardKey
  id: string
  app: AppHost
  connections: Map<ConnId, Connection>
  /** The board's bytes as messages: its state (sync step 2), then every update taken since. */
  state: Uint8Array
  since: Uint8Array[]
  /** Bytes of the stored rows it is made of (and of what is waiting to be stored). */
  bytes: number
  lastActivityMs: number
  /** Updates stored by this process since it last wrote a snapshot of it. */
  sinceSnapshot: number
  /** When this process last started a snapshot of it (0: never). */
  snapshotAtMs: number
}

/** An app's boards here and the worker thread they live in. */
interface AppHost {
  sdkAppId: number
  worker: Worker
  ready: Promise<void>
  boards: Map<string, Board>
  /** Boards being opened: resolved with their state once the worker has built them. */
  opening: Map<
    string,
    { resolve(m: Extract<FromBoardWorker, { t: 'opened' }>): void; reject(e: Error): void }
  >
  /** Replies the worker owes (merges, flushes), by id. */
  replies: Map<number, { resolve(m: FromBoardWorker): void; reject(e: Error): void }>
  /** Estimated heap of the boards being opened, held for them while they load. */
  reserved: Map<string, number>
  /** Boards being opened (from the first look at the store): the worker is not ended meanwhile. */
  loads: number
  relays: Bucket
  syncBytes: Bucket
  /** What the app's boards hold in the store (read at a board's opening, counted up since). */
  stored: number
  heapBytes: number
  cpuMs: number
  gone: boolean
}

const idOf = (key: BoardKey) => `${key.sdkAppId}/${key.groupId}`
function keyOf(id: string): BoardKey {
  const slash = id.indexOf('/')
  return { sdkAppId: Number(id.slice(0, slash)), groupId: id.slice(slash + 1) }
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

/**
 * Closes a socket with a code and reason. A client with much still to read
 * would never get to the close frame (nor answer it), and its socket would
 * hold what it was sent until the closing times out: it is cut instead.
 */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.bufferedAmount > 1024 * 1024) ws.terminate()
  else ws.close(code, reasonText(reason))
}

/** Why a request for a board is refused: its close code and reason. */
class Refusal extends Error {
  readonly code: number
  constructor(code: number, reason: string) {
    super(reason)
    this.code = code
  }
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

/** The sync step of a y-protocols message, when it is a sync message (the rest unread). */
function syncStepOf(data: Uint8Array): number | undefined {
  try {
    const decoder = decoding.createDecoder(data)
    if (decoding.readVarUint(decoder) !== MESSAGE_SYNC) return undefined
    return decoding.readVarUint(decoder)
  } catch {
    return undefined
  }
}

export class Boards {
  readonly #o: BoardsOptions
  readonly #limits: BoardLimits
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.updateBytes + 64,
    perMessageDeflate: false,
  })
  readonly #apps = new Map<number, AppHost>()
  readonly #loading = new Map<string, Promise<Board>>()
  /** Updates relayed while their board loads, applied when it has. */
  readonly #waiting = new Map<string, Uint8Array[]>()
  /** Users refused on a board, and until when their reconnections are refused unread. */
  readonly #cooling = new Map<string, number>()
  #pending: (BoardKey & { atMs: number; update: Uint8Array })[] = []
  #pendingBytes = 0
  #flushing: Promise<void> = Promise.resolve()
  #flushTimer: NodeJS.Timeout | undefined
  #lastSeq = 0
  /** Rows relayed within the look-back behind #lastSeq (read again otherwise). */
  readonly #seen = new Set<number>()
  #nextConn = 1
  #nextReply = 1
  #stopListening: (() => Promise<void>) | undefined
  #poll: NodeJS.Timeout | undefined
  #ping: NodeJS.Timeout | undefined
  #relaying: Promise<void> | undefined
  #relayAgain = false
  #closed = false

  constructor(options: BoardsOptions) {
    this.#o = options
    this.#limits = {
      ...DEFAULT_BOARD_LIMITS,
      ...options.limits,
      cpu: { ...DEFAULT_BOARD_LIMITS.cpu, ...options.limits?.cpu },
    }
  }

  /** Boards in memory, their clients, and their workers' heap, for metrics. */
  get stats(): { boards: number; clients: number; workers: number; heapBytes: number } {
    let boards = 0
    let clients = 0
    let heapBytes = 0
    for (const app of this.#apps.values()) {
      heapBytes += app.heapBytes
      for (const b of app.boards.values()) {
        boards++
        clients += b.connections.size
      }
    }
    return { boards, clients, workers: this.#apps.size, heapBytes }
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
        if (error instanceof Refusal) {
          this.#o.log('info', `whiteboard client refused: ${error.message}`)
          if (ws.readyState !== WebSocket.OPEN) return ws.terminate()
          // Read again, so that the closing handshake completes (what else comes is held, bounded).
          ws.resume()
          ws.close(error.code, reasonText(error.message))
          return
        }
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
    // Nothing more is read until the client is authorized and its board is
    // ready; what was read already (at most a socket read) waits, bounded.
    ws.pause()
    const early: Buffer[] = []
    let earlyBytes = 0
    const hold = (data: Buffer) => {
      earlyBytes += data.length
      if (early.length >= MAX_EARLY_MESSAGES || earlyBytes > MAX_EARLY_BYTES) ws.terminate()
      else early.push(data)
    }
    ws.on('message', hold)
    ws.on('error', () => ws.terminate())
    if ('error' in target) {
      this.#refuse(ws, target.error)
      return
    }
    const auth = await this.#o.authorize(target.sdkAppId, target.userId, target.userSig)
    if (!auth.ok) {
      this.#refuse(ws, `refused: ${auth.reason}`)
      return
    }
    const key = { sdkAppId: target.sdkAppId, groupId: target.groupId }
    const coolKey = `${idOf(key)}\n${target.userId}`
    const until = this.#cooling.get(coolKey)
    if (until !== undefined) {
      if (until > this.#o.clock.now())
        throw new Refusal(CLOSE.badUpdate, 'an update of yours was refused: try again later')
      this.#cooling.delete(coolKey)
    }
    const board = await this.#open(key)
    if (ws.readyState !== WebSocket.OPEN) {
      this.#maybeDrop(board)
      return
    }
    if (board.connections.size >= this.#limits.clientsPerBoard) {
      this.#maybeDrop(board)
      throw new Refusal(CLOSE.full, 'this board has as many clients as it takes')
    }
    const now = this.#o.clock.now()
    const conn: Connection = {
      id: this.#nextConn++,
      socket: ws,
      board,
      userId: target.userId,
      alive: true,
      messages: new Bucket(this.#limits.connectionMessages, now),
      bytes: new Bucket(this.#limits.connectionBytes, now),
      syncs: new Bucket(this.#limits.connectionSyncs, now),
    }
    board.connections.set(conn.id, conn)
    ws.off('message', hold)
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#message(conn, data, isBinary))
    ws.on('pong', () => {
      conn.alive = true
    })
    ws.on('close', () => this.#closedConnection(conn))
    this.#post(board.app, { t: 'join', board: board.id, conn: conn.id })
    for (const data of early) this.#message(conn, data, true)
    ws.resume()
  }

  #refuse(ws: WebSocket, reason: string): void {
    this.#o.log('info', `whiteboard client refused: ${reason}`)
    if (ws.readyState !== WebSocket.OPEN) return
    ws.send(
      Buffer.from(
        (() => {
          const e = encoding.createEncoder()
          encoding.writeVarUint(e, MESSAGE_AUTH)
          encoding.writeVarUint(e, 0) // permission denied
          encoding.writeVarString(e, reason)
          return encoding.toUint8Array(e)
        })(),
      ),
    )
    ws.resume()
    ws.close(CLOSE.refused, reasonText(reason))
  }

  // ---- apps and their workers -------------------------------------------------------

  #app(sdkAppId: number): AppHost {
    const known = this.#apps.get(sdkAppId)
    if (known && !known.gone) return known
    const heapMb = Math.ceil(this.#limits.appMemoryMb * 1.5) + 64
    const data: BoardWorkerData = { storeEveryMs: this.#o.flushMs ?? 50, budget: this.#limits.cpu }
    const worker = new Worker(WORKER, {
      workerData: { boards: data },
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
    })
    const now = this.#o.clock.now()
    const app: AppHost = {
      sdkAppId,
      worker,
      ready: new Promise((resolve, reject) => {
        worker.once('error', reject)
        worker.once('message', (m: FromBoardWorker) => {
          if (m.t === 'ready') resolve()
        })
      }),
      boards: new Map(),
      opening: new Map(),
      replies: new Map(),
      reserved: new Map(),
      loads: 0,
      relays: new Bucket(this.#limits.appRelays, now),
      syncBytes: new Bucket(this.#limits.appSyncBytes, now),
      stored: 0,
      heapBytes: 0,
      cpuMs: 0,
      gone: false,
    }
    app.ready.catch(() => {})
    worker.on('message', (m: FromBoardWorker) => this.#fromWorker(app, m))
    worker.on('error', (error: Error & { code?: string }) => this.#workerFailed(app, error))
    worker.on('exit', (code) => {
      if (!app.gone) this.#workerFailed(app, new Error(`the board worker ended (code ${code})`))
    })
    worker.unref()
    this.#apps.set(sdkAppId, app)
    return app
  }

  #post(app: AppHost, message: ToBoardWorker, transfer?: ArrayBuffer[]): void {
    if (!app.gone) app.worker.postMessage(message, transfer)
  }

  /** Asks the worker something and waits for its answer. */
  #ask(app: AppHost, make: (id: number) => ToBoardWorker): Promise<FromBoardWorker> {
    if (app.gone) return Promise.reject(new Error('the board worker ended'))
    const id = this.#nextReply++
    return new Promise((resolve, reject) => {
      app.replies.set(id, { resolve, reject })
      this.#post(app, make(id))
    })
  }

  /** The app's worker ended (over its heap, or a failure): its boards are closed, others go on. */
  #workerFailed(app: AppHost, error: Error & { code?: string }): void {
    if (app.gone) return
    app.gone = true
    if (this.#apps.get(app.sdkAppId) === app) this.#apps.delete(app.sdkAppId)
    const why =
      error.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `the app's boards ran out of their memory (${this.#limits.appMemoryMb} MiB)`
        : `the app's board worker failed: ${error.message}`
    if (!this.#closed) this.#o.log('error', `whiteboard app ${app.sdkAppId}: ${why}`)
    for (const pending of app.opening.values()) pending.reject(new Refusal(CLOSE.workerFailed, why))
    app.opening.clear()
    for (const reply of app.replies.values()) reply.reject(new Error(why))
    app.replies.clear()
    for (const board of app.boards.values()) {
      for (const conn of board.connections.values())
        conn.socket.close(CLOSE.workerFailed, reasonText(why))
    }
    app.boards.clear()
    void app.worker.terminate().catch(() => {})
  }

  #fromWorker(app: AppHost, m: FromBoardWorker): void {
    switch (m.t) {
      case 'ready':
        return
      case 'opened': {
        const pending = app.opening.get(m.board)
        app.opening.delete(m.board)
        pending?.resolve(m)
        return
      }
      case 'openFailed': {
        const pending = app.opening.get(m.board)
        app.opening.delete(m.board)
        pending?.reject(new Refusal(CLOSE.workerFailed, `the board cannot be loaded: ${m.reason}`))
        return
      }
      case 'took':
        this.#took(app, m.board, m.conn, m.update, m.atMs)
        return
      case 'state': {
        const board = app.boards.get(m.board)
        if (board === undefined) return
        board.state = syncMessage(SYNC_STEP2, m.state)
        board.since.splice(0, m.covers)
        return
      }
      case 'store':
        this.#toStore(m.board, m.update, m.atMs, m.count)
        return
      case 'send': {
        const conn = this.#connection(app, m.conn)
        if (conn) this.#send(conn, m.data)
        return
      }
      case 'broadcast': {
        const board = app.boards.get(m.board)
        if (board === undefined) return
        app.relays.spend(board.connections.size, this.#o.clock.now())
        for (const c of board.connections.values()) this.#send(c, m.data)
        return
      }
      case 'close': {
        const conn = this.#connection(app, m.conn)
        if (conn === undefined) return
        if (m.cooldown)
          this.#cooling.set(
            `${conn.board.id}\n${conn.userId}`,
            this.#o.clock.now() + REFUSED_COOLDOWN_MS,
          )
        this.#o.log('warn', `whiteboard ${conn.board.id}, user ${conn.userId}: ${m.reason}`)
        closeSocket(conn.socket, m.code, m.reason)
        return
      }
      case 'incomplete': {
        const board = app.boards.get(m.board)
        if (board) void this.#reload(board)
        return
      }
      case 'merged':
      case 'flushed': {
        const reply = app.replies.get(m.id)
        app.replies.delete(m.id)
        reply?.resolve(m)
        return
      }
      case 'usage':
        app.heapBytes = m.heapBytes
        app.cpuMs = m.cpuMs
        return
    }
  }

  #connection(app: AppHost, id: ConnId): Connection | undefined {
    for (const board of app.boards.values()) {
      const conn = board.connections.get(id)
      if (conn) return conn
    }
    return undefined
  }

  // ---- boards -----------------------------------------------------------------------

  /** Estimated heap of a board of `bytes`. */
  #heapOf(bytes: number): number {
    return bytes * HEAP_PER_BOARD_BYTE + HEAP_PER_BOARD
  }

  /** Estimated heap of an app's open boards, and of every app's. */
  #heap(sdkAppId: number): { app: number; all: number; apps: number } {
    let app = 0
    let all = 0
    let apps = 0
    for (const host of this.#apps.values()) {
      let mine = 0
      for (const b of host.boards.values()) mine += this.#heapOf(b.bytes)
      for (const r of host.reserved.values()) mine += r
      if (mine > 0) apps++
      all += mine
      if (host.sdkAppId === sdkAppId) app = mine
    }
    return { app, all, apps }
  }

  /** Refuses, with the reason, a board or an update that would take an app over its memory budget. */
  #checkMemory(sdkAppId: number, more: number, what: string): void {
    const mib = 1024 * 1024
    const { app, all, apps } = this.#heap(sdkAppId)
    const own = this.#limits.appMemoryMb * mib
    // What the app's worker really holds, when it is more than the estimate says.
    const used = this.#apps.get(sdkAppId)?.heapBytes ?? 0
    if (used + more > own * 1.25)
      throw new Refusal(
        CLOSE.overBudget,
        `${what}: the app's open boards use ${Math.round(used / mib)} MiB, their memory budget (${this.#limits.appMemoryMb} MiB)`,
      )
    if (app + more > own)
      throw new Refusal(
        CLOSE.overBudget,
        `${what}: the app's open boards would need more than their memory budget (${this.#limits.appMemoryMb} MiB)`,
      )
    // Over the total only an app below its fair share goes on.
    const total = this.#limits.memoryMb * mib
    if (all + more > total && app + more > total / Math.max(1, apps))
      throw new Refusal(
        CLOSE.overBudget,
        `${what}: the service's boards use their memory budget (${this.#limits.memoryMb} MiB); try again later`,
      )
  }

  async #open(key: BoardKey): Promise<Board> {
    const id = idOf(key)
    const known = this.#apps.get(key.sdkAppId)?.boards.get(id)
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
    const app = this.#app(key.sdkAppId)
    app.loads++
    try {
      return await this.#admit(app, key)
    } finally {
      app.loads--
    }
  }

  /** Opens a board once its app's quotas and memory budget allow it. */
  async #admit(app: AppHost, key: BoardKey): Promise<Board> {
    const id = idOf(key)
    if (app.boards.size + app.loads - 1 >= this.#limits.appOpenBoards)
      throw new Refusal(
        CLOSE.overBudget,
        `the app has ${this.#limits.appOpenBoards} boards open, as many as it may`,
      )
    const usage = await this.#o.store.usage(key.sdkAppId, key.groupId)
    app.stored = usage.bytes
    if (!usage.known && usage.boards >= this.#limits.appBoards)
      throw new Refusal(
        CLOSE.overBudget,
        `the app has ${this.#limits.appBoards} boards in the store, as many as it may: no new GroupId`,
      )
    // Its memory is estimated (and held) before anything of it is read.
    const size = await this.#o.store.loadSize(key)
    this.#checkMemory(key.sdkAppId, this.#heapOf(size), 'the board cannot be opened')
    app.reserved.set(id, this.#heapOf(size))
    try {
      return await this.#build(app, key, id)
    } finally {
      app.reserved.delete(id)
    }
  }

  async #build(app: AppHost, key: BoardKey, id: string): Promise<Board> {
    await app.ready
    // What this app's worker took and has not handed over yet (a board that just closed) is in the store first.
    await this.#ask(app, (n) => ({ t: 'flush', id: n }))
    await this.flush()
    const stored = await this.#o.store.load(key)
    const parts = [
      ...(stored.snapshot ? [stored.snapshot] : []),
      ...stored.updates.map((u) => u.update),
      // Writes of this process still on their way to the store.
      ...this.#pending
        .filter((p) => p.sdkAppId === key.sdkAppId && p.groupId === key.groupId)
        .map((p) => p.update),
    ]
    const opened = await new Promise<Extract<FromBoardWorker, { t: 'opened' }>>(
      (resolve, reject) => {
        if (app.gone) return reject(new Refusal(CLOSE.workerFailed, 'the board worker ended'))
        app.opening.set(id, { resolve, reject })
        this.#post(app, { t: 'open', board: id, parts })
      },
    )
    const board: Board = {
      key,
      id,
      app,
      connections: new Map(),
      state: syncMessage(SYNC_STEP2, opened.state),
      since: [],
      bytes: stored.bytes,
      lastActivityMs: 0,
      sinceSnapshot: stored.updates.length,
      snapshotAtMs: 0,
    }
    app.boards.set(id, board)
    const waiting = this.#waiting.get(id) ?? []
    if (waiting.length > 0) this.#post(app, { t: 'remote', board: id, updates: waiting })
    return board
  }

  /** Applies every stored row of a board again (idempotent), for what a relay missed. */
  async #reload(board: Board): Promise<void> {
    const stored = await this.#o.store.load(board.key)
    const updates = [
      ...(stored.snapshot ? [stored.snapshot] : []),
      ...stored.updates.map((u) => u.update),
    ]
    this.#post(board.app, { t: 'remote', board: board.id, updates })
  }

  #message(conn: Connection, data: Buffer, isBinary: boolean): void {
    const board = conn.board
    if (!isBinary) {
      this.#close(conn, CLOSE.badUpdate, 'messages are binary')
      return
    }
    const now = this.#o.clock.now()
    if (!conn.messages.take(1, now)) {
      this.#close(conn, CLOSE.overBudget, 'too many messages: try again later')
      return
    }
    if (!conn.bytes.take(data.length, now)) {
      this.#close(conn, CLOSE.overBudget, 'too many bytes a second: try again later')
      return
    }
    const step = syncStepOf(data)
    // A sync request is answered here, with the bytes the board has (no work for the board).
    if (step === SYNC_STEP1) {
      this.#answerSync(conn)
      return
    }
    if (board.app.relays.debtMs(now) > 0) {
      this.#close(conn, CLOSE.overBudget, "over the app's relay budget: try again later")
      return
    }
    if (step === SYNC_STEP2 || step === SYNC_UPDATE) {
      if (board.bytes + data.length > LIMITS.boardBytes) {
        this.#close(conn, CLOSE.badUpdate, 'the board is full (20 MB of updates)')
        return
      }
      if (board.app.stored + data.length > this.#limits.appStoredBytes) {
        this.#close(
          conn,
          CLOSE.overBudget,
          `the app's boards hold ${Math.round(board.app.stored / 1024 ** 2)} MiB in the store, as much as they may`,
        )
        return
      }
      if (this.#pendingBytes > MAX_UNSTORED_BYTES) {
        this.#close(conn, CLOSE.overBudget, 'the store is behind: try again later')
        return
      }
      try {
        this.#checkMemory(board.key.sdkAppId, data.length * HEAP_PER_BOARD_BYTE, 'update refused')
      } catch (error) {
        this.#close(conn, (error as Refusal).code, (error as Error).message)
        return
      }
    }
    const copy = new Uint8Array(data.length)
    copy.set(data)
    this.#post(board.app, { t: 'message', board: board.id, conn: conn.id, data: copy, atMs: now }, [
      copy.buffer,
    ])
  }

  #answerSync(conn: Connection): void {
    const now = this.#o.clock.now()
    const board = conn.board
    if (!conn.syncs.take(1, now)) {
      this.#close(conn, CLOSE.overBudget, 'sync requested too often: try again later')
      return
    }
    let size = board.state.length
    for (const u of board.since) size += u.length
    if (!board.app.syncBytes.take(size, now)) {
      this.#close(conn, CLOSE.overBudget, "over the app's sync budget: try again later")
      return
    }
    this.#send(conn, board.state)
    for (const u of board.since) this.#send(conn, u)
  }

  /** An update a board took: relayed, part of its bytes, and room activity when a client of this process sent it. */
  #took(app: AppHost, id: string, from: ConnId | null, update: Uint8Array, atMs: number): void {
    const board = app.boards.get(id)
    if (board === undefined) return
    const data = syncMessage(SYNC_UPDATE, update)
    board.since.push(data)
    app.relays.spend(board.connections.size - (from === null ? 0 : 1), this.#o.clock.now())
    for (const c of board.connections.values()) if (c.id !== from) this.#send(c, data)
    if (from !== null && atMs - board.lastActivityMs >= 1000) {
      board.lastActivityMs = atMs
      this.#o.activity(board.key)
    }
  }

  /** Updates a board took here, merged by its worker: written with their time. */
  #toStore(id: string, update: Uint8Array, atMs: number, count: number): void {
    const key = keyOf(id)
    const board = this.#apps.get(key.sdkAppId)?.boards.get(id)
    this.#pending.push({ ...key, atMs, update })
    this.#pendingBytes += update.length
    this.#scheduleFlush()
    if (board === undefined) return
    board.bytes += storedBytes(update)
    board.app.stored += storedBytes(update)
    const now = this.#o.clock.now()
    board.sinceSnapshot += count
    if (
      board.sinceSnapshot >= SNAPSHOT_EVERY &&
      now - board.snapshotAtMs >= SNAPSHOT_MIN_INTERVAL_MS
    ) {
      board.sinceSnapshot = 0
      board.snapshotAtMs = now
      void this.#snapshot(board)
    }
  }

  #close(conn: Connection, code: number, reason: string): void {
    this.#o.log('warn', `whiteboard ${conn.board.id}, user ${conn.userId}: ${reason}`)
    closeSocket(conn.socket, code, reason)
  }

  #send(conn: Connection, data: Uint8Array): void {
    const ws = conn.socket
    if (ws.readyState !== WebSocket.OPEN) return
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      closeSocket(ws, CLOSE.tooSlow, 'too far behind')
      return
    }
    ws.send(data)
  }

  #closedConnection(conn: Connection): void {
    const board = conn.board
    if (!board.connections.delete(conn.id)) return
    this.#post(board.app, { t: 'leave', board: board.id, conn: conn.id })
    this.#maybeDrop(board)
  }

  /** A board without clients leaves memory (its worker stores what it took first). */
  #maybeDrop(board: Board): void {
    if (board.connections.size > 0) return
    const app = board.app
    if (app.boards.get(board.id) !== board) return
    app.boards.delete(board.id)
    this.#post(app, { t: 'drop', board: board.id })
    // A worker with no boards left ends; the next board of the app starts another.
    if (app.boards.size === 0 && app.loads === 0) {
      setTimeout(() => {
        if (app.boards.size > 0 || app.loads > 0 || app.gone) return
        void this.#retire(app)
      }, 10_000).unref()
    }
  }

  /** Ends an app's worker once what it took is handed over. */
  async #retire(app: AppHost): Promise<void> {
    await this.#ask(app, (id) => ({ t: 'flush', id })).catch(() => {})
    if (app.boards.size > 0 || app.loads > 0) return
    app.gone = true
    if (this.#apps.get(app.sdkAppId) === app) this.#apps.delete(app.sdkAppId)
    await app.worker.terminate().catch(() => {})
  }

  /** Writes a snapshot of a board from the store, once its latest updates have settled. */
  async #snapshot(board: Board): Promise<void> {
    const key = board.key
    try {
      await this.flush()
      await new Promise((r) => setTimeout(r, SNAPSHOT_SETTLE_MS).unref())
      // Merged by the app's worker; a board whose worker has ended since waits for its next snapshot.
      const app = board.app
      if (this.#closed || app.gone) return
      await this.#o.store.snapshot(
        key,
        this.#o.clock.now() - SNAPSHOT_SETTLE_MS,
        async (updates) => {
          const m = await this.#ask(app, (id) => ({ t: 'merge', id, updates }))
          if (m.t !== 'merged') throw new Error('the board worker ended')
          return m.state
        },
      )
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
    }, 20)
  }

  /** Writes the accepted updates not written yet. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      while (this.#pending.length > 0) {
        const rows = this.#pending.slice(0, 200)
        try {
          await this.#o.store.append(rows)
          this.#pending.splice(0, rows.length)
          for (const r of rows) this.#pendingBytes -= r.update.length
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

  /** Deletes boards not changed within the retention (none open here); returns how many. */
  async expire(): Promise<number> {
    const retention = this.#o.retentionMs ?? 0
    if (retention <= 0) return 0
    const open = new Set<string>()
    for (const app of this.#apps.values()) for (const id of app.boards.keys()) open.add(id)
    for (const id of this.#loading.keys()) open.add(id)
    const gone = await this.#o.store.expire(this.#o.clock.now() - retention, open)
    for (const key of gone)
      this.#o.log('info', `whiteboard ${idOf(key)}: deleted after the retention`)
    return gone.length
  }

  /** Relays what other processes accepted to this process's clients. */
  #relayOthers(): void {
    if (this.#relaying) {
      this.#relayAgain = true
      return
    }
    this.#relaying = (async () => {
      do {
        this.#relayAgain = false
        const rows = await this.#o.store.others(this.#lastSeq, [...this.#seen])
        const byBoard = new Map<string, Uint8Array[]>()
        for (const r of rows) {
          this.#lastSeq = Math.max(this.#lastSeq, r.seq)
          this.#seen.add(r.seq)
          const id = idOf(r)
          const board = this.#apps.get(r.sdkAppId)?.boards.get(id)
          if (board === undefined) {
            // Loading: its load may have read the store before this row; apply it after.
            this.#waiting.get(id)?.push(r.update)
            continue
          }
          board.bytes += storedBytes(r.update)
          board.app.stored += storedBytes(r.update)
          byBoard.set(id, [...(byBoard.get(id) ?? []), r.update])
        }
        for (const [id, updates] of byBoard) {
          const board = this.#apps.get(keyOf(id).sdkAppId)?.boards.get(id)
          if (board) this.#post(board.app, { t: 'remote', board: id, updates })
        }
        for (const seq of this.#seen) if (seq <= this.#lastSeq - LOOK_BACK) this.#seen.delete(seq)
        // A full page: there may be more.
        if (rows.length > 0) this.#relayAgain = true
      } while (this.#relayAgain && !this.#closed)
    })()
      .catch((error) => this.#o.log('warn', `whiteboard relay: ${(error as Error).message}`))
      .finally(() => {
        this.#relaying = undefined
      })
  }

  #heartbeat(): void {
    for (const app of this.#apps.values()) {
      for (const board of app.boards.values()) {
        for (const conn of board.connections.values()) {
          if (!conn.alive) {
            conn.socket.terminate()
            continue
          }
          conn.alive = false
          conn.socket.ping()
        }
      }
    }
  }

  /** Closes every client (1001, going away), writes what is pending and ends the workers. */
  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#poll)
    clearInterval(this.#ping)
    clearTimeout(this.#flushTimer)
    await this.#stopListening?.()
    for (const app of this.#apps.values()) {
      for (const board of app.boards.values()) {
        for (const conn of board.connections.values())
          conn.socket.close(1001, 'the service is shutting down')
      }
    }
    await Promise.all(
      [...this.#apps.values()].map((app) =>
        this.#ask(app, (id) => ({ t: 'flush', id })).catch(() => {}),
      ),
    )
    await this.flush()
    await this.#relaying
    for (const app of this.#apps.values()) {
      app.gone = true
      await app.worker.terminate().catch(() => {})
    }
    this.#apps.clear()
  }
}
