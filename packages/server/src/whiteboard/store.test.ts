// The board store on PGlite: updates kept with their times, snapshots that
// hold exactly what they cover, and what a replay of a span reads.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import * as Y from 'yjs'
import { ManualClock } from '../clock.ts'
import { pgliteFactory } from '../store/test-db.ts'
import { mergeUpdates } from './board-worker.ts'
import { BoardStore } from './store.ts'

const clock = new ManualClock(Date.UTC(2026, 11, 2))
let handle: Awaited<ReturnType<typeof pgliteFactory.open>>
before(async () => {
  handle = await pgliteFactory.open(clock)
})
after(() => handle?.dispose())

/** An update that sets `key` to `value` in the board's meta. */
function change(doc: Y.Doc, key: string, value: number): Uint8Array {
  const sv = Y.encodeStateVector(doc)
  doc.getMap('meta').set(key, value)
  return Y.encodeStateAsUpdate(doc, sv)
}

const state = (updates: Uint8Array[]) => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  return doc.getMap('meta').toJSON()
}

test('a snapshot holds exactly the updates it covers; load and replay read it and what follows', async () => {
  const store = new BoardStore(handle.db, 'me')
  const key = { sdkAppId: 1, groupId: 'g1' }
  const doc = new Y.Doc()
  const t0 = clock.now()
  for (let i = 0; i < 10; i++) {
    await store.append([{ ...key, atMs: t0 + i * 1000, update: change(doc, `k${i}`, i) }])
  }
  await store.append([
    { sdkAppId: 2, groupId: 'g1', atMs: t0, update: change(new Y.Doc(), 'other', 1) },
  ])
  // Updates older than t0 + 5 s: k0..k4.
  assert.equal(await store.snapshot(key, t0 + 5000, mergeUpdates), 5)
  assert.equal(await store.snapshot(key, t0 + 5000, mergeUpdates), 0, 'nothing new to cover')
  const loaded = await store.load(key)
  assert.ok(loaded.snapshot)
  assert.equal(loaded.updates.length, 5)
  assert.deepEqual(
    Object.keys(state([loaded.snapshot, ...loaded.updates.map((u) => u.update)])).length,
    10,
  )
  // A replay from t0 + 6.5 s: the snapshot and k5, k6 before; k7, k8 during (to t0 + 8 s).
  const h = await store.history(key, t0 + 6500, t0 + 8000)
  assert.deepEqual(Object.keys(state(h.before)).sort(), ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6'])
  assert.deepEqual(
    h.during.map(
      (_, i) =>
        Object.keys(state([...h.before, ...h.during.slice(0, i + 1).map((u) => u.update)])).length,
    ),
    [8, 9],
  )
  // A replay from before the snapshot's time does not start from it.
  const early = await store.history(key, t0 + 2500, t0 + 3000)
  assert.deepEqual(Object.keys(state(early.before)).sort(), ['k0', 'k1', 'k2'])
  assert.equal(early.during.length, 1)
  assert.equal(await store.changedDuring(key, t0 + 9000, t0 + 20_000), false)
  assert.equal(await store.changedDuring(key, t0 + 8500, t0 + 20_000), true)
})
