import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ManualClock } from '../clock.ts'
import { pgliteFactory, postgresFactory, type TestDbFactory } from '../store/test-db.ts'
import { DatabaseLedger, MemoryLedger, pruneSignatures } from './signature-ledger.ts'

test('memory: a signature keeps its first action until it expires', async () => {
  const ledger = new MemoryLedger()
  assert.equal(await ledger.record('s1', 'PauseOnlineRecord', 2000, 1000), 'PauseOnlineRecord')
  assert.equal(await ledger.record('s1', 'StopOnlineRecord', 2000, 1500), 'PauseOnlineRecord')
  assert.equal(await ledger.record('s1', 'PauseOnlineRecord', 2000, 1999), 'PauseOnlineRecord')
  // Past its window the timestamp check refuses the request anyway; the entry may go.
  assert.equal(await ledger.record('s1', 'StopOnlineRecord', 2000, 2000), 'StopOnlineRecord')
})

const factories: TestDbFactory[] = [pgliteFactory]
if (process.env.TEST_DATABASE_URL) factories.push(postgresFactory(process.env.TEST_DATABASE_URL))
for (const factory of factories) {
  test(`${factory.name}: two processes share the ledger, and expired rows are pruned`, async () => {
    const clock = new ManualClock()
    const store = await factory.open(clock)
    try {
      const other = factory.name === 'PGlite' ? store.db : await store.reopen()
      const a = new DatabaseLedger(store.db)
      const b = new DatabaseLedger(other)
      assert.equal(await a.record('sig', 'PauseOnlineRecord', 5000, 1000), 'PauseOnlineRecord')
      assert.equal(await b.record('sig', 'StopOnlineRecord', 5000, 1001), 'PauseOnlineRecord')
      assert.equal(await b.record('sig', 'StopOnlineRecord', 5000, 1002), 'PauseOnlineRecord')
      await pruneSignatures(store.db, 5000)
      const left = await store.db.query('select signature from api_signatures')
      assert.equal(left.length, store.db.dialect === 'postgres' ? 0 : 1)
    } finally {
      await store.dispose()
    }
  })
}
