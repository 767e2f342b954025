// A budget as a token bucket: it holds up to `burst`, refills at `perSecond`,
// and spending may take it below zero (work is measured after it is done,
// CPU time say): a bucket in debt refuses what comes next until it has
// refilled. Time is given by the caller (the injected clock, or a thread's).

export interface Rate {
  /** Units a second, sustained. */
  perSecond: number
  /** Units at once (the bucket's size). */
  burst: number
}

export class Bucket {
  #tokens: number
  #atMs: number
  readonly rate: Rate

  constructor(rate: Rate, nowMs: number) {
    this.rate = rate
    this.#tokens = rate.burst
    this.#atMs = nowMs
  }

  /** What is left now (negative: in debt). */
  left(nowMs: number): number {
    this.#tokens = Math.min(
      this.rate.burst,
      this.#tokens + (Math.max(0, nowMs - this.#atMs) * this.rate.perSecond) / 1000,
    )
    this.#atMs = Math.max(this.#atMs, nowMs)
    return this.#tokens
  }

  /** Spends `units` (into debt if need be); returns what is left. */
  spend(units: number, nowMs: number): number {
    this.left(nowMs)
    this.#tokens -= units
    return this.#tokens
  }

  /** Takes `units` only if there are that many; false (nothing taken) otherwise. */
  take(units: number, nowMs: number): boolean {
    if (this.left(nowMs) < units) return false
    this.#tokens -= units
    return true
  }

  /** How long until it is out of debt (0 when it is not in debt), ms. */
  debtMs(nowMs: number): number {
    const left = this.left(nowMs)
    return left >= 0 ? 0 : Math.ceil((-left * 1000) / this.rate.perSecond)
  }
}
