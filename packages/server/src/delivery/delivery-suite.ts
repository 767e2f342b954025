// Callback delivery against a real HTTP receiver, run on PGlite
// (delivery.test.ts) and, with TEST_DATABASE_URL, on PostgreSQL
// (delivery.pg.test.ts). The clock is moved; only HTTP round trips are real.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, beforeEach, describe, test } from 'node:test'
import { type EventType, eventSchemas, verifyWebhook } from '@online-record/protocol'
import { type App, Apps } from '../apps/apps.ts'
import { genUserSig } from '../apps/usersig.ts'
import { ManualClock } from '../clock.ts'
import { TaskEngine } from '../engine/engine.ts'
import { SignalingOnlyRecorder } from '../engine/ports.ts'
import { PostJobs } from '../engine/post-jobs.ts'
import type { Db } from '../store/db.ts'
import { vacuumAnalyze } from '../store/maintenance.ts'
import type { TestDbFactory } from '../store/test-db.ts'
import { type DeliverySettings, Dispatcher } from './dispatcher.ts'
import { getCallback, listCallbacks, resendCallbacks } from './outbox.ts'
import { assertSeedCallback, TestReceiver } from './test-receiver.ts'

const MIN = 60_000
const KEY = 'Xz4ZgayTr7rMgWQrH'

export function deliverySuite(factory: TestDbFactory): void {
  describe(`callback delivery on ${factory.name}`, () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 9, 0, 0))
    let handle: Awaited<ReturnType<TestDbFactory['open']>>
    let db: Db
    let apps: Apps
    let engine: TaskEngine
    let receiver: TestReceiver
    let nextApp = 1400000100
    let room = 5000
    const dispatchers: Dispatcher[] = []

    before(async () => {
      handle = await factory.open(clock)
      db = handle.db
      apps = new Apps(db, clock)
      engine = new TaskEngine({
        db,
        clock,
        recorder: new SignalingOnlyRecorder(),
        // The retry window of the schedule below: 10 + 60 + 300 s.
        settings: { parkWithoutCallbackMs: 370_000 },
      })
      receiver = await TestReceiver.start()
    })
    after(async () => {
      for (const d of dispatchers) await d.close().catch(() => {})
      await receiver.close()
      await handle.dispose()
    })
    beforeEach(() => {
      receiver.received.length = 0
      receiver.answer = () => ({})
      receiver.maxConcurrent = 0
      receiver.maxConcurrentPerId = 0
    })

    const dispatcher = (settings: Partial<DeliverySettings> = {}, onDb = db) => {
      const d = new Dispatcher({
        db: onDb,
        clock,
        random: () => 0.5, // jitter factor 1: delays exactly as scheduled
        settings: {
          // A generous timeout: a slow machine must not turn a success into a retry.
          timeoutMs: 5000,
          retryScheduleS: [10, 60, 300],
          // As the service runs: PGlite's store is one process's alone.
          leases: factory.name === 'PGlite' ? 'memory' : 'database',
          ...settings,
        },
      })
      dispatchers.push(d)
      return d
    }
    /** A new app whose callbacks go to the receiver. */
    const newApp = async (callbackKey = KEY, url: string | null = receiver.url) => {
      const app = await apps.create({ sdkAppId: nextApp++ })
      if (url !== null) await apps.setCallback(app.sdkAppId, url)
      await apps.setCallbackKey(app.sdkAppId, callbackKey)
      return (await apps.get(app.sdkAppId)) as App
    }
    const request = (app: App, valid = true) => {
      const roomId = ++room
      const user = `tic_record_user_${roomId}_d`
      return {
        SdkAppId: app.sdkAppId,
        RoomId: roomId,
        RecordUserId: user,
        RecordUserSig: valid
          ? genUserSig(app.sdkAppId, app.userSigKey, user, 86_400, clock.now())
          : 'not-a-usersig',
      }
    }
    /** Start then stop: Started, Stopped, Finished. */
    const startStop = async (app: App) => {
      const taskId = await engine.start(app, request(app))
      await engine.stop(app, taskId)
      await new PostJobs({ db, clock, engine }).runOnce()
      return taskId
    }
    /** Runs passes until one attempts nothing; returns the attempts made. */
    const drain = async (d: Dispatcher) => {
      let total = 0
      for (let n = await d.runOnce(); n > 0; n = await d.runOnce()) total += n
      return total
    }
    const outbox = (taskId: string) =>
      db.query<{ seq: number; state: string; attempts: number; eventId: string }>(
        `select seq, state, attempts, event_id as "eventId" from events where task_id = $1 order by seq`,
        [taskId],
      )
    /** The error logged for the first attempt at a task's first event. */
    const firstAttemptError = async (taskId: string) => {
      const [first] = await outbox(taskId)
      const log = await getCallback(db, clock, first?.eventId as string)
      return log?.attemptLog[0]?.error ?? ''
    }
    const waitUntil = async (check: () => Promise<boolean>, ms = 20_000) => {
      const deadline = Date.now() + ms
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error('timed out')
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    const seqsOf = (taskId: string) =>
      receiver.received.filter((r) => r.taskId === taskId).map((r) => r.seq)

    test('every event type arrives with the seed fields, a valid Sign and Standard Webhooks headers', async () => {
      const app = await newApp()
      const d = dispatcher()
      // A long pause: Started, LongPauseWarning, LongPauseForceStopped, Stopped, Finished.
      const paused = await engine.start(app, request(app))
      await engine.pause(app, paused)
      clock.advance(20 * MIN)
      await engine.runDueTimers()
      clock.advance(10 * MIN)
      await engine.runDueTimers()
      await new PostJobs({ db, clock, engine }).runOnce()
      // A bad RecordUserSig: Finished with Error.
      const failed = await engine.start(app, request(app, false))
      assert.ok((await drain(d)) >= 6)

      const expected: [string, EventType | 'failed'][] = [
        [paused, 'OnlineRecordStarted'],
        [paused, 'OnlineRecordLongPauseWarning'],
        [paused, 'OnlineRecordLongPauseForceStopped'],
        [paused, 'OnlineRecordStopped'],
        [paused, 'OnlineRecordFinished'],
        [failed, 'failed'],
      ]
      for (const [taskId, kind] of expected) {
        const type = kind === 'failed' ? 'OnlineRecordFinished' : kind
        const got = receiver.received.filter(
          (r) => r.taskId === taskId && r.json.EventType === type,
        )
        assert.equal(got.length, 1, `${taskId} ${type}`)
        const r = got[0] as (typeof got)[number]
        // Seed fields, strict schema, and a Sign recomputed independently.
        const expire = assertSeedCallback(r, KEY, kind === 'failed')
        assert.equal(expire, Math.floor(clock.now() / 1000) + 600)
        assert.equal(r.json.Sign, createHash('md5').update(`${KEY}${expire}`).digest('hex'))
        const verified = verifyWebhook(r.body, r.headers as Record<string, string>, {
          secrets: app.webhookSecret,
          now: () => clock.now(),
        })
        assert.match(verified.id, /^evt_[0-9a-f]{32}$/)
        assert.equal(r.headers['content-type'], 'application/json')
        assert.match(String(r.headers['user-agent']), /^online-record/)
        assert.equal(r.attempt, 1)
      }
      assert.deepEqual(seqsOf(paused), [1, 2, 3, 4, 5])
      assert.equal(receiver.ids().size, receiver.received.length)
      for (const e of await outbox(paused)) assert.equal(e.state, 'delivered')
    })

    test('no CallbackKey: no Sign and no ExpireTime', async () => {
      const app = await newApp('')
      const taskId = await startStop(app)
      await drain(dispatcher())
      const mine = receiver.received.filter((r) => r.taskId === taskId)
      assert.equal(mine.length, 3)
      for (const r of mine) {
        assert.equal('Sign' in r.json, false)
        assert.equal('ExpireTime' in r.json, false)
        assert.ok(eventSchemas.Callback.safeParse(r.json).success)
      }
    })

    test('a receiver failing the first attempts gets the event later; later events wait in order', async () => {
      const app = await newApp()
      const d = dispatcher()
      const taskId = await startStop(app)
      const other = await startStop(app)
      receiver.answer = (r, n) =>
        r.taskId === taskId && r.seq === 1 && n < 2
          ? { status: 500, body: `{"error":"busy ${n}"}` }
          : {}
      await drain(d)
      // The failing head blocks its task only; the other task went through.
      assert.deepEqual(seqsOf(taskId), [1])
      assert.deepEqual(seqsOf(other), [1, 2, 3])
      clock.advance(10_000)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 1])
      clock.advance(59_000)
      assert.equal(await d.runOnce(), 0, 'not due before its 60 s')
      clock.advance(1_000)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 1, 1, 2, 3])
      const [first] = await outbox(taskId)
      const log = await getCallback(db, clock, first?.eventId as string)
      assert.deepEqual(
        log?.attemptLog.map((a) => [a.attempt, a.status, a.response]),
        [
          [1, 500, '{"error":"busy 0"}'],
          [2, 500, '{"error":"busy 1"}'],
          [3, 200, '{"error_code":0}'],
        ],
      )
      assert.ok(log?.attemptLog.every((a) => a.url === receiver.url && a.latencyMs >= 0))
      assert.equal(log?.state, 'delivered')
      // Retries carry the same webhook-id and a rising attempt number.
      const heads = receiver.received.filter((r) => r.taskId === taskId && r.seq === 1)
      assert.equal(new Set(heads.map((h) => h.id)).size, 1)
      assert.deepEqual(
        heads.map((h) => h.attempt),
        [1, 2, 3],
      )
    })

    test('429 and 503 with Retry-After are retried when the receiver asks, not on the schedule', async () => {
      const app = await newApp()
      const d = dispatcher()
      const taskId = await startStop(app)
      receiver.answer = (r, n) =>
        r.taskId !== taskId || r.seq > 2 || n > 0
          ? {}
          : r.seq === 1
            ? { status: 429, headers: { 'retry-after': '2' } }
            : {
                status: 503,
                headers: { 'retry-after': new Date(clock.now() + 4_000).toUTCString() },
              }
      await drain(d)
      clock.advance(1_999)
      assert.equal(await d.runOnce(), 0)
      clock.advance(1)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 1, 2])
      clock.advance(4_000)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 1, 2, 2, 3])
    })

    test('no answer within the timeout is a failed attempt, retried', async () => {
      const app = await newApp()
      const d = dispatcher({ timeoutMs: 200 })
      const taskId = await startStop(app)
      // Far past the timeout: undici enforces it with timers of ~0.5 s ticks.
      receiver.answer = (r, n) =>
        r.taskId === taskId && r.seq === 1 && n === 0 ? { delayMs: 5_000 } : {}
      await drain(d)
      const [first] = await outbox(taskId)
      const log = await getCallback(db, clock, first?.eventId as string)
      assert.equal(log?.attemptLog[0]?.status, null)
      assert.equal(log?.attemptLog[0]?.error, 'no answer within 200 ms')
      clock.advance(10_000)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 1, 2, 3])
    })

    test('a receiver that is down for a while gets everything afterwards, in order', async () => {
      const app = await newApp()
      const d = dispatcher()
      const tasks = [await startStop(app), await startStop(app)]
      await receiver.stop()
      try {
        await drain(d)
        assert.match(await firstAttemptError(tasks[0] as string), /ECONNREFUSED/)
        clock.advance(10_000)
        await drain(d)
      } finally {
        await receiver.listen()
      }
      assert.equal(receiver.received.length, 0)
      clock.advance(60_000)
      await drain(d)
      for (const t of tasks) assert.deepEqual(seqsOf(t), [1, 2, 3])
    })

    test('after the last attempt an event is failed, kept, and its task goes on; resend delivers it', async () => {
      const app = await newApp()
      const d = dispatcher()
      const taskId = await startStop(app)
      receiver.answer = (r) => (r.taskId === taskId && r.seq === 1 ? { status: 500 } : {})
      await drain(d)
      for (const step of [10_000, 60_000, 300_000]) {
        clock.advance(step)
        await drain(d)
      }
      const rows = await outbox(taskId)
      assert.deepEqual(
        rows.map((r) => [r.seq, r.state, r.attempts]),
        [
          [1, 'failed', 4],
          [2, 'delivered', 1],
          [3, 'delivered', 1],
        ],
      )
      const failed = await listCallbacks(db, clock, { sdkAppId: app.sdkAppId, state: 'failed' })
      assert.deepEqual(
        failed.events.map((e) => e.eventId),
        [rows[0]?.eventId],
      )

      // Resend: a fresh schedule, so a failure now is retried again.
      receiver.answer = (r, n) => (r.taskId === taskId && n < 5 ? { status: 500 } : {})
      const ids = await resendCallbacks(db, clock, { eventIds: [rows[0]?.eventId as string] })
      assert.deepEqual(ids, [rows[0]?.eventId])
      await drain(d)
      assert.equal((await outbox(taskId))[0]?.state, 'pending')
      clock.advance(10_000)
      await drain(d)
      assert.equal((await outbox(taskId))[0]?.state, 'delivered')
      assert.equal((await outbox(taskId))[0]?.attempts, 6)

      // Bulk: every failed event of the app since a time.
      const since = clock.now()
      const later = await startStop(app)
      receiver.answer = (r) => (r.taskId === later ? { status: 410 } : {})
      await drain(d)
      // Each event in turn: its three retries, then the next event's.
      for (let i = 0; i < 3; i++) {
        for (const step of [10_000, 60_000, 300_000]) {
          clock.advance(step)
          await drain(d)
        }
      }
      assert.deepEqual(
        (await outbox(later)).map((r) => r.state),
        ['failed', 'failed', 'failed'],
      )
      receiver.answer = () => ({})
      const bulk = await resendCallbacks(db, clock, { sdkAppId: app.sdkAppId, sinceMs: since })
      assert.equal(bulk.length, 3)
      await drain(d)
      assert.deepEqual(seqsOf(later).slice(-3), [1, 2, 3])
      assert.deepEqual(
        (await outbox(later)).map((r) => r.state),
        ['delivered', 'delivered', 'delivered'],
      )
    })

    test('without a callback URL nothing is attempted; setting one sends the events at once', async () => {
      const app = await newApp(KEY, null)
      const d = dispatcher()
      const taskId = await startStop(app)
      assert.equal(await drain(d), 0)
      const [first] = await outbox(taskId)
      const event = await getCallback(db, clock, first?.eventId as string)
      assert.deepEqual(event?.attemptLog, [])
      assert.equal(event?.state, 'pending')
      assert.match(event?.lastError ?? '', /no callback URL/)
      clock.advance(60_000)
      assert.equal(await drain(d), 0, 'parked, not retried')
      await apps.setCallback(app.sdkAppId, receiver.url)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 2, 3])
    })

    test('a new callback URL gets the pending events at once, not at their next retry', async () => {
      // The old URL refuses connections: the first event waits 10 s for its retry.
      const app = await newApp(KEY, 'http://127.0.0.1:1/callback')
      const d = dispatcher()
      const taskId = await startStop(app)
      await drain(d)
      assert.match(await firstAttemptError(taskId), /ECONNREFUSED/)
      assert.deepEqual(seqsOf(taskId), [])
      await apps.setCallback(app.sdkAppId, receiver.url)
      await drain(d)
      assert.deepEqual(seqsOf(taskId), [1, 2, 3], 'delivered without moving the clock')
      const [first] = await outbox(taskId)
      const log = await getCallback(db, clock, first?.eventId as string)
      assert.deepEqual(
        log?.attemptLog.map((a) => [a.url, a.status]),
        [
          ['http://127.0.0.1:1/callback', null],
          [receiver.url, 200],
        ],
      )
    })

    test('an app that never sets a URL has its events failed after the retry window', async () => {
      const app = await newApp(KEY, null)
      const d = dispatcher()
      const taskId = await startStop(app)
      await drain(d)
      clock.advance((10 + 60 + 300) * 1000)
      await drain(d)
      assert.deepEqual(
        (await outbox(taskId)).map((e) => [e.state, e.attempts]),
        [
          ['failed', 0],
          ['pending', 0],
          ['pending', 0],
        ],
      )
      // Each of the others in turn, as it becomes its task's head.
      for (let i = 0; i < 3; i++) {
        clock.advance(1_000)
        await drain(d)
      }
      assert.deepEqual(
        (await outbox(taskId)).map((e) => e.state),
        ['failed', 'failed', 'failed'],
      )
      assert.equal(receiver.received.length, 0)
    })

    test('loopback and private targets are refused when blocking is on', async () => {
      const app = await newApp()
      const d = dispatcher({ blockPrivate: true })
      const taskId = await startStop(app)
      await drain(d)
      assert.match(await firstAttemptError(taskId), /loopback or private/)
      assert.equal(receiver.received.length, 0)
    })

    test('at most endpointConcurrency attempts at once to one app', async () => {
      const app = await newApp()
      const d = dispatcher({ endpointConcurrency: 3, concurrency: 50 })
      const tasks = await Promise.all(Array.from({ length: 12 }, () => startStop(app)))
      receiver.answer = () => ({ delayMs: 30 })
      await drain(d)
      assert.equal(receiver.maxConcurrent, 3)
      for (const t of tasks) assert.deepEqual(seqsOf(t), [1, 2, 3])
    })

    test('maintenance refreshes the statistics of the outbox and reclaims its dead rows', async () => {
      const app = await newApp()
      for (let i = 0; i < 5; i++) await startStop(app)
      await drain(dispatcher())
      await vacuumAnalyze(db)
      const [stats] = await db.query<{ tuples: number }>(
        `select reltuples::int8 as tuples from pg_class where oid = 'events'::regclass`,
      )
      const [count] = await db.query<{ n: number }>('select count(*)::int8 as n from events')
      assert.equal(stats?.tuples, count?.n)
    })

    test('a receiver answering NUL bytes, trickles, 10 MB and garbage holds up nobody', async () => {
      // The hostile receiver of one app, beside the healthy receiver of two others.
      const hostile = await TestReceiver.start()
      try {
        const bad = await newApp(KEY, hostile.url)
        const good = [await newApp(), await newApp()]
        const d = dispatcher({ timeoutMs: 1000, concurrency: 8, pollMs: 20 })
        const badTasks = [await startStop(bad), await startStop(bad)]
        const goodTasks: string[] = []
        for (const app of good) for (let i = 0; i < 5; i++) goodTasks.push(await startStop(app))
        // Each event's first answer is hostile; what follows depends on its kind.
        hostile.answer = (r, n) => {
          if (r.seq === 1) return { body: 'ok\u0000\u0000ok' } // 2xx with NUL bytes
          if (r.seq === 2 && n === 0) return { trickle: { body: 'x'.repeat(50), everyMs: 100 } }
          if (r.seq === 3 && n === 0)
            return { garbage: Buffer.from('\u0000\u00ff garbage\r\n\r\n') }
          return { bodyBytes: 10 * 1024 * 1024 } // 2xx with a 10 MB body
        }
        // Earlier tests' events may come due too: only this test's are counted.
        const healthy = () => receiver.received.filter((r) => goodTasks.includes(r.taskId))
        await d.start()
        await receiver.waitFor(
          () => new Set(healthy().map((r) => r.id)).size === 30,
          30_000,
          'the healthy events',
        )
        // Retries of the hostile app's events come due as the clock moves.
        const ticking = setInterval(() => clock.advance(5_000), 50)
        try {
          await hostile.waitFor(
            () => badTasks.every((t) => hostile.received.filter((r) => r.taskId === t).length >= 5),
            30_000,
            "the hostile app's events and their retries",
          )
          for (const t of badTasks) {
            await waitUntil(async () => (await outbox(t)).every((r) => r.state === 'delivered'))
          }
        } finally {
          clearInterval(ticking)
        }
        await d.close()
        // Healthy: each event once, in order.
        assert.equal(healthy().length, 30)
        for (const t of goodTasks) assert.deepEqual(seqsOf(t), [1, 2, 3])
        // Hostile: answers kept as storable text, failures logged and retried.
        for (const t of badTasks) {
          const rows = await outbox(t)
          assert.deepEqual(
            rows.map((r) => [r.seq, r.state, r.attempts]),
            [
              [1, 'delivered', 1],
              [2, 'delivered', 2],
              [3, 'delivered', 2],
            ],
          )
          const first = await getCallback(db, clock, rows[0]?.eventId as string)
          assert.equal(first?.attemptLog[0]?.response, 'ok\ufffd\ufffdok')
          const trickled = await getCallback(db, clock, rows[1]?.eventId as string)
          assert.match(trickled?.attemptLog[0]?.error ?? '', /no answer within 1000 ms/)
          const garbled = await getCallback(db, clock, rows[2]?.eventId as string)
          assert.equal(garbled?.attemptLog[0]?.status, null)
          assert.ok(garbled?.attemptLog[0]?.error)
          assert.equal(garbled?.attemptLog[1]?.response?.length, 4096, 'a 4 KB excerpt of 10 MB')
        }
      } finally {
        await hostile.close()
      }
    })

    test('one outcome the store refuses is written alone, without its answer; the rest as they are', async () => {
      const app = await newApp()
      const tasks = [await startStop(app), await startStop(app)]
      // The store refuses any statement carrying this answer, as PostgreSQL
      // refused NUL bytes in text before excerpts were made storable.
      const poison = 'refused-by-the-store'
      const refusing: Db = {
        ...db,
        query: (sql, params, options) =>
          params?.some((p) => Array.isArray(p) && p.includes(poison))
            ? Promise.reject(Object.assign(new Error('invalid byte sequence'), { code: '22021' }))
            : db.query(sql, params, options),
      }
      const d = dispatcher({ concurrency: 8 }, refusing)
      receiver.answer = (r) => (r.taskId === tasks[0] && r.seq === 1 ? { body: poison } : {})
      await drain(d)
      for (const t of tasks) assert.deepEqual(seqsOf(t), [1, 2, 3], 'each event once, in order')
      const [first] = await outbox(tasks[0] as string)
      const log = await getCallback(db, clock, first?.eventId as string)
      assert.equal(first?.state, 'delivered')
      assert.equal(log?.attemptLog[0]?.response, null)
      assert.match(log?.attemptLog[0]?.error ?? '', /could not be stored \(status 200\)/)
      await d.close()
    })

    test('two dispatchers on one store never send an event twice at once, and keep each task in order', async () => {
      const app = await newApp()
      const tasks: string[] = []
      for (let i = 0; i < 40; i++) tasks.push(await startStop(app))
      const second = factory.name === 'PGlite' ? db : await handle.reopen()
      // Leases in the store, which is what lets processes share one.
      const a = dispatcher({ concurrency: 8, pollMs: 20, leases: 'database' })
      const b = dispatcher({ concurrency: 8, pollMs: 20, leases: 'database' }, second)
      receiver.answer = () => ({ delayMs: 5 })
      // Time passes while they run: a claim whose snapshot predates the outcome
      // that released a task's next event puts that event back by 250 ms (the
      // bound on that race), which a frozen clock would make forever.
      const ticking = setInterval(() => clock.advance(100), 50)
      try {
        await Promise.all([a.start(), b.start()])
        await receiver.waitFor(() => receiver.ids().size === 120, 30_000)
      } finally {
        clearInterval(ticking)
      }
      await Promise.all([a.close(), b.close()])
      assert.equal(receiver.maxConcurrentPerId, 1)
      assert.equal(receiver.received.length, 120, 'each event once')
      for (const t of tasks) assert.deepEqual(seqsOf(t), [1, 2, 3])
    })
  })
}
