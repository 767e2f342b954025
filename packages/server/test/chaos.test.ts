// Delivery survives SIGKILLs of a server process on the embedded store: the
// 2,000 events are in the outbox when the first process starts.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { systemClock } from '../src/clock.ts'
import { TestReceiver } from '../src/delivery/test-receiver.ts'
import { openDb } from '../src/store/db.ts'
import { migrate } from '../src/store/migrations.ts'
import { prepareApp, runChaos, seedEvents, TASKS } from './chaos.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-chaos-'))
let receiver: TestReceiver | undefined
after(async () => {
  await receiver?.close()
  rmSync(dir, { recursive: true, force: true })
})

test('PGlite: SIGKILLs during a burst of 2,000 callbacks lose none and keep each task in order', async (t) => {
  receiver = await TestReceiver.start()
  const db = await openDb({ dataDir: dir })
  await migrate(db, systemClock)
  await prepareApp(db, receiver.url)
  await seedEvents(db, 0, TASKS)
  await db.close()
  await runChaos(t, receiver, { env: { ONLINE_RECORD_DATA_DIR: dir } })
})
