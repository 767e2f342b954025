// The task engine: PREPARED → RECORDING ⇄ PAUSED → STOPPED → FINISHED.
// Every transition is one transaction that also writes its callbacks into the
// outbox (events) and its timers, so a crash never separates them.
import { randomBytes } from 'node:crypto'
import {
  ApiError,
  type CallbackOf,
  type DescribeOnlineRecordResponse,
  type EventType,
  type FinishReason,
  type StartOnlineRecordRequest,
  toStorableText,
  type VideoInfo,
} from '@online-record/protocol'
import type { App } from '../apps/apps.ts'
import { verifyUserSig } from '../apps/usersig.ts'
import type { Clock } from '../clock.ts'
import type { Db, Queryable } from '../store/db.ts'
import {
  type FinishSpec,
  type JobLease,
  MAX_PROBLEMS,
  type Progress,
  type RecorderPort,
  type RecorderSignals,
  type RecordingResult,
  type TaskSpec,
} from './ports.ts'

export type TaskStatus = 'PREPARED' | 'RECORDING' | 'PAUSED' | 'STOPPED' | 'FINISHED'
const ACTIVE: readonly TaskStatus[] = ['PREPARED', 'RECORDING', 'PAUSED']

export interface EngineSettings {
  /** Paused this long: OnlineRecordLongPauseWarning. Default 20 min (the seed). */
  longPauseWarningMs: number
  /** Paused this long: OnlineRecordLongPauseForceStopped, then stop with FORCE_STOP. Default 30 min. */
  longPauseStopMs: number
  /** Recording this long: stop with FORCE_STOP. Default 24 h. */
  maxDurationMs: number
  /**
   * An event of an app without a callback URL is written due this much later
   * (the delivery retry window): it waits for a URL to be set, which makes it
   * due at once, and the dispatcher does not look at it meanwhile.
   */
  parkWithoutCallbackMs: number
}

export const DEFAULT_ENGINE_SETTINGS: EngineSettings = {
  longPauseWarningMs: 20 * 60_000,
  longPauseStopMs: 30 * 60_000,
  maxDurationMs: 24 * 3_600_000,
  parkWithoutCallbackMs: 2 * 86_400_000,
}

type TimerKind = 'idle' | 'max-duration' | 'long-pause-warning' | 'long-pause-stop'

/** Connections that fire a burst of long-pause warnings together on PostgreSQL. */
const WARNING_LANES = 2

/** One transition of a task, applied by #apply as a single statement. */
interface Transition {
  taskId: string
  /** Applies only in these states. */
  whereStatus?: readonly TaskStatus[]
  /** Applies only to a task of this app. */
  whereApp?: number
  /** Applies only while the task's post-processing job is at this attempt (no other process took it over). */
  whereJobAttempts?: number
  /** SET clause; `$v` placeholders come from `values`, in order. */
  set: string
  values?: unknown[]
  /** The event to append; without `data`, EventData is TaskId, RoomId and RecordUserId. */
  event?: { type: EventType; data?: unknown }
  /** The task leaves the active states: give its slot of the app's limit back. */
  releaseSlot?: boolean
  /** Timer kinds to delete; must not overlap `timers`. */
  deleteTimers?: readonly TimerKind[]
  /** Due times in Unix ms, or 'idle': now plus the task's AutoStopTimeout. */
  timers?: readonly [TimerKind, number | 'idle'][]
  /** The task is stopped: its post-processing job is queued, due at once. */
  queuePostJob?: boolean
  /** The task is finished: its post-processing job is done. */
  deletePostJob?: boolean
}

interface TaskRow {
  taskId: string
  sdkAppId: number
  roomId: number
  groupId: string
  recordUserId: string
  status: TaskStatus
  finishReason: FinishReason | ''
  request: StartOnlineRecordRequest
  createdAtMs: number
  recordStartMs: number | null
  recordStopMs: number | null
  pausedAtMs: number | null
  pausedTotalMs: number
  pauses: { pauseMs: number; resumeMs: number }[]
  exceptionCnt: number
  errorCode: string | null
  errorMessage: string | null
  result: RecordingResult | null
  lastActivityMs: number
  interrupts: Record<string, number>
}

const TASK_COLUMNS = `task_id as "taskId", sdk_app_id as "sdkAppId", room_id as "roomId",
  group_id as "groupId", record_user_id as "recordUserId", status, finish_reason as "finishReason",
  request, created_at_ms as "createdAtMs", record_start_ms as "recordStartMs",
  record_stop_ms as "recordStopMs", paused_at_ms as "pausedAtMs", paused_total_ms as "pausedTotalMs",
  pauses, exception_cnt as "exceptionCnt", error_code as "errorCode", error_message as "errorMessage",
  result, last_activity_ms as "lastActivityMs", interrupts`

/** 20 lowercase letters and digits, the shape of TIW's task ids. */
export function newTaskId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
  return Array.from(randomBytes(20), (b) => alphabet[b % 36]).join('')
}

const seconds = (ms: number) => Math.floor(ms / 1000)
const json = (value: unknown) => JSON.stringify(value)

export interface RunningTask {
  taskId: string
  createdAtMs: number
  roomId: number
  status: TaskStatus
  /** Post-processing done, 0–100 (a STOPPED task). */
  progress: number
}

export class TaskEngine {
  readonly #db: Db
  readonly #clock: Clock
  readonly #recorder: RecorderPort
  readonly #settings: EngineSettings
  /** Called after a commit that wrote events, so delivery can start at once. */
  readonly #onEvents: () => void
  /** Called after a task stopped, so post-processing can start at once. */
  readonly #onStopped: (taskId: string) => void
  /** Makes a recording's URL afresh for DescribeOnlineRecord (URLs that expire). */
  readonly #videoUrl: ((taskId: string, video: VideoInfo) => Promise<string>) | undefined
  readonly signals: RecorderSignals

  constructor(options: {
    db: Db
    clock: Clock
    recorder: RecorderPort
    settings?: Partial<EngineSettings>
    onEvents?: () => void
    onStopped?: (taskId: string) => void
    videoUrl?: (taskId: string, video: VideoInfo) => Promise<string>
  }) {
    this.#db = options.db
    this.#clock = options.clock
    this.#recorder = options.recorder
    this.#settings = { ...DEFAULT_ENGINE_SETTINGS, ...options.settings }
    this.#onEvents = options.onEvents ?? (() => {})
    this.#onStopped = options.onStopped ?? (() => {})
    this.#videoUrl = options.videoUrl
    this.signals = {
      ready: (taskId) => this.#recorderReady(taskId),
      failed: (taskId, message) => this.#recorderFailed(taskId, message),
      activity: (taskId) => this.#activity(taskId),
      exception: (taskId, message, streamId) => this.#exception(taskId, message, streamId),
      interrupted: (taskId, userId) => this.#interrupted(taskId, userId),
    }
  }

  // ---- actions ---------------------------------------------------------------

  /** StartOnlineRecord. Returns the TaskId; a bad RecordUserSig yields a task that ends with EXCEPTION. */
  async start(app: App, request: StartOnlineRecordRequest): Promise<string> {
    const now = this.#clock.now()
    const taskId = newTaskId()
    const sig = verifyUserSig(
      request.RecordUserSig,
      app.sdkAppId,
      app.userSigKey,
      request.RecordUserId,
      now,
    )
    const insert = `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status,
        finish_reason, request, created_at_ms, record_stop_ms, error_code, error_message, last_activity_ms)`
    const values = [
      taskId,
      app.sdkAppId,
      request.RoomId,
      request.GroupId ?? String(request.RoomId),
      request.RecordUserId,
      json(request),
      now,
    ]
    const ready = this.#recorder.readyAtStart === true
    if (sig.ok) {
      // One statement: take a slot of the app's limit and insert the task. The
      // partial unique indexes refuse a second active task in a room or for a
      // RecordUserId; the slot is given back with the statement if they do.
      // With a recorder ready at start, the task records from here: the same
      // statement writes OnlineRecordStarted and the idle and duration timers.
      const started = `,
           t as (insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status,
               finish_reason, request, created_at_ms, record_start_ms, last_activity_ms, next_seq)
             select $1, slot.sdk_app_id, $3, $4, $5, 'RECORDING', '', $6::jsonb, $7, $7, $7, 2 from slot
             returning task_id, sdk_app_id, room_id, record_user_id),
           e as (insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s,
               event_data, created_at_ms, next_attempt_ms)
             select $8, sdk_app_id, task_id, 1, 'OnlineRecordStarted', $9,
               ${IDENTITY_JSON_SQL}, $7, ${firstDueSql('t.sdk_app_id', '$7', '$12::int8')} from t),
           tm as (insert into timers (task_id, kind, due_ms)
             select task_id, v.kind, v.due from t,
               (values ('idle', $10::int8), ('max-duration', $11::int8)) as v (kind, due))
           select task_id from t`
      const inserted = await this.#inUseOnConflict(request, () =>
        this.#db.query(
          `with slot as (
             update apps set active_tasks = active_tasks + 1
             where sdk_app_id = $2 and active_tasks < max_concurrent_tasks returning sdk_app_id)
           ${
             ready
               ? started
               : `${insert}
           select $1, slot.sdk_app_id, $3, $4, $5, 'PREPARED', '', $6::jsonb, $7, null, null, null, $7 from slot
           returning task_id`
           }`,
          ready
            ? [
                ...values,
                `evt_${randomBytes(16).toString('hex')}`,
                seconds(now),
                now + autoStopMs({ request }),
                now + this.#settings.maxDurationMs,
                this.#settings.parkWithoutCallbackMs,
              ]
            : values,
        ),
      )
      if (inserted.length === 0) {
        throw new ApiError(
          'LimitExceeded.TaskConcurrency',
          `The app already has ${app.maxConcurrentTasks} active tasks, its limit.`,
        )
      }
    } else {
      // A task that could never record: FINISHED at once, with its result callback.
      await this.#db.transaction(async (tx) => {
        await tx.query(
          `${insert} values ($1, $2, $3, $4, $5, 'FINISHED', 'EXCEPTION', $6::jsonb, $7, $7,
             'FailedOperation.Record', $8, $7)`,
          [...values, `RecordUserSig is invalid: ${sig.message}`],
        )
        const task = (await this.#lock(tx, taskId)) as TaskRow
        await this.#appendEvent(
          tx,
          task,
          'OnlineRecordFinished',
          this.#finishedData(task, { videoInfos: [], omittedDurations: [] }),
        )
      })
    }
    if (!sig.ok || ready) this.#onEvents()
    if (!sig.ok) return taskId
    const spec: TaskSpec = { taskId, sdkAppId: app.sdkAppId, request }
    try {
      await this.#recorder.start(spec, this.signals)
    } catch (error) {
      await this.#recorderFailed(taskId, error instanceof Error ? error.message : String(error))
    }
    return taskId
  }

  async stop(app: App, taskId: string): Promise<void> {
    // One statement, no explicit transaction: it applies only to an active
    // task of this app; when it does not, a read says why.
    const stopped = await this.#apply(this.#db, {
      ...this.#stopping('USER_CALL'),
      taskId,
      whereStatus: ACTIVE,
      whereApp: app.sdkAppId,
    })
    if (!stopped) throw alreadyStopped(await this.#get(app, taskId))
    this.#onEvents()
    await this.#afterStop(taskId)
  }

  /** An operator's stop of any app's active task (FORCE_STOP). Returns whether it applied. */
  async forceStop(taskId: string): Promise<boolean> {
    const stopped = await this.#apply(this.#db, {
      ...this.#stopping('FORCE_STOP'),
      taskId,
      whereStatus: ACTIVE,
    })
    if (stopped) {
      this.#onEvents()
      await this.#afterStop(taskId)
    }
    return stopped
  }

  async pause(app: App, taskId: string): Promise<void> {
    await this.#transition(app, taskId, async (tx, task) => {
      if (!ACTIVE.includes(task.status)) throw alreadyStopped(task)
      if (task.status !== 'RECORDING') throw invalidStatus(task, 'pause')
      const now = this.#clock.now()
      await tx.query(`update tasks set status = 'PAUSED', paused_at_ms = $2 where task_id = $1`, [
        taskId,
        now,
      ])
      await this.#clearTimers(tx, taskId, ['idle'])
      await this.#setTimer(
        tx,
        taskId,
        'long-pause-warning',
        now + this.#settings.longPauseWarningMs,
      )
      await this.#setTimer(tx, taskId, 'long-pause-stop', now + this.#settings.longPauseStopMs)
    })
    await this.#recorder.pause(taskId)
  }

  async resume(app: App, taskId: string): Promise<void> {
    await this.#transition(app, taskId, async (tx, task) => {
      if (!ACTIVE.includes(task.status)) throw alreadyStopped(task)
      if (task.status !== 'PAUSED') throw invalidStatus(task, 'resume')
      const now = this.#clock.now()
      const pausedAt = task.pausedAtMs as number
      await tx.query(
        `update tasks set status = 'RECORDING', paused_at_ms = null, paused_total_ms = paused_total_ms + $2,
           pauses = pauses || $3::jsonb, last_activity_ms = $4 where task_id = $1`,
        [taskId, now - pausedAt, json([{ pauseMs: pausedAt, resumeMs: now }]), now],
      )
      await this.#clearTimers(tx, taskId, ['long-pause-warning', 'long-pause-stop'])
      await this.#setTimer(tx, taskId, 'idle', now + autoStopMs(task))
    })
    await this.#recorder.resume(taskId)
  }

  /** DescribeOnlineRecord's fields (without RequestId); a failed task is the API error FailedOperation.Record. */
  async describe(
    app: App,
    taskId: string,
  ): Promise<Omit<DescribeOnlineRecordResponse, 'RequestId'>> {
    const task = await this.#get(app, taskId)
    if (task.status === 'FINISHED' && task.errorCode)
      throw new ApiError('FailedOperation.Record', task.errorMessage ?? '')
    const result = task.result ?? { videoInfos: [], omittedDurations: [] }
    const urlOf = this.#videoUrl
    const videoInfos = urlOf
      ? await Promise.all(
          result.videoInfos.map(async (v) => ({ ...v, VideoUrl: await urlOf(task.taskId, v) })),
        )
      : result.videoInfos
    return {
      FinishReason: task.finishReason,
      TaskId: task.taskId,
      Status: task.status,
      RoomId: task.roomId,
      GroupId: task.groupId,
      RecordUserId: task.recordUserId,
      RecordStartTime: task.recordStartMs === null ? 0 : seconds(task.recordStartMs),
      RecordStopTime: task.recordStopMs === null ? 0 : seconds(task.recordStopMs),
      TotalTime: task.status === 'FINISHED' ? totalTime(task, result) : 0,
      ExceptionCnt: task.exceptionCnt + (result.exceptionCnt ?? 0),
      OmittedDurations: result.omittedDurations,
      VideoInfos: videoInfos,
      ReplayUrl: null,
      Interrupts: Object.entries(task.interrupts)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([UserId, Count]) => ({ UserId, Count })),
    }
  }

  /** Tasks not yet finished, created in the last 3 days, oldest first. */
  async running(
    app: App,
    offset: number,
    limit: number,
  ): Promise<{ total: number; tasks: RunningTask[] }> {
    const since = this.#clock.now() - 3 * 86_400_000
    const where = `sdk_app_id = $1 and status <> 'FINISHED' and created_at_ms >= $2`
    const [count] = await this.#db.query<{ n: number }>(
      `select count(*)::int4 as n from tasks where ${where}`,
      [app.sdkAppId, since],
    )
    const tasks = await this.#db.query<RunningTask>(
      `select t.task_id as "taskId", t.created_at_ms as "createdAtMs", t.room_id as "roomId",
         t.status, coalesce(j.progress, 0) as progress
       from tasks t left join post_jobs j using (task_id)
       where t.sdk_app_id = $1 and t.status <> 'FINISHED' and t.created_at_ms >= $2
       order by t.created_at_ms, t.task_id offset $3 limit $4`,
      [app.sdkAppId, since, offset, limit],
    )
    return { total: count?.n ?? 0, tasks }
  }

  // ---- timers -------------------------------------------------------------------

  /**
   * Fires every timer that is due, each exactly once even with several
   * processes on one database: a timer row is locked with SKIP LOCKED and
   * deleted in the transaction that applies it. Returns how many fired.
   */
  async runDueTimers(batch = 100): Promise<number> {
    const now = this.#clock.now()
    // On PostgreSQL two connections share a burst of warnings (SKIP LOCKED
    // keeps them apart); PGlite has one connection.
    const lanes = this.#db.dialect === 'postgres' ? WARNING_LANES : 1
    const warned = (
      await Promise.all(Array.from({ length: lanes }, () => this.#fireWarnings(now)))
    ).reduce((a, b) => a + b, 0)
    const stopped: string[] = []
    const fired = await this.#db.transaction(async (tx) => {
      const due = await tx.query<{ taskId: string; kind: TimerKind }>(
        `select task_id as "taskId", kind from timers
         where due_ms <= $1 and kind <> 'long-pause-warning'
         order by due_ms limit $2 for update skip locked`,
        [now, batch],
      )
      for (const { taskId, kind } of due) {
        await tx.query('delete from timers where task_id = $1 and kind = $2', [taskId, kind])
        const task = await this.#lock(tx, taskId)
        if (task === undefined || !ACTIVE.includes(task.status)) continue
        if (await this.#fire(tx, task, kind, now)) stopped.push(taskId)
      }
      return due.length
    })
    if (fired + warned > 0) this.#onEvents()
    for (const taskId of stopped) await this.#afterStop(taskId)
    return fired + warned
  }

  /** When the earliest timer comes due, so the caller can wake at that moment instead of on its next poll. */
  async nextTimerDueMs(): Promise<number | undefined> {
    const [row] = await this.#db.query<{ due: number }>(
      'select due_ms as due from timers order by due_ms limit 1',
    )
    return row?.due
  }

  /**
   * Long-pause warnings change no state, so they fire set-wise: one statement
   * deletes a batch of due warning timers (SKIP LOCKED, so processes share
   * them), numbers the events and writes them. A classroom platform can have
   * thousands of tasks paused at the same time of day.
   */
  async #fireWarnings(now: number, batch = 20_000): Promise<number> {
    let total = 0
    for (;;) {
      const [row] = await this.#db.query<{ n: number }>(
        `with due as (
           delete from timers where (task_id, kind) in (
             select task_id, kind from timers
             where kind = 'long-pause-warning' and due_ms <= $1
             order by due_ms limit $2 for update skip locked)
           returning task_id),
         t as (
           update tasks set next_seq = next_seq + 1 from due
           where tasks.task_id = due.task_id and tasks.status = 'PAUSED'
           returning tasks.task_id, tasks.sdk_app_id, tasks.room_id, tasks.record_user_id,
             tasks.paused_at_ms, tasks.next_seq - 1 as seq),
         e as (
           insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s,
             event_data, created_at_ms, next_attempt_ms)
           select 'evt_' || replace(gen_random_uuid()::text, '-', ''), sdk_app_id, task_id, seq,
             'OnlineRecordLongPauseWarning', $3,
             -- Compact JSON in the seed's field order, as the other events are written.
             format('{"TaskId":%s,"RoomId":%s,"RecordUserId":%s,"PauseTime":%s,"EstimateStopTime":%s}',
               to_json(task_id), room_id, to_json(record_user_id), paused_at_ms / 1000,
               (paused_at_ms + $4::int8) / 1000)::json,
             $1, ${firstDueSql('t.sdk_app_id', '$1', '$5::int8')}
           from t)
         select count(*)::int4 as n from due`,
        [
          now,
          batch,
          seconds(now),
          this.#settings.longPauseStopMs,
          this.#settings.parkWithoutCallbackMs,
        ],
        // Planned for what it finds: a generic plan for 20,000 rows once ran for minutes.
        { prepare: false },
      )
      const n = row?.n ?? 0
      total += n
      if (n < batch) return total
    }
  }

  async #fire(tx: Queryable, task: TaskRow, kind: TimerKind, now: number): Promise<boolean> {
    switch (kind) {
      case 'idle':
        if (task.status !== 'RECORDING') return false
        await this.#stopTx(tx, task, 'AUTO')
        return true
      case 'max-duration':
        await this.#stopTx(tx, task, 'FORCE_STOP')
        return true
      case 'long-pause-stop':
        if (task.status !== 'PAUSED') return false
        await this.#appendEvent(tx, task, 'OnlineRecordLongPauseForceStopped', {
          TaskId: task.taskId,
          RoomId: task.roomId,
          RecordUserId: task.recordUserId,
          PauseTime: seconds(task.pausedAtMs as number),
          StopTime: seconds(now),
        })
        await this.#stopTx(tx, task, 'FORCE_STOP')
        return true
      default:
        return false
    }
  }

  /**
   * A transition as one statement: updates the task (when it is in
   * `whereStatus`, and of `whereApp`), appends one event with the task's next
   * sequence number, deletes and upserts timers. A single statement is atomic
   * by itself, and a round trip is most of a transition's cost. Returns
   * whether it applied.
   */
  async #apply(q: Queryable, o: Transition): Promise<boolean> {
    const params: unknown[] = [o.taskId]
    const p = (value: unknown) => `$${params.push(value)}`
    let set = o.set
    for (const v of o.values ?? []) set = set.replace('$v', p(v))
    const now = this.#clock.now()
    const where = [
      'task_id = $1',
      ...(o.whereStatus ? [`status = any(${p(o.whereStatus)}::text[])`] : []),
      ...(o.whereApp !== undefined ? [`sdk_app_id = ${p(o.whereApp)}`] : []),
      ...(o.whereJobAttempts !== undefined
        ? [
            `exists (select 1 from post_jobs where task_id = $1 and attempts = ${p(o.whereJobAttempts)})`,
          ]
        : []),
    ]
    const ctes = [
      `t as (update tasks set ${set}${o.event ? ', next_seq = next_seq + 1' : ''}
        where ${where.join(' and ')}
        returning task_id, sdk_app_id, room_id, record_user_id, next_seq - 1 as seq,
          coalesce((request->>'AutoStopTimeout')::int8, 300) * 1000 as auto_stop_ms)`,
    ]
    if (o.releaseSlot) {
      ctes.push(`s as (update apps set active_tasks = active_tasks - 1
        where sdk_app_id = (select sdk_app_id from t))`)
    }
    if (o.deleteTimers?.length) {
      ctes.push(`d as (delete from timers where task_id = $1 and kind = any(${p(o.deleteTimers)}::text[])
        and exists (select 1 from t))`)
    }
    if (o.event) {
      // The three identifying fields come from the row itself; a fuller
      // EventData (Finished) is given.
      const data = o.event.data === undefined ? IDENTITY_JSON_SQL : `${p(json(o.event.data))}::json`
      ctes.push(`e as (insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s,
          event_data, created_at_ms, next_attempt_ms)
        select ${p(`evt_${randomBytes(16).toString('hex')}`)}, sdk_app_id, task_id, seq,
          ${p(o.event.type)}, ${p(seconds(now))}, ${data}, ${p(now)},
          ${firstDueSql('t.sdk_app_id', `$${params.length}`, `${p(this.#settings.parkWithoutCallbackMs)}::int8`)} from t)`)
    }
    if (o.queuePostJob) {
      const at = p(now)
      ctes.push(`j as (insert into post_jobs (task_id, due_ms, created_at_ms)
        select task_id, ${at}::int8, ${at}::int8 from t on conflict (task_id) do nothing)`)
    }
    if (o.deletePostJob) {
      ctes.push('dj as (delete from post_jobs where task_id = $1 and exists (select 1 from t))')
    }
    if (o.timers?.length) {
      // A due time is ms, or 'idle': now plus the task's AutoStopTimeout.
      const rows = o.timers
        .map(
          ([kind, due]) =>
            `(${p(kind)}, ${due === 'idle' ? `${p(now)}::int8 + t.auto_stop_ms` : `${p(due)}::int8`})`,
        )
        .join(', ')
      ctes.push(`tm as (insert into timers (task_id, kind, due_ms)
        select t.task_id, v.kind, v.due from t, lateral (values ${rows}) as v (kind, due)
        on conflict (task_id, kind) do update set due_ms = excluded.due_ms)`)
    }
    const [row] = await q.query<{ n: number }>(
      `with ${ctes.join(',\n')} select count(*)::int4 as n from t`,
      params,
    )
    return (row?.n ?? 0) > 0
  }

  /**
   * Post-processes one stopped task (its job is leased by the caller, under
   * `lease`) and turns it FINISHED with OnlineRecordFinished. Returns false
   * when the task is not STOPPED (any more), or when its job is no longer
   * this lease's: then nothing is written. Throws what post-processing throws.
   */
  async finalize(taskId: string, progress?: Progress, lease?: JobLease): Promise<boolean> {
    const [task] = await this.#db.query<TaskRow>(
      `select ${TASK_COLUMNS} from tasks where task_id = $1`,
      [taskId],
    )
    if (task?.status !== 'STOPPED') return false
    const result = await this.#recorder.finish(finishSpec(task), progress, lease)
    return this.#finished(task, result, undefined, lease?.attempts)
  }

  /**
   * Post-processing gave up: the task finishes with EXCEPTION and what was
   * stored so far, its Finished callback saying why. With `jobAttempts`, only
   * while its job is at that attempt.
   */
  async finalizeFailed(taskId: string, message: string, jobAttempts?: number): Promise<void> {
    const [task] = await this.#db.query<TaskRow>(
      `select ${TASK_COLUMNS} from tasks where task_id = $1`,
      [taskId],
    )
    if (task?.status !== 'STOPPED') return
    const result = (await this.#recorder.partial?.(finishSpec(task)).catch(() => undefined)) ?? {
      videoInfos: [],
      omittedDurations: [],
    }
    const failed: TaskRow = {
      ...task,
      finishReason: 'EXCEPTION',
      errorCode: task.errorCode ?? 'FailedOperation.Record',
      errorMessage: task.errorMessage ?? message,
    }
    await this.#finished(
      failed,
      result,
      {
        set: `, finish_reason = 'EXCEPTION', error_code = $v, error_message = $v`,
        values: [failed.errorCode, failed.errorMessage],
      },
      jobAttempts,
    )
  }

  /**
   * STOPPED → FINISHED only once, whoever gets here first; its post-processing
   * job goes with it. With `jobAttempts`, only while the job is at that
   * attempt (fencing: a run whose job was taken over writes nothing).
   */
  async #finished(
    task: TaskRow,
    result: RecordingResult,
    extra: { set: string; values: unknown[] } = { set: '', values: [] },
    jobAttempts?: number,
  ): Promise<boolean> {
    const applied = await this.#apply(this.#db, {
      taskId: task.taskId,
      whereStatus: ['STOPPED'],
      ...(jobAttempts !== undefined ? { whereJobAttempts: jobAttempts } : {}),
      set: `status = 'FINISHED', result = $v::jsonb${extra.set}`,
      values: [json(result), ...extra.values],
      event: { type: 'OnlineRecordFinished', data: this.#finishedData(task, result) },
      deletePostJob: true,
    })
    if (applied) this.#onEvents()
    return applied
  }

  // ---- recorder signals -----------------------------------------------------------

  async #recorderReady(taskId: string): Promise<void> {
    const now = this.#clock.now()
    const applied = await this.#apply(this.#db, {
      taskId,
      whereStatus: ['PREPARED'],
      set: `status = 'RECORDING', record_start_ms = $v, last_activity_ms = $v`,
      values: [now, now],
      event: { type: 'OnlineRecordStarted' },
      timers: [
        ['idle', 'idle'],
        ['max-duration', now + this.#settings.maxDurationMs],
      ],
    })
    if (applied) this.#onEvents()
  }

  async #recorderFailed(taskId: string, message: string): Promise<void> {
    let stopped = false
    await this.#db.transaction(async (tx) => {
      const task = await this.#lock(tx, taskId)
      if (task === undefined || !ACTIVE.includes(task.status)) return
      await tx.query(
        `update tasks set error_code = 'FailedOperation.Record', error_message = $2 where task_id = $1`,
        [taskId, message],
      )
      await this.#stopTx(tx, task, 'EXCEPTION')
      stopped = true
    })
    if (stopped) await this.#afterStop(taskId)
  }

  async #activity(taskId: string): Promise<void> {
    await this.#db.transaction(async (tx) => {
      const task = await this.#lock(tx, taskId)
      if (task?.status !== 'RECORDING') return
      const now = this.#clock.now()
      await tx.query('update tasks set last_activity_ms = $2 where task_id = $1', [taskId, now])
      await this.#setTimer(tx, taskId, 'idle', now + autoStopMs(task))
    })
  }

  async #exception(taskId: string, message: string, streamId?: string): Promise<void> {
    // Counted and said why in one statement (the problems list is capped; the count is not).
    const problem = {
      atMs: this.#clock.now(),
      ...(streamId === undefined ? {} : { streamId }),
      message: toStorableText(message.slice(0, 500)),
    }
    await this.#db.query(
      `update tasks set exception_cnt = exception_cnt + 1,
         problems = case when jsonb_array_length(problems) >= $3 then problems
           else problems || jsonb_build_array($2::jsonb) end
       where task_id = $1 and status in ('PREPARED', 'RECORDING', 'PAUSED', 'STOPPED')`,
      [taskId, JSON.stringify(problem), MAX_PROBLEMS],
    )
  }

  async #interrupted(taskId: string, userId: string): Promise<void> {
    await this.#db.query(
      `update tasks set interrupts = jsonb_set(interrupts, array[$2::text],
         to_jsonb(coalesce((interrupts->>$2)::int4, 0) + 1))
       where task_id = $1 and status in ('RECORDING', 'PAUSED')`,
      [taskId, userId],
    )
  }

  /**
   * A second active task in a room, or for a RecordUserId, breaks a partial
   * unique index; the client gets the matching ResourceInUse code, the
   * RecordUserId one first when both apply.
   */
  async #inUseOnConflict<T>(request: StartOnlineRecordRequest, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (error) {
      if ((error as { code?: string }).code !== '23505') throw error
      const [user] = await this.#db.query<{ taskId: string }>(
        `select task_id as "taskId" from tasks where sdk_app_id = $1 and record_user_id = $2
           and status in ('PREPARED', 'RECORDING', 'PAUSED')`,
        [request.SdkAppId, request.RecordUserId],
      )
      throw user
        ? new ApiError(
            'ResourceInUse.RecordUserId',
            `RecordUserId ${request.RecordUserId} is in use by task ${user.taskId}.`,
          )
        : new ApiError(
            'ResourceInUse',
            `Room ${request.RoomId} already has an active recording task.`,
          )
    }
  }

  // ---- helpers ------------------------------------------------------------------------

  async #get(app: App, taskId: string): Promise<TaskRow> {
    const [task] = await this.#db.query<TaskRow>(
      `select ${TASK_COLUMNS} from tasks where task_id = $1 and sdk_app_id = $2`,
      [taskId, app.sdkAppId],
    )
    if (task === undefined)
      throw new ApiError('InvalidParameter.TaskNotFound', `Task ${taskId} does not exist.`)
    return task
  }

  async #lock(tx: Queryable, taskId: string): Promise<TaskRow | undefined> {
    const [task] = await tx.query<TaskRow>(
      `select ${TASK_COLUMNS} from tasks where task_id = $1 for update`,
      [taskId],
    )
    return task
  }

  async #transition(
    app: App,
    taskId: string,
    fn: (tx: Queryable, task: TaskRow) => Promise<void>,
  ): Promise<void> {
    await this.#db.transaction(async (tx) => {
      const task = await this.#lock(tx, taskId)
      // Another app's task does not exist for this one.
      if (task === undefined || task.sdkAppId !== app.sdkAppId) {
        throw new ApiError('InvalidParameter.TaskNotFound', `Task ${taskId} does not exist.`)
      }
      await fn(tx, task)
    })
    this.#onEvents()
  }

  /** → STOPPED with `reason` inside `tx`, which holds the task's lock. */
  async #stopTx(tx: Queryable, task: TaskRow, reason: FinishReason): Promise<void> {
    await this.#apply(tx, { ...this.#stopping(reason), taskId: task.taskId })
  }

  /**
   * The STOPPED transition: OnlineRecordStopped, the app's slot given back,
   * timers cleared, and a post-processing job queued, due at once: any
   * process's worker pool takes it. A pause still open at the stop ends with it.
   */
  #stopping(reason: FinishReason): Omit<Transition, 'taskId'> {
    const now = this.#clock.now()
    return {
      set: `status = 'STOPPED', finish_reason = $v, record_stop_ms = $v, paused_at_ms = null,
        paused_total_ms = paused_total_ms
          + case when status = 'PAUSED' and paused_at_ms < $v then $v - paused_at_ms else 0 end,
        pauses = pauses || case when status = 'PAUSED' and paused_at_ms < $v
          then jsonb_build_array(jsonb_build_object('pauseMs', paused_at_ms, 'resumeMs', $v::int8))
          else '[]'::jsonb end`,
      values: [reason, now, now, now, now, now],
      event: { type: 'OnlineRecordStopped' },
      releaseSlot: true,
      deleteTimers: ['idle', 'max-duration', 'long-pause-warning', 'long-pause-stop'],
      queuePostJob: true,
    }
  }

  /** Capture ends (in the background: nobody waits for it) and post-processing is woken. */
  async #afterStop(taskId: string): Promise<void> {
    this.#recorder.stop(taskId).catch(() => {
      // Capture already ended; post-processing works from what was written.
    })
    this.#onStopped(taskId)
  }

  async #setTimer(tx: Queryable, taskId: string, kind: TimerKind, dueMs: number): Promise<void> {
    await this.#setTimers(tx, taskId, [[kind, dueMs]])
  }

  /** Creates or moves several timers of one task in one statement. */
  async #setTimers(
    tx: Queryable,
    taskId: string,
    timers: readonly [TimerKind, number][],
  ): Promise<void> {
    const values = timers.map((_, i) => `($1, $${2 * i + 2}, $${2 * i + 3})`).join(', ')
    await tx.query(
      `insert into timers (task_id, kind, due_ms) values ${values}
       on conflict (task_id, kind) do update set due_ms = excluded.due_ms`,
      [taskId, ...timers.flat()],
    )
  }

  async #clearTimers(tx: Queryable, taskId: string, kinds: TimerKind[]): Promise<void> {
    await tx.query('delete from timers where task_id = $1 and kind = any($2::text[])', [
      taskId,
      kinds,
    ])
  }

  #finishedData(
    task: TaskRow,
    result: RecordingResult,
  ): CallbackOf<'OnlineRecordFinished'>['EventData'] {
    return {
      TaskId: task.taskId,
      RoomId: task.roomId,
      GroupId: task.groupId,
      RecordUserId: task.recordUserId,
      FinishReason: (task.finishReason || 'EXCEPTION') as FinishReason,
      RecordStartTime: task.recordStartMs === null ? 0 : seconds(task.recordStartMs),
      RecordStopTime: seconds(task.recordStopMs ?? this.#clock.now()),
      TotalTime: totalTime(task, result),
      ExceptionCnt: task.exceptionCnt + (result.exceptionCnt ?? 0),
      OmittedDurations: result.omittedDurations,
      VideoInfos: result.videoInfos,
      ...(task.errorCode
        ? { Error: { Code: task.errorCode, Message: task.errorMessage ?? '' } }
        : {}),
    }
  }

  async #appendEvent<T extends EventType>(
    tx: Queryable,
    task: TaskRow,
    type: T,
    data: CallbackOf<T>['EventData'],
  ): Promise<void> {
    const now = this.#clock.now()
    // One round trip: take the task's next sequence number and insert the event.
    await tx.query(
      `with s as (update tasks set next_seq = next_seq + 1 where task_id = $3 returning next_seq - 1 as seq)
       insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s, event_data,
         created_at_ms, next_attempt_ms)
       select $1, $2, $3, s.seq, $4, $5, $6::json, $7, ${firstDueSql('$2', '$7', '$8::int8')} from s`,
      [
        `evt_${randomBytes(16).toString('hex')}`,
        task.sdkAppId,
        task.taskId,
        type,
        seconds(now),
        json(data),
        now,
        this.#settings.parkWithoutCallbackMs,
      ],
    )
  }
}

/**
 * SQL: EventData of TaskId, RoomId and RecordUserId from a task row's columns,
 * compact and in the seed's field order, as the other events are written.
 */
const IDENTITY_JSON_SQL = `format('{"TaskId":%s,"RoomId":%s,"RecordUserId":%s}',
  to_json(task_id), room_id, to_json(record_user_id))::json`

/** SQL: when an event of the app `appSql` is first due, `nowSql` or parked (see parkWithoutCallbackMs). */
function firstDueSql(appSql: string, nowSql: string, parkSql: string): string {
  return `${nowSql} + case when (select a.callback_url from apps a where a.sdk_app_id = ${appSql}) = ''
    then ${parkSql} else 0 end`
}

function finishSpec(task: TaskRow): FinishSpec {
  return {
    taskId: task.taskId,
    sdkAppId: task.sdkAppId,
    request: task.request,
    recordStartMs: task.recordStartMs,
    recordStopMs: task.recordStopMs,
    pauses: task.pauses,
  }
}

function autoStopMs(task: Pick<TaskRow, 'request'>): number {
  return (task.request.AutoStopTimeout ?? 300) * 1000
}

/** Replay length: the recorder's figure, else recording time without paused time. */
function totalTime(task: TaskRow, result: RecordingResult): number {
  if (result.totalTimeMs !== undefined) return result.totalTimeMs
  if (task.recordStartMs === null || task.recordStopMs === null) return 0
  return Math.max(0, task.recordStopMs - task.recordStartMs - task.pausedTotalMs)
}

function alreadyStopped(task: TaskRow): ApiError {
  return new ApiError(
    'UnsupportedOperation.TaskHasAlreadyStopped',
    `Task ${task.taskId} is ${task.status}.`,
  )
}

function invalidStatus(task: TaskRow, action: string): ApiError {
  return new ApiError(
    'UnsupportedOperation.InvalidTaskStatus',
    `Task ${task.taskId} is ${task.status} and cannot ${action}.`,
  )
}
