import type { Clock } from '../clock.ts'

export interface RateLimit {
  /** Requests a second, sustained; 0: no limit. */
  perSecond: number
  /** Requests at once above that (the bucket's size). */
  burst: number
}

/** The default for a school: 40 classes starting in the same second pass, and many more. */
export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 200, burst: 500 }

/**
 * A token bucket per key (an app): it holds up to `burst` tokens, refills at
 * `perSecond`, and each request takes one. Per process: with several API
 * processes behind a balancer, each applies the limit to what it receives.
 */
export class RateLimiter {
  readonly #clock: Clock
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>()

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** Counts one request of `key` under `limit`; false when the bucket is empty. */
  take(key: string, limit: RateLimit): boolean {
    if (limit.perSecond <= 0) return true
    const now = this.#clock.now()
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      // Bounded: a bucket idle for a minute is full again under any limit
      // of at least its burst a minute, so forgetting it loses nothing.
      if (this.#buckets.size > 10_000) {
        for (const [k, b] of this.#buckets) if (now - b.atMs > 60_000) this.#buckets.delete(k)
      }
      bucket = { tokens: limit.burst, atMs: now }
      this.#buckets.set(key, bucket)
    }
    bucket.tokens = Math.min(
      limit.burst,
      bucket.tokens + (Math.max(0, now - bucket.atMs) * limit.perSecond) / 1000,
    )
    bucket.atMs = now
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }
}
