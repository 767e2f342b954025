// Chaos for delivery: a real server process is SIGKILLed several times while
// it delivers a burst of 2,000 events across 200 tasks, and restarted each
// time. Afterwards the receiver must hold every event, each task's events in
// order; duplicates (attempts in flight at a kill) are counted and reported.
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { Apps } from '../src/apps/apps.ts'
import { systemClock } from '../src/clock.ts'
import type { TestReceiver } from '../src/delivery/test-receiver.ts'
import type { Db } from '../src/store/db.ts'
import { type ServerProcess, startServer, TEST_APP } from './server-process.ts'

export const TASKS = 200
export const EVENTS_PER_TASK = 10
const KILL_AT = [300, 900, 1500]
/** ONLINE_RECORD_CALLBACK_CONCURRENCY of the server processes. */
const CONCURRENCY = 32

/** Writes the events of tasks [from, to) into the outbox, as the engine would. */
export async function seedEvents(db: Db, from: number, to: number): Promise<void> {
  const now = systemClock.now()
  await db.query(
    `insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s, event_data,
       created_at_ms, next_attempt_ms)
     select 'evt_' || md5(t || '/' || s), $1, 'chaos' || lpad(t::text, 15, '0'), s,
       'OnlineRecordStarted', $2,
       json_build_object('TaskId', 'chaos' || lpad(t::text, 15, '0'), 'RoomId', t,
         'RecordUserId', 'tic_record_user_' || t || '_c'),
       $3, $3
     from generate_series($4::int4, $5::int4 - 1) t, generate_series(1, $6::int4) s`,
    [TEST_APP.sdkAppId, Math.floor(now / 1000), now, from, to, EVENTS_PER_TASK],
  )
}

/** The app of the test processes, with its callbacks going to `url`. */
export async function prepareApp(db: Db, url: string): Promise<void> {
  const apps = new Apps(db, systemClock)
  await apps.upsert(TEST_APP)
  await apps.setCallback(TEST_APP.sdkAppId, url)
  await apps.setCallbackKey(TEST_APP.sdkAppId, 'chaos-key')
}

export interface ChaosOptions {
  env: Record<string, string>
  /** Started once the first process has been killed; runs on while processes come and go. */
  afterFirstKill?: () => Promise<void>
}

export async function runChaos(t: TestContext, receiver: TestReceiver, o: ChaosOptions) {
  const env = {
    ...o.env,
    ONLINE_RECORD_CALLBACK_CONCURRENCY: String(CONCURRENCY),
    // A killed process's attempts are taken over once their lease ends.
    ONLINE_RECORD_CALLBACK_TIMEOUT_MS: '2000',
    ONLINE_RECORD_CALLBACK_LEASE_MARGIN_MS: '500',
    ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
  }
  const total = TASKS * EVENTS_PER_TASK
  // Answers take 0–3 ms, so attempts overlap and some are in flight at each kill.
  receiver.answer = () => ({ delayMs: Math.floor(Math.random() * 4) })
  let server: ServerProcess = await startServer(env)
  let kills = 0
  let writing: Promise<void> | undefined
  try {
    for (const at of KILL_AT) {
      await receiver.waitFor(() => receiver.ids().size >= at, 60_000, `${at} events`)
      await server.kill()
      kills++
      if (kills === 1) writing = o.afterFirstKill?.()
      server = await startServer(env)
    }
    await writing
    await receiver.waitFor(() => receiver.ids().size === total, 120_000, 'every event')
    assert.equal(await server.stop(), 0)
  } finally {
    await server.kill()
  }

  const byTask = new Map<string, number[]>()
  for (const r of receiver.received) {
    const seqs = byTask.get(r.taskId) ?? []
    seqs.push(r.seq)
    byTask.set(r.taskId, seqs)
  }
  assert.equal(byTask.size, TASKS)
  for (const [task, seqs] of byTask) {
    // In order: a repeat is only of the event just sent again, never a step back.
    for (let i = 1; i < seqs.length; i++) {
      assert.ok((seqs[i] as number) >= (seqs[i - 1] as number), `${task} order: ${seqs.join(',')}`)
    }
    assert.deepEqual(
      [...new Set(seqs)],
      Array.from({ length: EVENTS_PER_TASK }, (_, i) => i + 1),
    )
  }
  const duplicates = receiver.received.length - total
  t.diagnostic(
    `${total} events, ${kills} SIGKILLs: ${receiver.received.length} deliveries, ${duplicates} duplicates (attempts in flight at a kill)`,
  )
  // Only events claimed and not yet settled at a kill may repeat: at most
  // twice the concurrency per kill.
  assert.ok(duplicates <= kills * 2 * CONCURRENCY, `${duplicates} duplicates`)
  return { duplicates, kills }
}
