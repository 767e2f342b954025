// Messages between the service's main thread and a board worker: a worker
// thread per app that holds that app's boards (their Yjs documents, the
// model's check, awareness) so that what one app's boards cost in CPU and
// memory is spent on that app's thread under that app's heap limit, never on
// the thread that serves the API, the ingests and the other apps.
//
// The main thread keeps the WebSockets, the store and each board's bytes (the
// state the worker last encoded and every update taken since, framed as
// y-protocols messages), so it answers a client's sync request by sending
// bytes it already has; the worker checks and applies, and says what was
// taken, to whom to relay, whom to close and what to store.

/** A connection's number, the main thread's; unique within the process. */
export type ConnId = number

export type ToBoardWorker =
  /** Builds a board from its stored parts (a snapshot and updates, in order). */
  | { t: 'open'; board: string; parts: Uint8Array[] }
  /** The board left memory here (no more clients). */
  | { t: 'drop'; board: string }
  /** A client came (the worker sends it its sync step 1 and the awareness). */
  | { t: 'join'; board: string; conn: ConnId }
  /** A client went: its awareness states go. */
  | { t: 'leave'; board: string; conn: ConnId }
  /** A y-protocols message of a client other than sync step 1 (the main thread answers those). */
  | { t: 'message'; board: string; conn: ConnId; data: Uint8Array; atMs: number }
  /** Updates another process took (already checked), or the board's stored rows again. */
  | { t: 'remote'; board: string; updates: Uint8Array[] }
  /** The state of a list of updates, as one (a snapshot). */
  | { t: 'merge'; id: number; updates: Uint8Array[] }
  /** Sends what is waiting to be stored now, then `flushed`. */
  | { t: 'flush'; id: number }

export type FromBoardWorker =
  | { t: 'ready' }
  /** The board is built: its bytes, and the state vector to tell clients. */
  | { t: 'opened'; board: string; state: Uint8Array; stateVector: Uint8Array; cpuMs: number }
  | { t: 'openFailed'; board: string; reason: string }
  /**
   * An update the board took: relayed to every client but `conn` (all, for a
   * remote one), and part of the board's bytes from now on.
   */
  | { t: 'took'; board: string; conn: ConnId | null; update: Uint8Array; atMs: number }
  /** The board's state encoded anew: it covers the first `covers` updates taken since the last. */
  | { t: 'state'; board: string; state: Uint8Array; stateVector: Uint8Array; covers: number }
  /** Updates of a board taken here, merged, to be stored with the time of the last of them. */
  | { t: 'store'; board: string; update: Uint8Array; atMs: number; count: number }
  /** To one client. */
  | { t: 'send'; conn: ConnId; data: Uint8Array }
  /** To every client of a board. */
  | { t: 'broadcast'; board: string; data: Uint8Array }
  /**
   * Close a client with a code and reason; `cooldown`: its user's refused
   * update (it is kept off the board for a while).
   */
  | { t: 'close'; conn: ConnId; code: number; reason: string; cooldown?: boolean }
  /** The board holds changes whose base it lacks: read its stored rows again. */
  | { t: 'incomplete'; board: string }
  | { t: 'merged'; id: number; state: Uint8Array }
  | { t: 'flushed'; id: number }
  /** Thread CPU and heap now, for the budgets and metrics. */
  | { t: 'usage'; heapBytes: number; cpuMs: number }

/** What the main thread tells a worker at its start. */
export interface BoardWorkerData {
  /** Accepted updates of a board are stored at most this often, merged. */
  storeEveryMs: number
  budget: CpuBudgets
}

/** CPU budgets of a board worker: thread CPU ms a second sustained, and at once. */
export interface CpuBudgets {
  connection: { perSecond: number; burst: number }
  board: { perSecond: number; burst: number }
}

/** Close codes (4000–4999 are the application's). */
export const CLOSE = {
  refused: 4401,
  badUpdate: 4400,
  full: 1013,
  tooSlow: 4408,
  /** Over a budget or a quota: try again later. */
  overBudget: 4429,
  /** The app's board worker ended (over its memory, or it failed). */
  workerFailed: 1011,
} as const
