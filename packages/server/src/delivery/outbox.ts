// Reading the outbox and its attempt log, and sending events again: what the
// `callbacks` CLI and the Ext* API actions do.
import type { Clock } from '../clock.ts'
import type { Db, Queryable } from '../store/db.ts'

export type CallbackState = 'pending' | 'delivered' | 'failed'

export interface CallbackEventRow {
  eventId: string
  sdkAppId: number
  taskId: string
  seq: number
  eventType: string
  timestampS: number
  createdAtMs: number
  state: CallbackState
  attempts: number
  /** Next attempt (or the end of the one in flight) while pending. */
  nextAttemptMs: number
  inFlight: boolean
  lastAttemptMs: number | null
  lastStatus: number | null
  lastError: string | null
  deliveredAtMs: number | null
}

export interface CallbackAttemptRow {
  attempt: number
  atMs: number
  url: string
  status: number | null
  latencyMs: number
  response: string | null
  error: string | null
}

export interface CallbackFilter {
  sdkAppId?: number
  taskId?: string
  state?: CallbackState
  /** Events created at or after this Unix ms. */
  sinceMs?: number
  offset?: number
  limit?: number
}

/** Why an event of an app without a callback URL waits. */
export const NO_CALLBACK_URL = 'the app has no callback URL (SetOnlineRecordCallback)'

const columns = (nowParam: string) => `event_id as "eventId", sdk_app_id as "sdkAppId",
  task_id as "taskId", seq, event_type as "eventType", timestamp_s as "timestampS",
  created_at_ms as "createdAtMs", state, attempts, next_attempt_ms as "nextAttemptMs",
  (state = 'pending' and coalesce(lease_until_ms > ${nowParam}, false)) as "inFlight",
  last_attempt_ms as "lastAttemptMs", last_status as "lastStatus",
  coalesce(last_error, case when state = 'pending' and (select a.callback_url from apps a
    where a.sdk_app_id = events.sdk_app_id) = '' then '${NO_CALLBACK_URL}' end) as "lastError",
  delivered_at_ms as "deliveredAtMs"`

function where(filter: CallbackFilter, params: unknown[]): string {
  const parts: string[] = []
  const p = (v: unknown) => `$${params.push(v)}`
  if (filter.sdkAppId !== undefined) parts.push(`sdk_app_id = ${p(filter.sdkAppId)}`)
  if (filter.taskId !== undefined) parts.push(`task_id = ${p(filter.taskId)}`)
  if (filter.state !== undefined) parts.push(`state = ${p(filter.state)}`)
  if (filter.sinceMs !== undefined) parts.push(`created_at_ms >= ${p(filter.sinceMs)}`)
  return parts.length === 0 ? '' : `where ${parts.join(' and ')}`
}

/** Events matching `filter`, newest first, with the total count. */
export async function listCallbacks(
  db: Queryable,
  clock: Clock,
  filter: CallbackFilter,
): Promise<{ total: number; events: CallbackEventRow[] }> {
  const params: unknown[] = []
  const w = where(filter, params)
  const [count] = await db.query<{ n: number }>(
    `select count(*)::int4 as n from events ${w}`,
    params,
  )
  const now = `$${params.push(clock.now())}`
  const events = await db.query<CallbackEventRow>(
    `select ${columns(now)} from events ${w}
     order by created_at_ms desc, task_id, seq desc
     offset $${params.push(filter.offset ?? 0)} limit $${params.push(filter.limit ?? 100)}`,
    params,
  )
  return { total: count?.n ?? 0, events }
}

/** One event with its body data and every attempt, or undefined (also for another app's event). */
export async function getCallback(
  db: Queryable,
  clock: Clock,
  eventId: string,
  sdkAppId?: number,
): Promise<
  (CallbackEventRow & { eventData: unknown; attemptLog: CallbackAttemptRow[] }) | undefined
> {
  const params: unknown[] = [eventId]
  const app = sdkAppId === undefined ? '' : ` and sdk_app_id = $${params.push(sdkAppId)}`
  const now = `$${params.push(clock.now())}`
  const [event] = await db.query<CallbackEventRow & { eventData: unknown }>(
    `select ${columns(now)}, event_data as "eventData" from events where event_id = $1${app}`,
    params,
  )
  if (event === undefined) return undefined
  const attemptLog = await db.query<CallbackAttemptRow>(
    `select attempt, at_ms as "atMs", url, status, latency_ms as "latencyMs", response, error
     from callback_attempts where event_id = $1 order by attempt`,
    [eventId],
  )
  return { ...event, attemptLog }
}

/** Those of `eventIds` that are not events (of the app, when given), in their order. */
export async function unknownCallbackIds(
  db: Queryable,
  eventIds: readonly string[],
  sdkAppId?: number,
): Promise<string[]> {
  const rows = await db.query<{ eventId: string }>(
    `select event_id as "eventId" from events where event_id = any($1::text[])
       ${sdkAppId === undefined ? '' : 'and sdk_app_id = $2'}`,
    sdkAppId === undefined ? [eventIds] : [eventIds, sdkAppId],
  )
  const known = new Set(rows.map((r) => r.eventId))
  return eventIds.filter((id) => !known.has(id))
}

/**
 * Makes events due now with a fresh retry schedule: the given ones (any
 * state), or every failed event of the app created since `sinceMs`. Events
 * in flight are left alone. Returns the ids that will be sent again.
 */
export async function resendCallbacks(
  db: Db,
  clock: Clock,
  target:
    | { sdkAppId?: number; eventIds: readonly string[] }
    | { sdkAppId: number; sinceMs: number },
  /** Events this process holds in flight with leases in memory. */
  held: readonly string[] = [],
): Promise<string[]> {
  const now = clock.now()
  const params: unknown[] = [now, held]
  const p = (v: unknown) => `$${params.push(v)}`
  const which =
    'eventIds' in target
      ? `event_id = any(${p(target.eventIds)}::text[])${target.sdkAppId === undefined ? '' : ` and sdk_app_id = ${p(target.sdkAppId)}`}`
      : `sdk_app_id = ${p(target.sdkAppId)} and state = 'failed' and created_at_ms >= ${p(target.sinceMs)}`
  const rows = await db.query<{ eventId: string }>(
    `update events set state = 'pending', next_attempt_ms = $1, retry_base = attempts,
       lease_until_ms = null
     where ${which} and not (state = 'pending' and coalesce(lease_until_ms > $1, false))
       and event_id <> all($2::text[])
     returning event_id as "eventId"`,
    params,
  )
  // Other processes' dispatchers hear of it too (the insert trigger covers only new events).
  if (rows.length > 0 && db.dialect === 'postgres') {
    await db.query(`select pg_notify('online_record_events', '')`)
  }
  return rows.map((r) => r.eventId)
}
