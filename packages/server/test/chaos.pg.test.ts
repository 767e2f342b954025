// Delivery survives SIGKILLs of a server process on PostgreSQL; half of the
// 2,000 events are written while processes come and go. Runs when
// TEST_DATABASE_URL is set.
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import { systemClock } from '../src/clock.ts'
import { TestReceiver } from '../src/delivery/test-receiver.ts'
import { type Db, openDb } from '../src/store/db.ts'
import { migrate } from '../src/store/migrations.ts'
import { prepareApp, runChaos, seedEvents, TASKS } from './chaos.ts'

const base = process.env.TEST_DATABASE_URL as string
const schema = `chaos_${randomBytes(6).toString('hex')}`
let admin: Db | undefined
let db: Db | undefined
let receiver: TestReceiver | undefined
after(async () => {
  await receiver?.close()
  await db?.close()
  await admin?.exec(`drop schema ${schema} cascade`)
  await admin?.close()
})

test('PostgreSQL: SIGKILLs during a burst of 2,000 callbacks lose none and keep each task in order', async (t) => {
  admin = await openDb({ databaseUrl: base, poolSize: 1 })
  await admin.exec(`create schema ${schema}`)
  db = await openDb({ databaseUrl: base, schema, poolSize: 2 })
  await migrate(db, systemClock)
  receiver = await TestReceiver.start()
  await prepareApp(db, receiver.url)
  await seedEvents(db, 0, TASKS / 2)
  const url = new URL(base)
  url.searchParams.set('options', `-c search_path=${schema}`)
  await runChaos(t, receiver, {
    env: { DATABASE_URL: url.toString() },
    // The rest is written in ten bursts while processes are killed and started.
    afterFirstKill: async () => {
      for (let t = TASKS / 2; t < TASKS; t += TASKS / 20) {
        await seedEvents(db as Db, t, t + TASKS / 20)
        await new Promise((r) => setTimeout(r, 150))
      }
    },
  })
})
