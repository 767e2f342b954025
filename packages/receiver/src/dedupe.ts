import type { CallbackEvent } from '@online-record/protocol'

/**
 * Remembers which callbacks were handled, so a redelivery (delivery is at least
 * once) does not run the handlers twice. `claim` must be atomic: it returns true
 * for the first caller of a key within `ttlSeconds`, false after. `release`
 * forgets a key whose handling failed, so the sender's retry runs it again.
 *
 * Redis: `claim` = `SET key 1 NX EX ttl` (true when the reply is OK),
 * `release` = `DEL key`. SQL: a table with a primary key on `key`;
 * `claim` = `INSERT … ON CONFLICT DO NOTHING` (true when a row was inserted),
 * `release` = `DELETE`. See docs/receiver.md.
 */
export interface DedupeStore {
  claim(key: string, ttlSeconds: number): boolean | Promise<boolean>
  release(key: string): void | Promise<void>
}

/**
 * The key of a callback: its `webhook-id` when the sender gives one (stable over
 * retries), else TaskId + EventType + Timestamp, which TIW keeps over retries too.
 */
export function dedupeKey(event: CallbackEvent, id: string | undefined): string {
  return id ?? `${event.EventData.TaskId}:${event.EventType}:${event.Timestamp}`
}

/** An in-process LRU of at most `maxEntries` keys: enough for one receiver process. */
export class MemoryDedupeStore implements DedupeStore {
  readonly #entries = new Map<string, number>()
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000
    this.#now = options.now ?? Date.now
  }

  claim(key: string, ttlSeconds: number): boolean {
    const now = this.#now()
    const expires = this.#entries.get(key)
    if (expires !== undefined && expires > now) return false
    this.#entries.delete(key)
    this.#entries.set(key, now + ttlSeconds * 1000)
    if (this.#entries.size > this.#maxEntries) {
      // Maps iterate in insertion order: the first key is the least recent.
      this.#entries.delete(this.#entries.keys().next().value as string)
    }
    return true
  }

  release(key: string): void {
    this.#entries.delete(key)
  }

  get size(): number {
    return this.#entries.size
  }
}
