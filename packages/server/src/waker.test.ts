import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Waker } from './waker.ts'

test('a wake ends a sleep at once, and one before the sleep is remembered until reset', async () => {
  const waker = new Waker()
  const started = performance.now()
  const sleeping = waker.sleep(60_000)
  waker.wake()
  await sleeping
  assert.ok(performance.now() - started < 1000, 'ended by the wake')
  assert.equal(waker.woken, true)
  waker.reset()
  assert.equal(waker.woken, false)
  waker.wake()
  assert.equal(waker.woken, true, 'a loop sees it and does not sleep')
})
