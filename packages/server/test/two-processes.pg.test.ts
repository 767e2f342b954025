// Two server processes on one PostgreSQL share the timers and the callbacks:
// no timer fires twice, no task is transitioned twice, no event is sent by
// both at once. Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { TestReceiver } from '../src/delivery/test-receiver.ts'
import {
  assertLongPauseOutbox,
  type ServerProcess,
  startPausedTasks,
  startServer,
  suiteSchema,
  tiwClient,
  waitFinished,
} from './server-process.ts'

let receiver: TestReceiver
const servers: ServerProcess[] = []

after(async () => {
  for (const s of servers) await s.kill()
  await receiver?.close()
})
// Dropped after the servers are gone.
const schema = suiteSchema('e2e')

test('two processes on one PostgreSQL fire each timer once and send each callback once', async () => {
  const env = {
    DATABASE_URL: schema.databaseUrl,
    ONLINE_RECORD_PAUSE_WARNING_S: '2',
    ONLINE_RECORD_PAUSE_STOP_S: '4',
    ONLINE_RECORD_TIMER_INTERVAL_MS: '50',
  }
  // Started together: the migration's advisory lock lets one create the schema.
  servers.push(...(await Promise.all([startServer(env), startServer(env)])))
  const clients = servers.map((s) => tiwClient(s.url))
  receiver = await TestReceiver.start()
  // Slow answers, so that a second sender of the same event would overlap.
  receiver.answer = () => ({ delayMs: 10 })
  await clients[0]?.SetOnlineRecordCallback({ SdkAppId: 1400000001, Callback: receiver.url })
  const taskIds = await startPausedTasks(clients, 8000, 20)
  await waitFinished(clients[0] as (typeof clients)[number], taskIds)
  await receiver.waitFor(() => receiver.ids().size === 100, 20_000, '100 callbacks')
  for (const s of servers) assert.equal(await s.stop(), 0)

  await assertLongPauseOutbox(schema.admin(), taskIds, `${schema.name}.events`)
  assert.equal(receiver.maxConcurrentPerId, 1)
  assert.equal(receiver.received.length, 100, 'each callback once')
  for (const taskId of taskIds) {
    assert.deepEqual(
      receiver.received.filter((r) => r.taskId === taskId).map((r) => r.seq),
      [1, 2, 3, 4, 5],
    )
  }
})
