import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import {
  DEFAULT_RETRY_SCHEDULE_S,
  MAX_RETRY_AFTER_S,
  parseRetrySchedule,
  retryAfterMs,
  retryDelayMs,
} from './schedule.ts'

describe('retry schedule', () => {
  test('the default spans about two days over 12 attempts', () => {
    const total = DEFAULT_RETRY_SCHEDULE_S.reduce((a, b) => a + b, 0)
    assert.equal(DEFAULT_RETRY_SCHEDULE_S.length + 1, 12)
    assert.ok(total > 44 * 3600 && total < 52 * 3600, `${total / 3600} h`)
  })

  test('delays have ±20% jitter and end after the last entry', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 11 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (n, r) => {
          const base = (DEFAULT_RETRY_SCHEDULE_S[n - 1] as number) * 1000
          const d = retryDelayMs(DEFAULT_RETRY_SCHEDULE_S, n, () => r) as number
          return d >= Math.floor(base * 0.8) && d <= Math.ceil(base * 1.2)
        },
      ),
    )
    assert.equal(retryDelayMs([1, 2], 3), undefined)
    assert.equal(
      retryDelayMs([1, 2], 2, () => 0.5),
      2000,
    )
  })

  test('parses the setting and names what is wrong', () => {
    assert.deepEqual(parseRetrySchedule(' 1, 2.5 ,60'), [1, 2.5, 60])
    assert.deepEqual(parseRetrySchedule('0'), [0])
    for (const bad of ['', '1,,2', '-1', 'x', '1;2']) {
      assert.throws(() => parseRetrySchedule(bad), /comma-separated list of seconds/, bad)
    }
    assert.throws(() => parseRetrySchedule('700000'), /at most 7 days/)
  })

  test('Retry-After: seconds or an HTTP date, bounded', () => {
    const now = Date.UTC(2026, 10, 25, 12, 0, 0)
    assert.equal(retryAfterMs('7', now), 7000)
    assert.equal(retryAfterMs('0', now), 1000)
    assert.equal(retryAfterMs(new Date(now + 90_000).toUTCString(), now), 90_000)
    assert.equal(retryAfterMs(new Date(now - 90_000).toUTCString(), now), 1000)
    assert.equal(retryAfterMs('999999999', now), MAX_RETRY_AFTER_S * 1000)
    assert.equal(retryAfterMs('soon', now), undefined)
    assert.equal(retryAfterMs(undefined, now), undefined)
  })
})
