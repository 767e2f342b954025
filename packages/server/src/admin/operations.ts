// What an operator can do, once: apps, tasks across apps, callbacks, and what
// the deployment is. The admin HTTP API (admin-api.ts) serves these; the CLI
// calls them through that API, or directly on the store when no service runs.
import { z } from 'zod'
import { type App, AppInputSchema, AppPatchSchema, type Apps } from '../apps/apps.ts'
import { genUserSig } from '../apps/usersig.ts'
import type { Clock } from '../clock.ts'
import {
  type CallbackAttemptRow,
  type CallbackEventRow,
  getCallback,
  listCallbacks,
  resendCallbacks,
  unknownCallbackIds,
} from '../delivery/outbox.ts'
import type { TaskEngine } from '../engine/engine.ts'
import { callbackUrlProblem } from '../net/url-policy.ts'
import type { Db } from '../store/db.ts'

/** A refusal with an HTTP status and a stable code. */
export class AdminError extends Error {
  override name = 'AdminError'
  readonly status: 400 | 401 | 404 | 409 | 503
  readonly code: string
  constructor(status: AdminError['status'], code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** An app as listed: no secrets. */
export interface AppView {
  sdkAppId: number
  secretId: string
  callbackUrl: string
  maxConcurrentTasks: number
  rateLimit: number | null
  rateBurst: number | null
  disabled: boolean
  createdAt: string
}

/** An app with its secrets (show, create, rotate). */
export interface AppSecrets extends AppView {
  secretKey: string
  userSigKey: string
  webhookSecret: string
  previousWebhookSecret: string | null
  previousWebhookSecretUntil: string | null
  callbackKey: string
}

export interface TaskView {
  taskId: string
  sdkAppId: number
  roomId: number
  status: string
  finishReason: string
  createdAt: string
  recordStartTime: string | null
  recordStopTime: string | null
  exceptionCnt: number
  /** Post-processing of a STOPPED task: its stage and progress (0–100). */
  postProcessing: {
    stage: string
    progress: number
    attempts: number
    lastError: string | null
  } | null
}

export interface TaskDetail extends TaskView {
  groupId: string
  recordUserId: string
  request: unknown
  error: { code: string; message: string } | null
  result: unknown
  problems: unknown[]
  interrupts: Record<string, number>
  /** Every callback of the task in order, each with its attempts. */
  events: (CallbackEventRow & { attemptLog: CallbackAttemptRow[] })[]
}

export interface ProcessView {
  instanceId: string
  pid: number | null
  host: string | null
  version: string | null
  url: string | null
  startedAt: string | null
  heartbeatAgeMs: number
}

export interface ServiceInfo {
  version: string
  store: { kind: 'pglite' | 'postgres'; location: string }
  api: string
  ingests: string[]
  storage: string
  startedAt: string
  draining: boolean
  /** The processes sharing the store, with a heartbeat in the last 15 s. */
  processes: ProcessView[]
  /** WHIP in this process (absent when it is off). */
  whip?: WhipInfo
}

export interface WhipInfo {
  /** Publishes held, and of them the offers not yet connected. */
  publishers: number
  connecting: number
  /** Publishes admitted at once: ONLINE_RECORD_WHIP_MAX_PUBLISHERS, or fewer when the UDP ports allow fewer. */
  capacity: number
  /** The UDP port range, the ports one publish takes, those held and free. */
  ports: { range: string; perPublisher: number; inUse: number; free: number }
  /** What one tenant may hold at once. */
  quotas: {
    perUser: number
    perRoom: number
    perApp: number
    connectingPerUser: number
    connectingPerApp: number
  }
}

export const TASK_STATUSES = ['PREPARED', 'RECORDING', 'PAUSED', 'STOPPED', 'FINISHED'] as const

export const TaskFilterSchema = z.strictObject({
  sdkAppId: z.coerce.number().int().positive().optional(),
  status: z.enum(TASK_STATUSES).optional(),
  roomId: z.coerce.number().int().positive().optional(),
  /** Created at or after (ISO time or Unix ms). */
  since: z.string().optional(),
  until: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(200).optional(),
})
export type TaskFilter = z.input<typeof TaskFilterSchema>

export const CallbackFilterSchema = z.strictObject({
  sdkAppId: z.coerce.number().int().positive().optional(),
  taskId: z.string().max(256).optional(),
  state: z.enum(['pending', 'delivered', 'failed']).optional(),
  since: z.string().optional(),
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(50),
})

export const ResendSchema = z
  .strictObject({
    eventIds: z.array(z.string().min(1).max(256)).min(1).max(500).optional(),
    sdkAppId: z.int().positive().optional(),
    since: z.string().optional(),
  })
  .refine((r) => (r.eventIds === undefined) !== (r.since === undefined), {
    message: 'give eventIds, or since (with sdkAppId), not both',
  })

export const RotateSchema = z.strictObject({ kind: z.enum(['api', 'webhook', 'usersig']) })

export const UserSigRequestSchema = z.strictObject({
  userId: z.string().regex(/^[A-Za-z0-9_.@-]{1,64}$/, 'must be 1 to 64 letters, digits, _ . @ -'),
  expireSeconds: z
    .int()
    .min(60)
    .max(10 * 365 * 86_400)
    .default(7 * 86_400),
})

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString())

/** An ISO time or Unix ms, as Unix ms. */
export function timeOf(text: string | undefined, field: string): number | undefined {
  if (text === undefined) return undefined
  const ms = /^\d{10,15}$/.test(text) ? Number(text) : Date.parse(text)
  if (Number.isNaN(ms))
    throw new AdminError(400, 'invalid', `${field} must be an ISO time or Unix ms`)
  return ms
}

/** Parses `input` with `schema`, or an AdminError naming the field. */
export function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {})
  if (result.success) return result.data
  const issue = result.error.issues[0] as z.core.$ZodIssue
  const path = issue.path.map(String).join('.')
  throw new AdminError(400, 'invalid', `${path ? `${path}: ` : ''}${issue.message}`)
}

function appView(a: App): AppView {
  return {
    sdkAppId: a.sdkAppId,
    secretId: a.secretId,
    callbackUrl: a.callbackUrl,
    maxConcurrentTasks: a.maxConcurrentTasks,
    rateLimit: a.rateLimit,
    rateBurst: a.rateBurst,
    disabled: a.disabledAtMs !== null,
    createdAt: iso(a.createdAtMs) as string,
  }
}

function appSecrets(a: App): AppSecrets {
  return {
    ...appView(a),
    secretKey: a.secretKey,
    userSigKey: a.userSigKey,
    webhookSecret: a.webhookSecret,
    previousWebhookSecret: a.previousWebhookSecret,
    previousWebhookSecretUntil: iso(a.previousWebhookSecretUntilMs),
    callbackKey: a.callbackKey,
  }
}

const TASK_VIEW_COLUMNS = `t.task_id as "taskId", t.sdk_app_id as "sdkAppId", t.room_id as "roomId",
  t.status, t.finish_reason as "finishReason", t.created_at_ms as "createdAtMs",
  t.record_start_ms as "recordStartMs", t.record_stop_ms as "recordStopMs",
  t.exception_cnt as "exceptionCnt", j.stage as "jobStage", j.progress as "jobProgress",
  j.attempts as "jobAttempts", j.last_error as "jobError"`

interface TaskRowView {
  taskId: string
  sdkAppId: number
  roomId: number
  status: string
  finishReason: string
  createdAtMs: number
  recordStartMs: number | null
  recordStopMs: number | null
  exceptionCnt: number
  jobStage: string | null
  jobProgress: number | null
  jobAttempts: number | null
  jobError: string | null
}

function taskView(r: TaskRowView): TaskView {
  return {
    taskId: r.taskId,
    sdkAppId: r.sdkAppId,
    roomId: r.roomId,
    status: r.status,
    finishReason: r.finishReason,
    createdAt: iso(r.createdAtMs) as string,
    recordStartTime: iso(r.recordStartMs),
    recordStopTime: iso(r.recordStopMs),
    exceptionCnt: r.exceptionCnt,
    postProcessing:
      r.jobStage === null
        ? null
        : {
            stage: r.jobStage,
            progress: r.jobProgress ?? 0,
            attempts: r.jobAttempts ?? 0,
            lastError: r.jobError,
          },
  }
}

const encodeCursor = (createdAtMs: number, taskId: string) =>
  Buffer.from(JSON.stringify([createdAtMs, taskId])).toString('base64url')

function decodeCursor(cursor: string): [number, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      Number.isSafeInteger(value[0]) &&
      value[0] >= 0 &&
      typeof value[1] === 'string' &&
      value[1].length <= 256
    )
      return [value[0], value[1]]
  } catch {}
  throw new AdminError(400, 'invalid', 'cursor is not one this API gave')
}

export interface AdminDeps {
  db: Db
  apps: Apps
  engine: TaskEngine
  clock: Clock
  /** Events became due (a callback URL set, a resend): wake delivery. */
  changed(): void
  /** What the running deployment is; undefined when the CLI works on the store alone. */
  info?(): Promise<ServiceInfo>
}

export class AdminOperations {
  readonly #d: AdminDeps

  constructor(deps: AdminDeps) {
    this.#d = deps
  }

  async info(): Promise<ServiceInfo> {
    if (this.#d.info === undefined) throw new AdminError(503, 'no_service', 'no service is running')
    return this.#d.info()
  }

  // ---- apps ---------------------------------------------------------------------

  async listApps(): Promise<AppView[]> {
    return (await this.#d.apps.list()).map(appView)
  }

  async createApp(input: unknown): Promise<AppSecrets> {
    const parsed = parse(AppInputSchema, input)
    if (await this.#d.apps.get(parsed.sdkAppId)) {
      throw new AdminError(409, 'exists', `app ${parsed.sdkAppId} exists already`)
    }
    try {
      return appSecrets(await this.#d.apps.create(parsed))
    } catch (error) {
      // Two creates at once, or a SecretId another app has.
      if ((error as { code?: string }).code === '23505')
        throw new AdminError(409, 'exists', `app ${parsed.sdkAppId} or SecretId exists already`)
      throw error
    }
  }

  async #app(sdkAppId: number): Promise<App> {
    const app = await this.#d.apps.get(sdkAppId)
    if (app === undefined) throw new AdminError(404, 'not_found', `no app ${sdkAppId}`)
    return app
  }

  async getApp(sdkAppId: number): Promise<AppSecrets> {
    return appSecrets(await this.#app(sdkAppId))
  }

  async updateApp(sdkAppId: number, input: unknown): Promise<AppSecrets> {
    const patch = parse(AppPatchSchema, input)
    if (patch.callbackUrl !== undefined && patch.callbackUrl !== '') {
      const problem = callbackUrlProblem(patch.callbackUrl, false)
      if (problem) throw new AdminError(400, 'invalid', `callbackUrl ${problem}`)
    }
    await this.#app(sdkAppId)
    const app = (await this.#d.apps.update(sdkAppId, patch)) as App
    if (patch.callbackUrl !== undefined) this.#d.changed()
    return appSecrets(app)
  }

  async rotate(sdkAppId: number, kind: unknown): Promise<AppSecrets> {
    const k = parse(RotateSchema.shape.kind, kind)
    await this.#app(sdkAppId)
    return appSecrets((await this.#d.apps.rotate(sdkAppId, k)) as App)
  }

  /** A UserSig for a user of the app, as an app backend makes them. */
  async userSig(sdkAppId: number, input: unknown): Promise<{ userSig: string; expiresAt: string }> {
    const { userId, expireSeconds } = parse(UserSigRequestSchema, input)
    const app = await this.#app(sdkAppId)
    const now = this.#d.clock.now()
    return {
      userSig: genUserSig(app.sdkAppId, app.userSigKey, userId, expireSeconds, now),
      expiresAt: iso(now + expireSeconds * 1000) as string,
    }
  }

  // ---- tasks ----------------------------------------------------------------------

  /** Tasks of every app (or one), newest first, a page at a time. */
  async listTasks(input: unknown): Promise<{ tasks: TaskView[]; nextCursor: string | null }> {
    const f = parse(TaskFilterSchema, input)
    const since = timeOf(f.since, 'since')
    const until = timeOf(f.until, 'until')
    const [afterMs, afterId] = f.cursor ? decodeCursor(f.cursor) : [null, null]
    const rows = await this.#d.db.query<TaskRowView>(
      `select ${TASK_VIEW_COLUMNS} from tasks t left join post_jobs j using (task_id)
       where ($1::int8 is null or t.sdk_app_id = $1)
         and ($2::text is null or t.status = $2)
         and ($3::int8 is null or t.room_id = $3)
         and ($4::int8 is null or t.created_at_ms >= $4)
         and ($5::int8 is null or t.created_at_ms < $5)
         and ($6::int8 is null or (t.created_at_ms, t.task_id) < ($6, $7::text))
       order by t.created_at_ms desc, t.task_id desc limit $8`,
      [
        f.sdkAppId ?? null,
        f.status ?? null,
        f.roomId ?? null,
        since ?? null,
        until ?? null,
        afterMs,
        afterId,
        f.limit + 1,
      ],
    )
    const page = rows.slice(0, f.limit)
    const last = page.at(-1)
    return {
      tasks: page.map(taskView),
      nextCursor:
        rows.length > f.limit && last ? encodeCursor(last.createdAtMs, last.taskId) : null,
    }
  }

  async getTask(taskId: string): Promise<TaskDetail> {
    const [row] = await this.#d.db.query<
      TaskRowView & {
        groupId: string
        recordUserId: string
        request: unknown
        errorCode: string | null
        errorMessage: string | null
        result: unknown
        problems: unknown[]
        interrupts: Record<string, number>
      }
    >(
      `select ${TASK_VIEW_COLUMNS}, t.group_id as "groupId", t.record_user_id as "recordUserId",
         t.request, t.error_code as "errorCode", t.error_message as "errorMessage", t.result,
         t.problems, t.interrupts
       from tasks t left join post_jobs j using (task_id) where t.task_id = $1`,
      [taskId],
    )
    if (row === undefined) throw new AdminError(404, 'not_found', `no task ${taskId}`)
    const { events } = await listCallbacks(this.#d.db, this.#d.clock, { taskId, limit: 500 })
    const timeline = []
    for (const e of events.sort((a, b) => a.seq - b.seq)) {
      const full = await getCallback(this.#d.db, this.#d.clock, e.eventId)
      timeline.push({ ...e, attemptLog: full?.attemptLog ?? [] })
    }
    return {
      ...taskView(row),
      groupId: row.groupId,
      recordUserId: row.recordUserId,
      request: row.request,
      error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
      result: row.result,
      problems: row.problems,
      interrupts: row.interrupts,
      events: timeline,
    }
  }

  /** Stops an active task of any app (FinishReason FORCE_STOP). */
  async stopTask(taskId: string): Promise<TaskView> {
    const stopped = await this.#d.engine.forceStop(taskId)
    if (!stopped) {
      const task = await this.getTask(taskId)
      throw new AdminError(409, 'not_active', `task ${taskId} is ${task.status}`)
    }
    return this.getTask(taskId)
  }

  // ---- callbacks --------------------------------------------------------------------

  async listCallbacks(input: unknown) {
    const f = parse(CallbackFilterSchema, input)
    const since = timeOf(f.since, 'since')
    return listCallbacks(this.#d.db, this.#d.clock, {
      ...(f.sdkAppId === undefined ? {} : { sdkAppId: f.sdkAppId }),
      ...(f.taskId === undefined ? {} : { taskId: f.taskId }),
      ...(f.state === undefined ? {} : { state: f.state }),
      ...(since === undefined ? {} : { sinceMs: since }),
      offset: f.offset,
      limit: f.limit,
    })
  }

  async getCallback(eventId: string) {
    const event = await getCallback(this.#d.db, this.#d.clock, eventId)
    if (event === undefined) throw new AdminError(404, 'not_found', `no event ${eventId}`)
    return event
  }

  /** Sends events again now with a fresh schedule: these ids, or an app's failed ones since a time. */
  async resend(input: unknown): Promise<{ eventIds: string[] }> {
    const r = parse(ResendSchema, input)
    if (r.eventIds) {
      const unknown = await unknownCallbackIds(this.#d.db, r.eventIds, r.sdkAppId)
      if (unknown.length > 0)
        throw new AdminError(404, 'not_found', `no event ${unknown.join(', ')}; nothing was resent`)
    } else if (r.sdkAppId === undefined) {
      throw new AdminError(400, 'invalid', 'since needs sdkAppId')
    }
    const eventIds = await resendCallbacks(
      this.#d.db,
      this.#d.clock,
      r.eventIds
        ? { eventIds: r.eventIds, ...(r.sdkAppId === undefined ? {} : { sdkAppId: r.sdkAppId }) }
        : { sdkAppId: r.sdkAppId as number, sinceMs: timeOf(r.since, 'since') as number },
    )
    if (eventIds.length > 0) this.#d.changed()
    return { eventIds }
  }
}
