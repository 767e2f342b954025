import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ManualClock } from '../clock.ts'
import { pgliteFactory, postgresFactory, type TestDbFactory } from '../store/test-db.ts'
import {
  DatabaseLedger,
  MemoryLedger,
  pruneSignatures,
  type SignatureLedger,
} from './signature-ledger.ts'

const PAUSE = 'PauseOnlineRecord'
const STOP = 'StopOnlineRecord'
const RESUME = 'ResumeOnlineRecord'

/** The rules every ledger keeps, `a` and `b` being two API processes of one deployment. */
async function rules(a: SignatureLedger, b: SignatureLedger): Promise<void> {
  // Applied: held by its action for others, free for the same action.
  const pause = await a.claim('s1', PAUSE, 5000, 1000)
  assert.deepEqual([pause.action, pause.token !== undefined], [PAUSE, true])
  await a.confirm('s1', PAUSE, 5000, 1001)
  assert.equal((await b.claim('s1', STOP, 5000, 1002)).action, PAUSE)
  assert.equal((await a.claim('s1', STOP, 5000, 1002)).action, PAUSE)
  const again = await b.claim('s1', PAUSE, 5000, 1003)
  assert.deepEqual([again.action, again.token], [PAUSE, undefined])

  // Refused: let go, so another change of the same body in that second is taken.
  const resume = await a.claim('s2', RESUME, 5000, 1000)
  assert.equal(resume.action, RESUME)
  // While it runs, it holds the signature against another action.
  assert.equal((await b.claim('s2', PAUSE, 5000, 1001)).action, RESUME)
  await a.release('s2', resume)
  const next = await b.claim('s2', PAUSE, 5000, 1002)
  assert.equal(next.action, PAUSE)
  await b.confirm('s2', PAUSE, 5000, 1003)
  assert.equal((await a.claim('s2', STOP, 5000, 1004)).action, PAUSE)

  // Identical twins: the one that took the claim is refused, the other applied.
  const owner = await a.claim('s3', PAUSE, 5000, 1000)
  const twin = await b.claim('s3', PAUSE, 5000, 1000)
  assert.deepEqual([twin.action, twin.token], [PAUSE, undefined])
  await b.confirm('s3', PAUSE, 5000, 1001)
  await a.release('s3', owner)
  assert.equal((await a.claim('s3', STOP, 5000, 1002)).action, PAUSE, 'still held: one applied')
  // The other order: the owner let go first, then the twin applied.
  const owner2 = await a.claim('s4', PAUSE, 5000, 1000)
  const twin2 = await b.claim('s4', PAUSE, 5000, 1000)
  await a.release('s4', owner2)
  await b.confirm('s4', PAUSE, 5000, 1001)
  assert.equal((await a.claim('s4', STOP, 5000, 1002)).action, PAUSE)
  assert.equal(twin2.token, undefined)
}

test('memory: a signature belongs to the change it applied; a refused one lets it go', async () => {
  const ledger = new MemoryLedger()
  await rules(ledger, ledger)
  // Past its window the timestamp check refuses the request anyway; the entry may go.
  assert.equal((await ledger.claim('s1', STOP, 6000, 5000)).action, STOP)
})

const factories: TestDbFactory[] = [pgliteFactory]
if (process.env.TEST_DATABASE_URL) factories.push(postgresFactory(process.env.TEST_DATABASE_URL))
for (const factory of factories) {
  test(`${factory.name}: two processes share the ledger, and expired rows are pruned`, async () => {
    const clock = new ManualClock()
    const store = await factory.open(clock)
    try {
      const other = factory.name === 'PGlite' ? store.db : await store.reopen()
      await rules(new DatabaseLedger(store.db), new DatabaseLedger(other))
      await pruneSignatures(store.db, 5000)
      const left = await store.db.query('select signature from api_signatures')
      assert.equal(left.length, store.db.dialect === 'postgres' ? 0 : 4)
    } finally {
      await store.dispose()
    }
  })
}
