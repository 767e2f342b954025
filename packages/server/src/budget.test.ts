import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Bucket } from './budget.ts'

test('a bucket: burst at once, refills at its rate, spends into debt and says for how long', () => {
  const b = new Bucket({ perSecond: 10, burst: 20 }, 0)
  assert.equal(b.take(15, 0), true)
  assert.equal(b.take(10, 0), false, 'only 5 left')
  assert.equal(b.left(0), 5)
  assert.equal(b.left(500), 10, '5 back in half a second')
  assert.equal(b.left(60_000), 20, 'never above the burst')
  assert.equal(b.spend(50, 60_000), -30)
  assert.equal(b.debtMs(60_000), 3000)
  assert.equal(b.take(1, 62_000), false, 'still in debt')
  assert.equal(b.debtMs(63_000), 0)
  // Time that goes back (another thread's clock) refills nothing.
  assert.equal(b.left(10_000), 0)
})
