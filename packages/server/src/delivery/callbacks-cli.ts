// `online-record callbacks list|show|resend`: the outbox and its attempt log
// in the store the service uses. On PostgreSQL it works beside running
// services (a resend wakes their dispatchers); PGlite's directory is one
// process's at a time, so stop the service first.
import { parseArgs } from 'node:util'
import { systemClock } from '../clock.ts'
import { loadConfig } from '../config.ts'
import { openStore } from '../service.ts'
import type { Db } from '../store/db.ts'
import {
  type CallbackEventRow,
  type CallbackState,
  getCallback,
  listCallbacks,
  resendCallbacks,
  unknownCallbackIds,
} from './outbox.ts'

export const CALLBACKS_USAGE = `Callbacks (the outbox and every delivery attempt):
  callbacks list [--app N] [--task ID] [--state pending|delivered|failed] [--since T] [--limit N] [--json]
  callbacks show EVENT_ID                 the event, its data and every attempt
  callbacks resend EVENT_ID...            send these events again now, with a fresh retry schedule
  callbacks resend --app N --since T      every failed event of app N written since T
  T: an ISO 8601 time (2026-11-25T08:00:00Z) or an age (90m, 6h, 2d)`

const STATES = ['pending', 'delivered', 'failed'] as const

/** An ISO time or an age such as `6h`, as Unix ms; undefined if neither. */
export function parseSince(text: string, nowMs: number): number | undefined {
  const age = /^(\d+)(s|m|h|d)$/.exec(text)
  if (age) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as 's']
    return nowMs - Number(age[1]) * unit
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined
  const ms = Date.parse(text)
  return Number.isNaN(ms) ? undefined : ms
}

const iso = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString())

function table(events: CallbackEventRow[]): string {
  const rows = events.map((e) => [
    e.eventId,
    e.taskId,
    String(e.seq),
    e.eventType,
    e.inFlight ? 'in flight' : e.state,
    String(e.attempts),
    e.lastStatus !== null ? String(e.lastStatus) : (e.lastError ?? ''),
    e.state === 'delivered'
      ? iso(e.deliveredAtMs)
      : e.state === 'pending'
        ? `next ${iso(e.nextAttemptMs)}`
        : '',
  ])
  const head = ['EVENT', 'TASK', 'SEQ', 'TYPE', 'STATE', 'TRIES', 'LAST', 'WHEN']
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(width[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(head), ...rows.map(line)].join('\n')
}

export async function runCallbacksCommand(
  argv: readonly string[],
  out = console.log,
  err = console.error,
): Promise<number> {
  const [sub, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: [...rest],
    allowPositionals: true,
    options: {
      app: { type: 'string' },
      task: { type: 'string' },
      state: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
  })
  const usage = (message: string) => {
    err(`callbacks ${sub ?? ''}: ${message}\n\n${CALLBACKS_USAGE}`)
    return 2
  }
  const now = systemClock.now()
  const app =
    values.app === undefined ? undefined : /^\d+$/.test(values.app) ? Number(values.app) : NaN
  if (Number.isNaN(app)) return usage('--app must be an SdkAppId')
  const since = values.since === undefined ? undefined : parseSince(values.since, now)
  if (values.since !== undefined && since === undefined) {
    return usage(`--since "${values.since}" is neither an ISO time nor an age like 6h`)
  }
  // Arguments are checked before the store is opened (PGlite takes seconds).
  let db: Db | undefined
  const store = async () => {
    db = await openStore(loadConfig(), systemClock)
    return db
  }
  try {
    switch (sub) {
      case 'list': {
        const state = values.state
        if (state !== undefined && !STATES.includes(state as CallbackState)) {
          return usage('--state must be pending, delivered or failed')
        }
        const limit = values.limit === undefined ? 50 : Number(values.limit)
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
          return usage('--limit must be 1 to 10000')
        }
        const { total, events } = await listCallbacks(await store(), systemClock, {
          ...(app === undefined ? {} : { sdkAppId: app }),
          ...(values.task === undefined ? {} : { taskId: values.task }),
          ...(state === undefined ? {} : { state: state as CallbackState }),
          ...(since === undefined ? {} : { sinceMs: since }),
          limit,
        })
        if (values.json) out(JSON.stringify({ total, events }, null, 2))
        else out(`${table(events)}\n${events.length} of ${total} shown, newest first`)
        return 0
      }
      case 'show': {
        const [id] = positionals
        if (id === undefined || positionals.length > 1) return usage('give one event id')
        const event = await getCallback(await store(), systemClock, id, app)
        if (event === undefined) {
          err(`callbacks show: no event ${id}`)
          return 1
        }
        out(JSON.stringify(event, null, 2))
        return 0
      }
      case 'resend': {
        if (positionals.length > 0) {
          if (since !== undefined) return usage('give event ids or --since, not both')
          const unknown = await unknownCallbackIds(await store(), positionals, app)
          if (unknown.length > 0) {
            err(`callbacks resend: no event ${unknown.join(', ')}; nothing was resent`)
            return 1
          }
          const ids = await resendCallbacks(db as Db, systemClock, {
            eventIds: positionals,
            ...(app === undefined ? {} : { sdkAppId: app }),
          })
          report(out, ids, positionals.length)
          return 0
        }
        if (app === undefined || since === undefined) {
          return usage('give event ids, or --app and --since for failed events')
        }
        const ids = await resendCallbacks(await store(), systemClock, {
          sdkAppId: app,
          sinceMs: since,
        })
        report(out, ids, ids.length)
        return 0
      }
      default:
        return usage(`unknown command`)
    }
  } finally {
    await db?.close()
  }
}

function report(out: (line: string) => void, ids: string[], asked: number): void {
  out(`${ids.length} event${ids.length === 1 ? '' : 's'} will be sent again now`)
  for (const id of ids) out(`  ${id}`)
  if (ids.length < asked) out(`${asked - ids.length} left alone: an attempt is in flight`)
}
