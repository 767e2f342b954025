import type { Clock } from '../clock.ts'

/**
 * Fixed one-second windows per key (app + action): at most `perSecond` requests
 * in each. Per process; with several API processes each applies the limit.
 */
export class RateLimiter {
  readonly #perSecond: number
  readonly #clock: Clock
  readonly #windows = new Map<string, { second: number; count: number }>()

  constructor(perSecond: number, clock: Clock) {
    this.#perSecond = perSecond
    this.#clock = clock
  }

  /** Counts one request; false when the key is over its limit in this second. */
  take(key: string): boolean {
    const second = Math.floor(this.#clock.now() / 1000)
    const window = this.#windows.get(key)
    if (window === undefined || window.second !== second) {
      if (this.#windows.size > 10_000) this.#windows.clear()
      this.#windows.set(key, { second, count: 1 })
      return true
    }
    window.count++
    return window.count <= this.#perSecond
  }
}
