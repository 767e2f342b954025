// A board worker: the boards of one app, on a thread of their own under the
// app's heap limit (board-protocol.ts says why and what is said). Here each
// client message is checked against the document model and applied, awareness
// is kept, accepted updates are merged for the store, and every message's
// thread CPU is charged to its connection and its board: one over its budget
// is closed with the reason, before its next message costs anything.
import { isMainThread, parentPort, type Transferable, workerData } from 'node:worker_threads'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { Bucket } from '../budget.ts'
import {
  type BoardWorkerData,
  CLOSE,
  type ConnId,
  type CpuBudgets,
  type FromBoardWorker,
  type ToBoardWorker,
} from './board-protocol.ts'
import { CheckedDoc, ModelError } from './model.ts'

export const MESSAGE_SYNC = 0
export const MESSAGE_AWARENESS = 1
export const MESSAGE_AUTH = 2
export const MESSAGE_QUERY_AWARENESS = 3
export const SYNC_STEP1 = 0
export const SYNC_STEP2 = 1
export const SYNC_UPDATE = 2

const MAX_AWARENESS_BYTES = 64 * 1024
const MAX_AWARENESS_CLIENTS = 2000

export function message(write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}

/** A y-protocols sync message (step 1, step 2 or update) around `payload`. */
export function syncMessage(step: number, payload: Uint8Array): Uint8Array {
  return message((e) => {
    encoding.writeVarUint(e, MESSAGE_SYNC)
    encoding.writeVarUint(e, step)
    encoding.writeVarUint8Array(e, payload)
  })
}

/** The state of a list of updates, as one update. */
export function mergeUpdates(updates: readonly Uint8Array[]): Uint8Array {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  const state = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return state
}

interface WorkerBoard {
  id: string
  checked: CheckedDoc
  awareness: awarenessProtocol.Awareness
  /** Each client's awareness client ids. */
  conns: Map<ConnId, Set<number>>
  cpu: Bucket
  /** Updates taken here and not yet sent to be stored. */
  toStore: { update: Uint8Array; atMs: number }[]
}

type Emit = (message: FromBoardWorker, transfer?: Transferable[]) => void

export interface AppBoardsOptions extends BoardWorkerData {
  /** This thread's CPU time, ms. */
  cpuMs(): number
  /** Wall time, ms (the buckets' refill). */
  nowMs(): number
}

/** The boards of one app: everything the worker does, callable in-thread for tests. */
export class AppBoards {
  readonly #emit: Emit
  readonly #o: AppBoardsOptions
  readonly #boards = new Map<string, WorkerBoard>()
  readonly #connCpu = new Map<ConnId, Bucket>()
  readonly #connBoard = new Map<ConnId, WorkerBoard>()
  #storeTimer: NodeJS.Timeout | undefined

  constructor(emit: Emit, options: AppBoardsOptions) {
    this.#emit = emit
    this.#o = options
  }

  handle(m: ToBoardWorker): void {
    switch (m.t) {
      case 'open':
        this.#open(m.board, m.parts)
        return
      case 'drop':
        this.#drop(m.board)
        return
      case 'join':
        this.#join(m.board, m.conn)
        return
      case 'leave':
        this.#leave(m.conn)
        return
      case 'message':
        this.#message(m.board, m.conn, m.data, m.atMs)
        return
      case 'remote':
        this.#remote(m.board, m.updates)
        return
      case 'merge':
        this.#emit({ t: 'merged', id: m.id, state: mergeUpdates(m.updates) })
        return
      case 'flush':
        this.#store()
        this.#emit({ t: 'flushed', id: m.id })
        return
    }
  }

  /** Every board's updates not yet sent to be stored, now. */
  close(): void {
    this.#store()
    clearTimeout(this.#storeTimer)
    for (const board of [...this.#boards.keys()]) this.#drop(board)
  }

  #open(id: string, parts: Uint8Array[]): void {
    const began = this.#o.cpuMs()
    const checked = new CheckedDoc()
    try {
      for (const part of parts) checked.load(part, 'store')
    } catch (error) {
      this.#emit({ t: 'openFailed', board: id, reason: (error as Error).message })
      return
    }
    const { state } = checked.compact(true) as { state: Uint8Array }
    const awareness = new awarenessProtocol.Awareness(new Y.Doc())
    awareness.setLocalState(null)
    const board: WorkerBoard = {
      id,
      checked,
      awareness,
      conns: new Map(),
      cpu: new Bucket(this.#o.budget.board, this.#o.nowMs()),
      toStore: [],
    }
    awareness.on(
      'update',
      (
        { added, updated, removed }: Record<'added' | 'updated' | 'removed', number[]>,
        origin: unknown,
      ) => {
        if (typeof origin === 'number') {
          const mine = board.conns.get(origin)
          for (const c of [...added, ...updated]) mine?.add(c)
          for (const c of removed) mine?.delete(c)
        }
        const changed = [...added, ...updated, ...removed]
        this.#emit({ t: 'broadcast', board: id, data: awarenessMessage(awareness, changed) })
      },
    )
    this.#boards.set(id, board)
    const cpuMs = this.#o.cpuMs() - began
    board.cpu.spend(cpuMs, this.#o.nowMs())
    this.#emit({
      t: 'opened',
      board: id,
      state,
      stateVector: Y.encodeStateVector(checked.doc),
      cpuMs,
    })
    if (checked.incomplete) this.#emit({ t: 'incomplete', board: id })
  }

  #drop(id: string): void {
    const board = this.#boards.get(id)
    if (board === undefined) return
    this.#storeBoard(board)
    this.#boards.delete(id)
    for (const conn of board.conns.keys()) {
      this.#connCpu.delete(conn)
      this.#connBoard.delete(conn)
    }
    board.awareness.destroy()
    board.checked.doc.destroy()
  }

  #join(id: string, conn: ConnId): void {
    const board = this.#boards.get(id)
    if (board === undefined) return
    board.conns.set(conn, new Set())
    this.#connBoard.set(conn, board)
    this.#connCpu.set(conn, new Bucket(this.#o.budget.connection, this.#o.nowMs()))
    // The board's state vector, so the client sends what the board lacks, and who else is here.
    this.#emit({
      t: 'send',
      conn,
      data: syncMessage(SYNC_STEP1, Y.encodeStateVector(board.checked.doc)),
    })
    const states = board.awareness.getStates()
    if (states.size > 0)
      this.#emit({ t: 'send', conn, data: awarenessMessage(board.awareness, [...states.keys()]) })
  }

  #leave(conn: ConnId): void {
    const board = this.#connBoard.get(conn)
    this.#connBoard.delete(conn)
    this.#connCpu.delete(conn)
    if (board === undefined) return
    const clients = board.conns.get(conn)
    board.conns.delete(conn)
    if (clients && clients.size > 0)
      awarenessProtocol.removeAwarenessStates(board.awareness, [...clients], null)
  }

  #close(conn: ConnId, code: number, reason: string, cooldown = false): void {
    this.#emit({ t: 'close', conn, code, reason, cooldown })
    this.#leave(conn)
  }

  #message(id: string, conn: ConnId, data: Uint8Array, atMs: number): void {
    const board = this.#boards.get(id)
    const connCpu = this.#connCpu.get(conn)
    if (board === undefined || connCpu === undefined || !board.conns.has(conn)) return
    const now = this.#o.nowMs()
    // Over a budget: refused before it costs anything.
    const boardWait = board.cpu.debtMs(now)
    if (boardWait > 0) {
      this.#close(
        conn,
        CLOSE.overBudget,
        `the board is over its CPU budget: try again in ${Math.ceil(boardWait / 1000)} s`,
      )
      return
    }
    const began = this.#o.cpuMs()
    try {
      this.#work(board, conn, data, atMs)
    } finally {
      const spent = this.#o.cpuMs() - began
      board.cpu.spend(spent, now)
      if (connCpu.spend(spent, now) < 0 && board.conns.has(conn)) {
        this.#close(
          conn,
          CLOSE.overBudget,
          `over this connection's CPU budget: try again in ${Math.ceil(connCpu.debtMs(now) / 1000)} s`,
        )
      }
    }
  }

  #work(board: WorkerBoard, conn: ConnId, data: Uint8Array, atMs: number): void {
    try {
      const decoder = decoding.createDecoder(data)
      const type = decoding.readVarUint(decoder)
      if (type === MESSAGE_SYNC) {
        const step = decoding.readVarUint(decoder)
        // Step 1 is answered by the main thread from the board's bytes; a late one is harmless.
        if (step === SYNC_STEP1) return
        if (step === SYNC_STEP2 || step === SYNC_UPDATE) {
          this.#update(board, conn, decoding.readVarUint8Array(decoder), atMs)
          return
        }
        this.#close(conn, CLOSE.badUpdate, `unknown sync message ${step}`)
        return
      }
      if (type === MESSAGE_AWARENESS) {
        const update = decoding.readVarUint8Array(decoder)
        if (update.length > MAX_AWARENESS_BYTES) {
          this.#close(conn, CLOSE.badUpdate, 'awareness state too large')
          return
        }
        awarenessProtocol.applyAwarenessUpdate(board.awareness, update, conn)
        if (board.awareness.getStates().size > MAX_AWARENESS_CLIENTS)
          this.#close(conn, CLOSE.badUpdate, 'too many awareness clients')
        return
      }
      if (type === MESSAGE_QUERY_AWARENESS) {
        const a = board.awareness
        this.#emit({ t: 'send', conn, data: awarenessMessage(a, [...a.getStates().keys()]) })
        return
      }
      this.#close(conn, CLOSE.badUpdate, `unknown message type ${type}`)
    } catch (error) {
      this.#close(conn, CLOSE.badUpdate, `malformed message: ${(error as Error).message}`)
    }
  }

  #update(board: WorkerBoard, conn: ConnId, update: Uint8Array, atMs: number): void {
    let changed: boolean
    try {
      changed = board.checked.apply(update, conn)
    } catch (error) {
      if (error instanceof ModelError) {
        this.#close(conn, CLOSE.badUpdate, `update refused: ${error.message}`, true)
        return
      }
      throw error
    }
    if (!changed) return
    this.#took(board, conn, update, atMs)
    board.toStore.push({ update, atMs })
    this.#storeTimer ??= setTimeout(() => {
      this.#storeTimer = undefined
      this.#store()
    }, this.#o.storeEveryMs)
  }

  /** An update the board took: relayed by the main thread and part of its bytes. */
  #took(board: WorkerBoard, conn: ConnId | null, update: Uint8Array, atMs: number): void {
    this.#emit({ t: 'took', board: board.id, conn, update, atMs })
    const compacted = board.checked.compact()
    if (compacted) {
      this.#emit({
        t: 'state',
        board: board.id,
        state: compacted.state,
        stateVector: Y.encodeStateVector(board.checked.doc),
        covers: compacted.covers,
      })
    }
  }

  #remote(id: string, updates: Uint8Array[]): void {
    const board = this.#boards.get(id)
    if (board === undefined) return
    const began = this.#o.cpuMs()
    for (const u of updates) if (board.checked.load(u, 'remote')) this.#took(board, null, u, 0)
    board.cpu.spend(this.#o.cpuMs() - began, this.#o.nowMs())
    if (board.checked.incomplete) this.#emit({ t: 'incomplete', board: id })
  }

  #store(): void {
    for (const board of this.#boards.values()) this.#storeBoard(board)
  }

  #storeBoard(board: WorkerBoard): void {
    const list = board.toStore
    if (list.length === 0) return
    board.toStore = []
    const last = list.at(-1) as { atMs: number }
    const update =
      list.length === 1
        ? (list[0] as { update: Uint8Array }).update
        : Y.mergeUpdates(list.map((u) => u.update))
    this.#emit({ t: 'store', board: board.id, update, atMs: last.atMs, count: list.length })
  }
}

export function awarenessMessage(
  awareness: awarenessProtocol.Awareness,
  clients: number[],
): Uint8Array {
  return message((e) => {
    encoding.writeVarUint(e, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(awareness, clients))
  })
}

// The worker thread: the boards of one app, reporting its CPU and heap every second.
if (!isMainThread && (workerData as { boards?: BoardWorkerData } | null)?.boards) {
  const port = parentPort as NonNullable<typeof parentPort>
  const data = (workerData as { boards: BoardWorkerData }).boards
  const cpuMs = () => {
    const u = process.threadCpuUsage()
    return (u.user + u.system) / 1000
  }
  const { getHeapStatistics } = await import('node:v8')
  const boards = new AppBoards((m, transfer) => port.postMessage(m, transfer), {
    ...data,
    cpuMs,
    nowMs: () => performance.now(),
  })
  port.on('message', (m: ToBoardWorker) => boards.handle(m))
  setInterval(
    () =>
      port.postMessage({
        t: 'usage',
        heapBytes: getHeapStatistics().used_heap_size,
        cpuMs: cpuMs(),
      }),
    1000,
  ).unref()
  port.postMessage({ t: 'ready' } satisfies FromBoardWorker)
}

export type { CpuBudgets }
