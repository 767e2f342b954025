// TC3 signs the body, the host and the content type, but the official SDKs do
// not sign X-TC-Action: a captured request could be replayed within the skew
// window with another action in that header (a signed Pause sent again as a
// Stop). Identical requests in one second legitimately share a signature, so
// a signature is remembered with its action until its timestamp leaves the
// window, and one seen before with a different action is refused. On
// PostgreSQL the ledger is a table, so every API process sees every signature.
import type { Db } from '../store/db.ts'

export interface SignatureLedger {
  /**
   * Records that `signature` was used for `action`, valid until `expiresMs`.
   * Returns the action it was first seen with (`action` itself when new).
   */
  record(signature: string, action: string, expiresMs: number, nowMs: number): Promise<string>
}

/** At most this many signatures are kept in memory; older ones are forgotten first. */
const MEMORY_LIMIT = 200_000

/** One process's memory: the ledger when the store is this process's alone (PGlite). */
export class MemoryLedger implements SignatureLedger {
  readonly #seen = new Map<string, { action: string; expiresMs: number }>()

  async record(signature: string, action: string, expiresMs: number, nowMs: number) {
    const seen = this.lookup(signature, nowMs)
    if (seen !== undefined) return seen
    this.remember(signature, action, expiresMs, nowMs)
    return action
  }

  /** The action `signature` was seen with, if it is still in the window. */
  lookup(signature: string, nowMs: number): string | undefined {
    const seen = this.#seen.get(signature)
    return seen !== undefined && seen.expiresMs > nowMs ? seen.action : undefined
  }

  remember(signature: string, action: string, expiresMs: number, nowMs: number): void {
    if (this.#seen.size >= MEMORY_LIMIT) this.#prune(nowMs)
    this.#seen.set(signature, { action, expiresMs })
  }

  /** Drops expired entries; if none were, the oldest half (insertion order). */
  #prune(nowMs: number): void {
    for (const [signature, seen] of this.#seen) {
      if (seen.expiresMs <= nowMs) this.#seen.delete(signature)
    }
    if (this.#seen.size < MEMORY_LIMIT) return
    let drop = this.#seen.size / 2
    for (const signature of this.#seen.keys()) {
      if (drop-- <= 0) break
      this.#seen.delete(signature)
    }
  }
}

/**
 * The table `api_signatures`, shared by the processes of one PostgreSQL. A
 * signature this process has already recorded is answered from memory: a
 * retried identical request costs no round trip.
 */
export class DatabaseLedger implements SignatureLedger {
  readonly #db: Db
  readonly #memory = new MemoryLedger()

  constructor(db: Db) {
    this.#db = db
  }

  async record(signature: string, action: string, expiresMs: number, nowMs: number) {
    const seen = this.#memory.lookup(signature, nowMs)
    if (seen !== undefined) return seen
    const [row] = await this.#db.query<{ action: string }>(
      `insert into api_signatures (signature, action, expires_ms) values ($1, $2, $3)
       on conflict (signature) do update set expires_ms = greatest(api_signatures.expires_ms, excluded.expires_ms)
       returning action`,
      [signature, action, expiresMs],
    )
    const first = row?.action ?? action
    this.#memory.remember(signature, first, expiresMs, nowMs)
    return first
  }
}

/** Deletes the signatures whose timestamps have left the window. */
export async function pruneSignatures(db: Db, nowMs: number): Promise<void> {
  if (db.dialect === 'postgres')
    await db.query('delete from api_signatures where expires_ms <= $1', [nowMs])
}
