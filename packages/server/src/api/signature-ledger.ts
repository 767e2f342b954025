// TC3 signs the body, the host and the content type, but the official SDKs do
// not sign X-TC-Action: a captured request could be replayed within the skew
// window with another action in that header (a signed Pause sent again as a
// Stop). Identical requests in one second legitimately share a signature, and
// so do different ones with the same body (Resume, refused because the task
// records, then Pause). So a signature belongs to the first change it
// *applied*: a change request claims it while it runs, keeps it when the
// change is applied and lets it go when the change is refused; a signature
// held by another action is refused. Reads never touch the ledger. On
// PostgreSQL the ledger is a table, so every API process sees every claim.
import { randomBytes } from 'node:crypto'
import type { Db } from '../store/db.ts'

export interface Claim {
  /** The action the signature is held for: this request's own when it may go on. */
  action: string
  /** Set when this request took the signature (it lets it go if its change is refused). */
  token: string | undefined
}

export interface SignatureLedger {
  /** Claims `signature` for `action` until `expiresMs` (when its timestamp leaves the window). */
  claim(signature: string, action: string, expiresMs: number, nowMs: number): Promise<Claim>
  /** The change was refused and nothing changed: a claim this request took is let go. */
  release(signature: string, claim: Claim): Promise<void>
  /** The change was applied: the signature stays with `action` (again, if a refused twin let it go meanwhile). */
  confirm(signature: string, action: string, expiresMs: number, nowMs: number): Promise<void>
}

/** At most this many signatures are kept in memory; older ones are forgotten first. */
const MEMORY_LIMIT = 200_000

const token = () => randomBytes(9).toString('base64url')

/** Signature → action until an expiry, bounded; the memory of one process. */
class Remembered {
  readonly #seen = new Map<string, { action: string; expiresMs: number; token: string }>()

  get(signature: string, nowMs: number) {
    const seen = this.#seen.get(signature)
    return seen !== undefined && seen.expiresMs > nowMs ? seen : undefined
  }

  set(signature: string, action: string, expiresMs: number, nowMs: number, t: string): void {
    if (this.#seen.size >= MEMORY_LIMIT) this.#prune(nowMs)
    this.#seen.set(signature, { action, expiresMs, token: t })
  }

  delete(signature: string, t: string): void {
    if (this.#seen.get(signature)?.token === t) this.#seen.delete(signature)
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

/** One process's memory: the ledger when the store is this process's alone (PGlite). */
export class MemoryLedger implements SignatureLedger {
  readonly #seen = new Remembered()

  async claim(signature: string, action: string, expiresMs: number, nowMs: number) {
    const seen = this.#seen.get(signature, nowMs)
    if (seen !== undefined) return { action: seen.action, token: undefined }
    const t = token()
    this.#seen.set(signature, action, expiresMs, nowMs, t)
    return { action, token: t }
  }

  async release(signature: string, claim: Claim) {
    if (claim.token !== undefined) this.#seen.delete(signature, claim.token)
  }

  async confirm(signature: string, action: string, expiresMs: number, nowMs: number) {
    // A new token: the claim of a refused twin can no longer let it go.
    const held = this.#seen.get(signature, nowMs)
    this.#seen.set(signature, held?.action ?? action, held?.expiresMs ?? expiresMs, nowMs, token())
  }
}

/**
 * The table `api_signatures`, shared by the processes of one PostgreSQL. A
 * signature whose change this process applied is answered from memory: a
 * retried identical request costs no round trip. (Claims are not: another
 * process's claim may still be let go.)
 */
export class DatabaseLedger implements SignatureLedger {
  readonly #db: Db
  readonly #applied = new Remembered()

  constructor(db: Db) {
    this.#db = db
  }

  async claim(signature: string, action: string, expiresMs: number, nowMs: number) {
    const known = this.#applied.get(signature, nowMs)
    if (known !== undefined) return { action: known.action, token: undefined }
    const t = token()
    const [row] = await this.#db.query<{ action: string; claim: string | null }>(
      `insert into api_signatures (signature, action, expires_ms, claim) values ($1, $2, $3, $4)
       on conflict (signature) do update set expires_ms = greatest(api_signatures.expires_ms, excluded.expires_ms)
       returning action, claim`,
      [signature, action, expiresMs, t],
    )
    return { action: row?.action ?? action, token: row?.claim === t ? t : undefined }
  }

  async release(signature: string, claim: Claim) {
    if (claim.token === undefined) return
    await this.#db.query('delete from api_signatures where signature = $1 and claim = $2', [
      signature,
      claim.token,
    ])
  }

  async confirm(signature: string, action: string, expiresMs: number, nowMs: number) {
    const [row] = await this.#db.query<{ action: string }>(
      `insert into api_signatures (signature, action, expires_ms) values ($1, $2, $3)
       on conflict (signature) do update set claim = null returning action`,
      [signature, action, expiresMs],
    )
    this.#applied.set(signature, row?.action ?? action, expiresMs, nowMs, token())
  }
}

/** Deletes the signatures whose timestamps have left the window. */
export async function pruneSignatures(db: Db, nowMs: number): Promise<void> {
  if (db.dialect === 'postgres')
    await db.query('delete from api_signatures where expires_ms <= $1', [nowMs])
}
