// The store and engine behaviour, run on PGlite (engine.test.ts) and, with
// TEST_DATABASE_URL, on PostgreSQL (engine.pg.test.ts).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { ApiError, eventSchemas, type StartOnlineRecordRequest } from '@online-record/protocol'
import { type App, Apps } from '../apps/apps.ts'
import { genUserSig } from '../apps/usersig.ts'
import { ManualClock } from '../clock.ts'
import { runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import type { Db } from '../store/db.ts'
import { migrate } from '../store/migrations.ts'
import type { TestDbFactory } from '../store/test-db.ts'
import { TaskEngine } from './engine.ts'
import { LeaseLost, type RecorderPort, SignalingOnlyRecorder } from './ports.ts'
import { PostJobs } from './post-jobs.ts'

const MIN = 60_000

interface EventRow {
  seq: number
  eventType: string
  timestampS: number
  eventData: Record<string, unknown>
  eventId: string
}

export function engineSuite(factory: TestDbFactory): void {
  describe(`store and task engine on ${factory.name}`, () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 24, 9, 0, 0))
    let handle: Awaited<ReturnType<TestDbFactory['open']>>
    let db: Db
    let apps: Apps
    let engine: TaskEngine
    let app: App
    let other: App
    let room = 1000
    /** Post-processing passes, as the service's worker pool makes them. */
    const postProcess = (on = engine, onDb = db) =>
      new PostJobs({ db: onDb, clock, engine: on }).runOnce()

    before(async () => {
      handle = await factory.open(clock)
      db = handle.db
      apps = new Apps(db, clock)
      engine = new TaskEngine({ db, clock, recorder: new SignalingOnlyRecorder() })
      app = await apps.create({ sdkAppId: 1400000001 })
      other = await apps.create({ sdkAppId: 1400000002 })
    })
    after(() => handle.dispose())

    const request = (
      patch: Partial<StartOnlineRecordRequest> = {},
      forApp = app,
    ): StartOnlineRecordRequest => {
      const roomId = patch.RoomId ?? ++room
      const recordUserId = patch.RecordUserId ?? `tic_record_user_${roomId}_t`
      return {
        SdkAppId: forApp.sdkAppId,
        RoomId: roomId,
        RecordUserId: recordUserId,
        RecordUserSig: genUserSig(
          forApp.sdkAppId,
          forApp.userSigKey,
          recordUserId,
          86_400,
          clock.now(),
        ),
        ...patch,
      }
    }
    const events = (taskId: string) =>
      db.query<EventRow>(
        `select seq, event_type as "eventType", timestamp_s as "timestampS", event_data as "eventData", event_id as "eventId"
         from events where task_id = $1 order by seq`,
        [taskId],
      )
    const types = async (taskId: string) => (await events(taskId)).map((e) => e.eventType)
    const code = async (p: Promise<unknown>): Promise<string> => {
      try {
        await p
      } catch (error) {
        assert.ok(error instanceof ApiError, String(error))
        return error.code
      }
      return 'no error'
    }
    /** Every outbox row must make a callback body the seed's schema accepts as is. */
    const assertSeedShaped = async (taskId: string) => {
      for (const e of await events(taskId)) {
        const body = {
          EventData: e.eventData,
          EventType: e.eventType,
          SdkAppId: app.sdkAppId,
          Timestamp: e.timestampS,
        }
        const parsed = eventSchemas.Callback.safeParse(body)
        assert.ok(parsed.success, `${e.eventType}: ${parsed.success ? '' : parsed.error.message}`)
      }
    }

    test('migrations run once', async () => {
      assert.deepEqual(await migrate(db, clock), [])
    })

    test('apps: generated credentials, lookup by SecretId, upsert, rotation', async () => {
      assert.match(app.secretId, /^AKID[A-Za-z0-9]{32}$/)
      assert.match(app.webhookSecret, /^whsec_/)
      assert.equal((await apps.getBySecretId(app.secretId))?.sdkAppId, app.sdkAppId)
      const updated = await apps.upsert({
        sdkAppId: 1400000003,
        secretId: 'AKIDfixed000001',
        secretKey: 'k'.repeat(32),
        userSigKey: 'u'.repeat(64),
      })
      assert.equal(updated.secretId, 'AKIDfixed000001')
      const again = await apps.upsert({ sdkAppId: 1400000003, secretKey: 'x'.repeat(32) })
      assert.deepEqual(
        [again.secretId, again.secretKey, again.userSigKey],
        ['AKIDfixed000001', 'x'.repeat(32), 'u'.repeat(64)],
      )
      const rotated = await apps.rotate(1400000003, 'webhook')
      assert.equal(rotated?.previousWebhookSecret, again.webhookSecret)
      assert.notEqual(rotated?.webhookSecret, again.webhookSecret)
      const api = await apps.rotate(1400000003, 'api')
      assert.notEqual(api?.secretId, 'AKIDfixed000001')
      assert.equal(await apps.getBySecretId('AKIDfixed000001'), undefined)
    })

    test('start → RECORDING → pause → resume → stop → FINISHED, with callbacks in order', async () => {
      const taskId = await engine.start(
        app,
        request({ RoomId: 880528, RecordUserId: 'tic_record_user_880528_test-01' }),
      )
      assert.match(taskId, /^[a-z0-9]{20}$/)
      assert.equal((await engine.describe(app, taskId)).Status, 'RECORDING')
      clock.advance(60_000)
      await engine.pause(app, taskId)
      assert.equal((await engine.describe(app, taskId)).Status, 'PAUSED')
      clock.advance(30_000)
      await engine.resume(app, taskId)
      clock.advance(15_000)
      await engine.stop(app, taskId)
      // Stop answers once STOPPED; the worker pool finishes the task.
      assert.equal((await engine.describe(app, taskId)).Status, 'STOPPED')
      assert.deepEqual(
        (await engine.running(app, 0, 500)).tasks.find((t) => t.taskId === taskId)?.status,
        'STOPPED',
      )
      assert.equal(await postProcess(), 1)
      const done = await engine.describe(app, taskId)
      assert.equal(done.Status, 'FINISHED')
      assert.equal(done.FinishReason, 'USER_CALL')
      assert.equal(done.TotalTime, 75_000, 'paused time is not replay time')
      assert.equal(done.RecordStopTime - done.RecordStartTime, 105)
      assert.equal(done.GroupId, '880528')
      const list = await events(taskId)
      assert.deepEqual(
        list.map((e) => [e.seq, e.eventType]),
        [
          [1, 'OnlineRecordStarted'],
          [2, 'OnlineRecordStopped'],
          [3, 'OnlineRecordFinished'],
        ],
      )
      assert.equal(new Set(list.map((e) => e.eventId)).size, 3)
      const finished = list[2]?.eventData as Record<string, unknown>
      assert.deepEqual(
        [finished.TotalTime, finished.FinishReason, finished.VideoInfos],
        [75_000, 'USER_CALL', []],
      )
      await assertSeedShaped(taskId)
    })

    test('a recorder that must join first: PREPARED until it is ready, then the same start', async () => {
      const joining = new TaskEngine({
        db,
        clock,
        recorder: new SignalingOnlyRecorder({ readyAtStart: false }),
      })
      const atStart = await engine.start(app, request())
      const afterJoin = await joining.start(app, request())
      for (const taskId of [atStart, afterJoin]) {
        assert.equal((await engine.describe(app, taskId)).Status, 'RECORDING')
        assert.deepEqual(await types(taskId), ['OnlineRecordStarted'])
        const timers = await db.query<{ kind: string; dueMs: number }>(
          'select kind, due_ms as "dueMs" from timers where task_id = $1 order by kind',
          [taskId],
        )
        assert.deepEqual(timers, [
          { kind: 'idle', dueMs: clock.now() + 300_000 },
          { kind: 'max-duration', dueMs: clock.now() + 24 * 3_600_000 },
        ])
        await assertSeedShaped(taskId)
        await engine.stop(app, taskId)
      }
    })

    test('stopped while paused: the open pause ends with the stop and is not replay time', async () => {
      const taskId = await engine.start(app, request())
      clock.advance(40_000)
      await engine.pause(app, taskId)
      clock.advance(25_000)
      await engine.stop(app, taskId)
      await postProcess()
      const done = await engine.describe(app, taskId)
      assert.deepEqual(
        [done.Status, done.FinishReason, done.TotalTime],
        ['FINISHED', 'USER_CALL', 40_000],
      )
      const [row] = await db.query<{ pauses: unknown; pausedTotalMs: number }>(
        'select pauses, paused_total_ms as "pausedTotalMs" from tasks where task_id = $1',
        [taskId],
      )
      assert.equal(row?.pausedTotalMs, 25_000)
      assert.deepEqual(row?.pauses, [{ pauseMs: clock.now() - 25_000, resumeMs: clock.now() }])
      // The app's slot came back, and no timer of the task is left.
      const [timers] = await db.query<{ n: number }>(
        'select count(*)::int4 as n from timers where task_id = $1',
        [taskId],
      )
      assert.equal(timers?.n, 0)
      assert.equal(
        await code(engine.stop(app, taskId)),
        'UnsupportedOperation.TaskHasAlreadyStopped',
      )
      assert.equal(await code(engine.stop(other, taskId)), 'InvalidParameter.TaskNotFound')
    })

    test('wrong states, unknown and foreign tasks get their codes and change nothing', async () => {
      const taskId = await engine.start(app, request())
      const before = await types(taskId)
      assert.equal(await code(engine.resume(app, taskId)), 'UnsupportedOperation.InvalidTaskStatus')
      await engine.pause(app, taskId)
      assert.equal(await code(engine.pause(app, taskId)), 'UnsupportedOperation.InvalidTaskStatus')
      assert.equal(await code(engine.stop(other, taskId)), 'InvalidParameter.TaskNotFound')
      assert.equal(await code(engine.describe(other, taskId)), 'InvalidParameter.TaskNotFound')
      assert.equal(
        await code(engine.describe(app, 'nosuchtask0000000000')),
        'InvalidParameter.TaskNotFound',
      )
      assert.equal((await engine.describe(app, taskId)).Status, 'PAUSED')
      assert.deepEqual(await types(taskId), before)
      await engine.stop(app, taskId)
      await postProcess()
      for (const action of [engine.stop, engine.pause, engine.resume]) {
        assert.equal(
          await code(action.call(engine, app, taskId)),
          'UnsupportedOperation.TaskHasAlreadyStopped',
        )
      }
      assert.deepEqual(await types(taskId), [
        'OnlineRecordStarted',
        'OnlineRecordStopped',
        'OnlineRecordFinished',
      ])
    })

    test('one active task per room and per RecordUserId; the app concurrency limit', async () => {
      const first = request()
      const taskId = await engine.start(app, first)
      assert.equal(
        await code(
          engine.start(
            app,
            request({ RoomId: first.RoomId, RecordUserId: `tic_record_user_${first.RoomId}_b` }),
          ),
        ),
        'ResourceInUse',
      )
      assert.equal(
        await code(engine.start(app, request({ RecordUserId: first.RecordUserId }))),
        'ResourceInUse.RecordUserId',
      )
      // another app may use the same room number
      const foreign = await engine.start(other, request({ RoomId: first.RoomId }, other))
      await engine.stop(app, taskId)
      const again = await engine.start(
        app,
        request({ RoomId: first.RoomId, RecordUserId: first.RecordUserId }),
      )
      await engine.stop(app, again)
      await engine.stop(other, foreign)

      const limited = await apps.create({ sdkAppId: 1400000009, maxConcurrentTasks: 2 })
      const a = await engine.start(limited, request({}, limited))
      await engine.start(limited, request({}, limited))
      assert.equal(
        await code(engine.start(limited, request({}, limited))),
        'LimitExceeded.TaskConcurrency',
      )
      await engine.stop(limited, a)
      await engine.start(limited, request({}, limited))
    })

    test('an invalid or expired RecordUserSig ends the task with EXCEPTION', async () => {
      for (const sig of [
        'garbage',
        genUserSig(app.sdkAppId, app.userSigKey, 'tic_record_user_1_x', 10, clock.now() - 60_000),
      ]) {
        const taskId = await engine.start(app, request({ RecordUserSig: sig }))
        assert.equal(await code(engine.describe(app, taskId)), 'FailedOperation.Record')
        assert.equal(
          await code(engine.stop(app, taskId)),
          'UnsupportedOperation.TaskHasAlreadyStopped',
        )
        const [finished] = await events(taskId)
        assert.equal(finished?.eventType, 'OnlineRecordFinished')
        const data = finished?.eventData as {
          FinishReason: string
          Error: { Code: string; Message: string }
          RecordStartTime: number
        }
        assert.equal(data.FinishReason, 'EXCEPTION')
        assert.equal(data.Error.Code, 'FailedOperation.Record')
        assert.match(data.Error.Message, /RecordUserSig is invalid/)
        assert.equal(data.RecordStartTime, 0)
        await assertSeedShaped(taskId)
      }
    })

    test('idle auto-stop after AutoStopTimeout without activity; activity postpones it', async () => {
      const taskId = await engine.start(app, request({ AutoStopTimeout: 300 }))
      clock.advance(200_000)
      await engine.signals.activity(taskId)
      clock.advance(200_000)
      await engine.runDueTimers() // other tests' tasks may time out here
      assert.equal((await engine.describe(app, taskId)).Status, 'RECORDING')
      clock.advance(100_001)
      assert.ok((await engine.runDueTimers()) >= 1)
      await postProcess()
      const done = await engine.describe(app, taskId)
      assert.deepEqual([done.Status, done.FinishReason], ['FINISHED', 'AUTO'])
      assert.deepEqual(await types(taskId), [
        'OnlineRecordStarted',
        'OnlineRecordStopped',
        'OnlineRecordFinished',
      ])
    })

    test('recorder signals: exceptions in ExceptionCnt (Describe and Finished), drops in Interrupts', async () => {
      const taskId = await engine.start(app, request())
      assert.deepEqual((await engine.describe(app, taskId)).Interrupts, [])
      await engine.signals.exception(taskId, 'a recording process died')
      await engine.signals.interrupted(taskId, 'bob')
      await engine.signals.interrupted(taskId, 'alice')
      await engine.signals.interrupted(taskId, 'bob')
      const during = await engine.describe(app, taskId)
      assert.equal(during.ExceptionCnt, 1)
      assert.deepEqual(during.Interrupts, [
        { UserId: 'alice', Count: 1 },
        { UserId: 'bob', Count: 2 },
      ])
      await engine.stop(app, taskId)
      await postProcess()
      // A stream dropping after the stop is not an interruption of the recording.
      await engine.signals.interrupted(taskId, 'carol')
      const done = await engine.describe(app, taskId)
      assert.equal(done.Interrupts?.length, 2)
      const finished = (await events(taskId)).find((e) => e.eventType === 'OnlineRecordFinished')
      assert.equal(finished?.eventData.ExceptionCnt, 1)
      await assertSeedShaped(taskId)
    })

    test('long pause: warning at 20 min, forced stop at 30 min', async () => {
      const taskId = await engine.start(app, request())
      const pausedAt = clock.now()
      await engine.pause(app, taskId)
      // The timer pass can wake for the warning instead of polling for it.
      const next = await engine.nextTimerDueMs()
      assert.ok(next !== undefined && next <= pausedAt + 20 * MIN)
      clock.advance(20 * MIN)
      await engine.runDueTimers()
      const warning = (await events(taskId))[1]
      assert.equal(warning?.eventType, 'OnlineRecordLongPauseWarning')
      assert.deepEqual(warning?.eventData, {
        TaskId: taskId,
        RoomId: room,
        RecordUserId: `tic_record_user_${room}_t`,
        PauseTime: Math.floor(pausedAt / 1000),
        EstimateStopTime: Math.floor(pausedAt / 1000) + 1800,
      })
      clock.advance(10 * MIN)
      await engine.runDueTimers()
      await postProcess()
      assert.deepEqual(await types(taskId), [
        'OnlineRecordStarted',
        'OnlineRecordLongPauseWarning',
        'OnlineRecordLongPauseForceStopped',
        'OnlineRecordStopped',
        'OnlineRecordFinished',
      ])
      const done = await engine.describe(app, taskId)
      assert.deepEqual([done.FinishReason, done.TotalTime], ['FORCE_STOP', 0])
      await assertSeedShaped(taskId)
    })

    test('resuming cancels the long-pause timers; 24 h of recording is a forced stop', async () => {
      const taskId = await engine.start(app, request({ AutoStopTimeout: 86_400 }))
      await engine.pause(app, taskId)
      clock.advance(19 * MIN)
      await engine.resume(app, taskId)
      clock.advance(15 * MIN)
      await engine.runDueTimers()
      assert.deepEqual(await types(taskId), ['OnlineRecordStarted'])
      for (let h = 0; h < 24; h++) {
        clock.advance(3_600_000)
        await engine.signals.activity(taskId)
        await engine.runDueTimers()
      }
      assert.equal((await engine.describe(app, taskId)).FinishReason, 'FORCE_STOP')
    })

    test('timers survive a restart and fire once across two engines', async () => {
      const ids = [await engine.start(app, request()), await engine.start(app, request())]
      const db2 = await handle.reopen()
      if (factory.name === 'PGlite') db = db2 // the first connection was closed
      const first = new TaskEngine({ db, clock, recorder: new SignalingOnlyRecorder() })
      const second = new TaskEngine({ db: db2, clock, recorder: new SignalingOnlyRecorder() })
      engine = first
      apps = new Apps(db, clock)
      clock.advance(301_000)
      const fired = await Promise.all([
        first.runDueTimers(),
        second.runDueTimers(),
        first.runDueTimers(),
      ])
      assert.equal(
        fired.reduce((a, b) => a + b, 0),
        2,
      )
      // Either process's pool finishes each task (and earlier tests' stopped ones) once.
      const finished = await Promise.all([postProcess(first), postProcess(second, db2)])
      assert.ok(finished.reduce((a, b) => a + b) >= 2)
      for (const taskId of ids) {
        assert.deepEqual(await types(taskId), [
          'OnlineRecordStarted',
          'OnlineRecordStopped',
          'OnlineRecordFinished',
        ])
      }
    })

    test('a failed post-processing is retried with backoff; after the last attempt the task finishes with EXCEPTION', async () => {
      const recorder = new SignalingOnlyRecorder()
      let failures = 1
      const flaky = new TaskEngine({
        db,
        clock,
        recorder: Object.assign(Object.create(recorder), {
          finish: async () => {
            if (failures-- > 0) throw new Error('ffmpeg ran out of disk')
            return recorder.finish()
          },
          partial: async () => ({ videoInfos: [], omittedDurations: [] }),
        }),
      })
      const pool = (retryDelaysMs = [60_000]) =>
        new PostJobs({ db, clock, engine: flaky, settings: { retryDelaysMs } })
      const taskId = await flaky.start(app, request())
      await flaky.stop(app, taskId)
      assert.equal(await pool().runOnce(), 1)
      assert.equal((await engine.describe(app, taskId)).Status, 'STOPPED')
      const [job] = await db.query<{ attempts: number; lastError: string }>(
        'select attempts, last_error as "lastError" from post_jobs where task_id = $1',
        [taskId],
      )
      assert.deepEqual(job, { attempts: 1, lastError: 'ffmpeg ran out of disk' })
      assert.equal(await pool().runOnce(), 0, 'not due before its retry')
      clock.advance(60_000)
      assert.equal(await pool().runOnce(), 1)
      assert.equal((await engine.describe(app, taskId)).Status, 'FINISHED')
      assert.deepEqual(await types(taskId), [
        'OnlineRecordStarted',
        'OnlineRecordStopped',
        'OnlineRecordFinished',
      ])

      // Failing every attempt: FINISHED with EXCEPTION, the reason in the callback.
      failures = 2
      const doomed = await flaky.start(app, request())
      await flaky.stop(app, doomed)
      await pool().runOnce()
      clock.advance(60_000)
      await pool().runOnce()
      assert.equal(await code(engine.describe(app, doomed)), 'FailedOperation.Record')
      const finished = (await events(doomed)).find((e) => e.eventType === 'OnlineRecordFinished')
      const data = finished?.eventData as { FinishReason: string; Error: { Message: string } }
      assert.equal(data.FinishReason, 'EXCEPTION')
      assert.match(
        data.Error.Message,
        /post-processing failed after 2 attempts: ffmpeg ran out of disk/,
      )
      await assertSeedShaped(doomed)
      assert.equal(
        (await db.query('select 1 from post_jobs where task_id = $1', [doomed])).length,
        0,
      )
    })

    test('not ready yet (another process still stores the media) is no attempt; a lease left by a crash runs out', async () => {
      const recorder = new SignalingOnlyRecorder()
      let ready = false
      const waiting = new TaskEngine({
        db,
        clock,
        recorder: Object.assign(Object.create(recorder), {
          finish: async () => {
            if (!ready)
              throw Object.assign(new Error('segments are being stored'), { retryMs: 1000 })
            return recorder.finish()
          },
        }),
      })
      const taskId = await waiting.start(app, request())
      await waiting.stop(app, taskId)
      const pool = new PostJobs({ db, clock, engine: waiting, settings: { leaseMs: 60_000 } })
      assert.equal(await pool.runOnce(), 1)
      const [job] = await db.query<{ attempts: number; stage: string }>(
        'select attempts, stage from post_jobs where task_id = $1',
        [taskId],
      )
      assert.deepEqual(job, { attempts: 0, stage: 'waiting' })
      clock.advance(1000)
      // A process took the job and died with it: its lease blocks others until it runs out.
      await db.query('update post_jobs set lease_until_ms = $2, attempts = 1 where task_id = $1', [
        taskId,
        clock.now() + 60_000,
      ])
      ready = true
      assert.equal(await pool.runOnce(), 0, 'the lease is still held')
      clock.advance(60_000)
      assert.equal(await pool.runOnce(), 1)
      assert.equal((await engine.describe(app, taskId)).Status, 'FINISHED')
    })

    /** An engine whose post-processing is `finish`; the rest as SignalingOnlyRecorder. */
    const finishing = (finish: RecorderPort['finish']) => {
      const recorder = new SignalingOnlyRecorder()
      return new TaskEngine({
        db,
        clock,
        recorder: Object.assign(Object.create(recorder), {
          finish,
          partial: async () => ({ videoInfos: [], omittedDurations: [] }),
        }),
      })
    }
    /** Started and stopped tasks (their jobs due in this order). */
    const stopped = async (on: TaskEngine, forApps: App[]) => {
      const ids: string[] = []
      for (const a of forApps) {
        const id = await on.start(a, request({}, a))
        await on.stop(a, id)
        ids.push(id)
        clock.advance(1)
      }
      return ids
    }
    const job = async (taskId: string) =>
      (
        await db.query<{ attempts: number; leaseUntilMs: number | null; lastError: string | null }>(
          `select attempts, lease_until_ms as "leaseUntilMs", last_error as "lastError"
           from post_jobs where task_id = $1`,
          [taskId],
        )
      )[0]
    /** Waits (for events of other promises, never for a time) until `ok`. */
    const until = async (what: string, ok: () => boolean) => {
      const deadline = performance.now() + 30_000
      while (!ok()) {
        assert.ok(performance.now() < deadline, what)
        await new Promise((r) => setTimeout(r, 5))
      }
    }
    const gone = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
        return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
      } catch {
        return true
      }
    }

    test('fair claims: the app with the fewest jobs running first; a job whose lease ran out under it goes behind the fresh ones, and that attempt counts', async () => {
      await postProcess() // nothing of earlier tests left due
      const third = await apps.create({ sdkAppId: 1400000004 })
      const order: string[] = []
      const attemptOf = new Map<string, number | undefined>()
      const on = finishing(async (task, _progress, lease) => {
        order.push(task.taskId)
        attemptOf.set(task.taskId, lease?.attempts)
        return { videoInfos: [], omittedDurations: [] }
      })
      const [a1, a2, b1] = (await stopped(on, [app, app, other])) as [string, string, string]
      // Another process works on a1: app A has a job running.
      await db.query('update post_jobs set lease_until_ms = $2, attempts = 1 where task_id = $1', [
        a1,
        clock.now() + 60_000,
      ])
      const pool = new PostJobs({ db, clock, engine: on, settings: { leaseMs: 60_000 } })
      assert.equal(await pool.runOnce(), 2)
      assert.deepEqual(
        order,
        [b1, a2],
        'B has none running: its job goes before the older one of A',
      )

      // That process died: a1's lease runs out under it. A fresh job of
      // another app, due later, goes first; a1's crash was its attempt 1.
      clock.advance(60_001)
      const [c1] = (await stopped(on, [third])) as [string]
      order.length = 0
      assert.equal(await pool.runOnce(), 2)
      assert.deepEqual(order, [c1, a1])
      assert.equal(attemptOf.get(a1), 2, 'the crashed run was attempt 1')
      assert.equal((await engine.describe(app, a1)).Status, 'FINISHED')
    })

    test('a job whose runs keep ending with their lease (a dying or stalled process) is failed after its attempts, not taken up forever', async () => {
      await postProcess()
      let runs = 0
      const on = finishing(
        (_task, _progress, lease) =>
          new Promise((_resolve, reject) => {
            runs++
            // Never done: the run ends only when it loses its lease.
            lease?.signal.addEventListener('abort', () => reject(lease.signal.reason))
          }),
      )
      const [taskId] = (await stopped(on, [app])) as [string]
      const outcomes: string[] = []
      const pool = new PostJobs({
        db,
        clock,
        engine: on,
        settings: { leaseMs: 60_000, retryDelaysMs: [1000] },
        renewEveryMs: 5,
        observe: (outcome) => outcomes.push(outcome),
      })
      const run = pool.runOnce()
      for (let k = 1; k <= 2; k++) {
        await until(`run ${k} started`, () => runs === k)
        // A whole lease without a renewal (the process stalled): the run stops.
        clock.advance(60_001)
      }
      assert.equal(await run, 3)
      assert.equal(runs, 2, 'the job is not run a third time')
      assert.deepEqual(outcomes, ['lost', 'lost', 'failed'])
      const done = (await events(taskId)).find((e) => e.eventType === 'OnlineRecordFinished')
      const data = done?.eventData as { FinishReason: string; Error: { Message: string } }
      assert.equal(data.FinishReason, 'EXCEPTION')
      assert.match(
        data.Error.Message,
        /post-processing failed after 2 attempts: the process working on it ended during the work/,
      )
      await assertSeedShaped(taskId)
    })

    test('a run whose job another process took over is stopped: its child is killed and it stores nothing', async () => {
      await postProcess()
      let pid = 0
      let held: unknown
      let takenOver: () => void = () => {}
      const taken = new Promise<void>((resolve) => {
        takenOver = resolve
      })
      const video = {
        UserId: 'alice',
        VideoDuration: 1000,
        VideoFormat: 'mp4',
        VideoId: 'v'.repeat(32),
        VideoPlayTime: 0,
        VideoSize: 1,
        VideoType: 0,
        VideoUrl: 'http://files.test/v.mp4',
        Width: 2,
        Height: 2,
      } as const
      // First a run with a child (the job's ffmpeg, say); then one that
      // ignores the signal and tries to finish the task anyway.
      let ignoring = false
      const on = finishing(async (_task, _progress, lease) => {
        if (!lease) throw new Error('no lease')
        if (ignoring) {
          await taken
          held = await lease.hold().then(
            () => 'held',
            (e: unknown) => e,
          )
          return { videoInfos: [video], omittedDurations: [] }
        }
        await runTool('/usr/bin/sleep', ['60'], {
          signal: lease.signal,
          onSpawn: (child) => {
            pid = child.pid as number
          },
        })
        return { videoInfos: [video], omittedDurations: [] }
      })
      const outcomes: string[] = []
      const pool = () =>
        new PostJobs({
          db,
          clock,
          engine: on,
          settings: { leaseMs: 60_000 },
          renewEveryMs: 5,
          observe: (outcome) => outcomes.push(outcome),
        })
      const takeOver = (taskId: string) =>
        db.query(
          'update post_jobs set attempts = attempts + 1, lease_until_ms = $2 where task_id = $1',
          [taskId, clock.now() + 60_000],
        )

      const [first] = (await stopped(on, [app])) as [string]
      const run = pool().runOnce()
      await until('the child started', () => pid > 0)
      await takeOver(first)
      assert.equal(await run, 1)
      await until(`the child ${pid} was killed`, () => gone(pid))
      assert.deepEqual(outcomes, ['lost'])
      assert.equal((await engine.describe(app, first)).Status, 'STOPPED')
      assert.deepEqual(await job(first), {
        attempts: 2,
        leaseUntilMs: clock.now() + 60_000,
        lastError: null,
      })

      ignoring = true
      outcomes.length = 0
      const [second] = (await stopped(on, [app])) as [string]
      const run2 = pool().runOnce()
      // Once attempt 1 holds the job, another process takes it over.
      let claimed = false
      await until('attempt 1 holds the job', () => {
        void job(second).then((j) => {
          claimed = j?.attempts === 1
        })
        return claimed
      })
      await takeOver(second)
      takenOver()
      assert.equal(await run2, 1)
      assert.ok(held instanceof LeaseLost, `${held}`)
      assert.deepEqual(outcomes, ['lost'])
      assert.equal((await engine.describe(app, second)).Status, 'STOPPED', 'nothing written')
      assert.deepEqual(await types(second), ['OnlineRecordStarted', 'OnlineRecordStopped'])
      const [row] = await db.query<{ result: unknown }>(
        'select result from tasks where task_id = $1',
        [second],
      )
      assert.equal(row?.result, null)
      // The job is the other process's to finish.
      await db.query('update post_jobs set lease_until_ms = null where task_id = any($1)', [
        [first, second],
      ])
      ignoring = false
    })

    test('one app never holds every slot: with 2 slots and a share of 1, another app runs beside it', async () => {
      await postProcess()
      const release = new Map<string, () => void>()
      const running = new Set<string>()
      const mine = new Set<string>()
      const on = finishing(async (task) => {
        if (!mine.has(task.taskId)) return { videoInfos: [], omittedDurations: [] }
        running.add(task.taskId)
        await new Promise<void>((resolve) => release.set(task.taskId, resolve))
        running.delete(task.taskId)
        return { videoInfos: [], omittedDurations: [] }
      })
      const ids = (await stopped(on, [app, app, other])) as [string, string, string]
      for (const id of ids) mine.add(id)
      const [a1, a2, b1] = ids
      const pool = new PostJobs({
        db,
        clock,
        engine: on,
        settings: { concurrency: 2, perApp: 1, pollMs: 10 },
      })
      await pool.start()
      await until('two jobs run', () => running.size === 2)
      assert.deepEqual([...running].sort(), [a1, b1].sort(), 'A has one slot, B the other')
      release.get(a1)?.()
      await until('A takes its slot again', () => running.has(a2))
      assert.deepEqual([...running].sort(), [a2, b1].sort())
      release.get(a2)?.()
      release.get(b1)?.()
      await until('all done', () => running.size === 0)
      await pool.close()
      for (const id of ids)
        assert.equal((await engine.describe(id === b1 ? other : app, id)).Status, 'FINISHED')
    })

    test('on a sole store, a lease a crash left is void at start but stays a crash: the fresh job goes first', async () => {
      await postProcess()
      const order: string[] = []
      const on = finishing(async (task) => {
        order.push(task.taskId)
        return { videoInfos: [], omittedDurations: [] }
      })
      const [crashed, fresh] = (await stopped(on, [app, other])) as [string, string]
      // The process died holding `crashed` (attempt 1) and came back at once.
      await db.query('update post_jobs set lease_until_ms = $2, attempts = 1 where task_id = $1', [
        crashed,
        clock.now() + 30_000,
      ])
      const pool = new PostJobs({
        db,
        clock,
        engine: on,
        settings: { concurrency: 1, soleProcess: true, pollMs: 10 },
      })
      await pool.start()
      await until('both ran', () => order.length === 2)
      await pool.close()
      assert.deepEqual(order, [fresh, crashed])
      const done = await engine.describe(app, crashed)
      assert.equal(done.Status, 'FINISHED')
    })

    test('running tasks: unfinished, of this app, paged', async () => {
      const { total, tasks } = await engine.running(app, 0, 500)
      assert.equal(total, tasks.length)
      assert.ok(tasks.every((t) => t.status !== 'FINISHED'))
      const page = await engine.running(app, 1, 1)
      assert.ok(page.tasks.length <= 1)
      assert.equal(page.total, total)
    })
  })
}
