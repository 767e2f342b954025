// When the next attempt at a callback happens: a schedule of delays with
// jitter, or what the receiver asked for with Retry-After.

/**
 * Delays in seconds before attempts 2, 3, …: 5 s, 1 min, 5 min, 30 min, 1 h,
 * 2 h, 4 h, 8 h, 12 h, 12 h, 10 h — 12 attempts over about two days (49.6 h),
 * between Svix's 27.5 h and Standard Webhooks' example of three days.
 */
export const DEFAULT_RETRY_SCHEDULE_S: readonly number[] = [
  5, 60, 300, 1800, 3600, 7200, 14_400, 28_800, 43_200, 43_200, 36_000,
]

/** From an event's creation to its last scheduled attempt (about two days by default). */
export function retryWindowMs(schedule: readonly number[]): number {
  return schedule.reduce((a, b) => a + b, 0) * 1000
}

/** Largest Retry-After honoured: a receiver cannot park an event for longer than a day. */
export const MAX_RETRY_AFTER_S = 86_400

/** Parses `ONLINE_RECORD_CALLBACK_RETRY_S`: comma-separated seconds, each ≥ 0. */
export function parseRetrySchedule(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim())
  if (parts.length === 0 || parts.some((p) => !/^\d+(\.\d+)?$/.test(p))) {
    throw new Error('must be a comma-separated list of seconds, e.g. "5,60,300"')
  }
  const delays = parts.map(Number)
  if (delays.some((d) => d > 7 * 86_400)) throw new Error('a delay may be at most 7 days')
  return delays
}

/**
 * The delay in ms before the attempt after attempt number `attempt` (1-based),
 * or `undefined` when that was the last one. Jitter of ±20% spreads retries of
 * events that failed together, so a recovering receiver is not hit all at once.
 */
export function retryDelayMs(
  schedule: readonly number[],
  attempt: number,
  random: () => number = Math.random,
): number | undefined {
  const base = schedule[attempt - 1]
  if (base === undefined) return undefined
  return Math.round(base * 1000 * (0.8 + 0.4 * random()))
}

/**
 * Retry-After of a 429 or 503 answer, in ms (delta-seconds or an HTTP date),
 * bounded to [1 s, MAX_RETRY_AFTER_S]; `undefined` when absent or unreadable.
 */
export function retryAfterMs(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined
  const text = value.trim()
  let ms: number
  if (/^\d+$/.test(text)) ms = Number(text) * 1000
  else {
    const at = Date.parse(text)
    if (Number.isNaN(at)) return undefined
    ms = at - nowMs
  }
  return Math.min(Math.max(ms, 1000), MAX_RETRY_AFTER_S * 1000)
}
