// The operator commands of `online-record`: apps, tasks, callbacks, usersig
// and info. Each talks to the running service's admin API, or (no service
// running) to the store itself under its lock: see client.ts.
import { parseArgs } from 'node:util'
import { loadConfig } from '../config.ts'
import type { CallbackEventRow } from '../delivery/outbox.ts'
import { type AdminClient, connectAdmin } from './client.ts'
import { AdminError, TASK_STATUSES, type TaskView } from './operations.ts'

export const ADMIN_USAGE = `Apps:
  apps create --sdk-app-id N [--secret-id ID] [--secret-key K] [--usersig-key K]
              [--max-concurrent-tasks N] [--rate-limit N] [--rate-burst N]
  apps list
  apps show N                       with its secrets
  apps update N [--max-concurrent-tasks N] [--rate-limit N|default] [--rate-burst N|default]
                [--callback URL] [--callback-key K]
  apps disable N | apps enable N    refuse (or accept again) the app's requests and publishers
  apps rotate-secret N --kind api|webhook|usersig

Tasks (of every app):
  tasks list [--app N] [--status S] [--room N] [--since T] [--until T] [--limit N] [--cursor C] [--json]
  tasks show TASK_ID                the task, its problems, every callback and attempt
  tasks stop TASK_ID                stop it now (FinishReason FORCE_STOP)

Callbacks (the outbox and every delivery attempt):
  callbacks list [--app N] [--task ID] [--state pending|delivered|failed] [--since T] [--limit N] [--json]
  callbacks show EVENT_ID           the event, its data and every attempt
  callbacks resend EVENT_ID...      send these events again now, with a fresh retry schedule
  callbacks resend --app N --since T   every failed event of app N written since T

  usersig --sdk-app-id N --user-id U [--expire SECONDS]   a UserSig, as an app backend makes them
  info                              the running service: version, store, ingests, processes

  T: an ISO 8601 time (2026-11-25T08:00:00Z) or an age (90m, 6h, 2d).
  These talk to the running service's admin API (its address and operator token are read
  from the data directory, or ONLINE_RECORD_ADMIN_URL and ONLINE_RECORD_ADMIN_TOKEN); with no
  service running they open the store themselves.`

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

const iso = (ms: number | null | undefined) => (ms == null ? '' : new Date(ms).toISOString())

function table(head: string[], rows: string[][]): string {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(width[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(head), ...rows.map(line)].join('\n')
}

function callbackTable(events: CallbackEventRow[]): string {
  return table(
    ['EVENT', 'TASK', 'SEQ', 'TYPE', 'STATE', 'TRIES', 'LAST', 'WHEN'],
    events.map((e) => [
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
    ]),
  )
}

function taskTable(tasks: TaskView[]): string {
  return table(
    ['TASK', 'APP', 'ROOM', 'STATUS', 'REASON', 'CREATED', 'EXC', 'POST'],
    tasks.map((t) => [
      t.taskId,
      String(t.sdkAppId),
      String(t.roomId),
      t.status,
      t.finishReason,
      t.createdAt,
      String(t.exceptionCnt),
      t.postProcessing ? `${t.postProcessing.stage} ${t.postProcessing.progress}%` : '',
    ]),
  )
}

class Usage extends Error {}

export async function runAdminCommand(
  argv: readonly string[],
  out: (line: string) => void = console.log,
  err: (line: string) => void = console.error,
): Promise<number> {
  const [command = '', ...rest] = argv
  const sub = command === 'usersig' || command === 'info' ? '' : (rest.shift() ?? '')
  const usage = (message: string) => {
    err(`${command} ${sub}: ${message}\n\n${ADMIN_USAGE}`.replace('  :', ':'))
    return 2
  }
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>
  >
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: OPTIONS })
  } catch (error) {
    return usage((error as Error).message)
  }
  const { values, positionals } = parsed
  const num = (name: keyof typeof OPTIONS, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined
    if (!/^\d+$/.test(text)) throw new Usage(`--${name} must be a whole number`)
    return Number(text)
  }
  const oneOf = (
    name: keyof typeof OPTIONS,
    text: string | undefined,
    allowed: readonly string[],
  ) => {
    if (text !== undefined && !allowed.includes(text))
      throw new Usage(`--${name} must be one of ${allowed.join(', ')}`)
  }
  const idArg = () => {
    const [id] = positionals
    if (id === undefined || !/^\d+$/.test(id) || positionals.length > 1)
      throw new Usage('give one SdkAppId')
    return Number(id)
  }
  const oneId = (what: string) => {
    const [id] = positionals
    if (id === undefined || positionals.length > 1) throw new Usage(`give one ${what}`)
    return id
  }
  const since = (text: string | undefined, name: string) => {
    if (text === undefined) return undefined
    const ms = parseSince(text, Date.now())
    if (ms === undefined)
      throw new Usage(`--${name} "${text}" is neither an ISO time nor an age like 6h`)
    return String(ms)
  }
  const limitOrDefault = (text: string | undefined) =>
    text === 'default' ? null : num('rate-limit', text)

  // Everything is checked before the service or the store is reached.
  let run: (client: AdminClient) => Promise<number>
  try {
    run = plan()
  } catch (error) {
    if (error instanceof Usage) return usage(error.message)
    throw error
  }

  function plan(): (client: AdminClient) => Promise<number> {
    const json = (value: unknown) => {
      out(JSON.stringify(value, null, 2))
      return 0
    }
    switch (`${command} ${sub}`.trim()) {
      case 'apps create': {
        const sdkAppId = num('sdk-app-id', values['sdk-app-id'])
        if (sdkAppId === undefined) throw new Usage('--sdk-app-id is required')
        const input = {
          sdkAppId,
          ...(values['secret-id'] ? { secretId: values['secret-id'] } : {}),
          ...(values['secret-key'] ? { secretKey: values['secret-key'] } : {}),
          ...(values['usersig-key'] ? { userSigKey: values['usersig-key'] } : {}),
          ...(values['max-concurrent-tasks']
            ? { maxConcurrentTasks: num('max-concurrent-tasks', values['max-concurrent-tasks']) }
            : {}),
          ...(values['rate-limit'] ? { rateLimit: num('rate-limit', values['rate-limit']) } : {}),
          ...(values['rate-burst'] ? { rateBurst: num('rate-burst', values['rate-burst']) } : {}),
        }
        return async (c) => json(await c.createApp(input))
      }
      case 'apps list':
        return async (c) => json(await c.listApps())
      case 'apps show': {
        const id = idArg()
        return async (c) => json(await c.getApp(id))
      }
      case 'apps update': {
        const id = idArg()
        const patch = {
          ...(values['max-concurrent-tasks']
            ? { maxConcurrentTasks: num('max-concurrent-tasks', values['max-concurrent-tasks']) }
            : {}),
          ...(values['rate-limit'] ? { rateLimit: limitOrDefault(values['rate-limit']) } : {}),
          ...(values['rate-burst'] ? { rateBurst: limitOrDefault(values['rate-burst']) } : {}),
          ...(values.callback !== undefined ? { callbackUrl: values.callback } : {}),
          ...(values['callback-key'] !== undefined ? { callbackKey: values['callback-key'] } : {}),
        }
        if (Object.keys(patch).length === 0) throw new Usage('nothing to change')
        return async (c) => json(await c.updateApp(id, patch))
      }
      case 'apps disable':
      case 'apps enable': {
        const id = idArg()
        return async (c) => json(await c.updateApp(id, { disabled: sub === 'disable' }))
      }
      case 'apps rotate-secret': {
        const id = idArg()
        const kind = values.kind
        if (kind !== 'api' && kind !== 'webhook' && kind !== 'usersig')
          throw new Usage('--kind must be api, webhook or usersig')
        return async (c) => json(await c.rotate(id, kind))
      }
      case 'tasks list': {
        oneOf('status', values.status, TASK_STATUSES)
        num('limit', values.limit)
        num('app', values.app)
        num('room', values.room)
        const filter = {
          sdkAppId: values.app,
          status: values.status,
          roomId: values.room,
          since: since(values.since, 'since'),
          until: since(values.until, 'until'),
          limit: values.limit,
          cursor: values.cursor,
        }
        return async (c) => {
          const page = await c.listTasks(filter)
          if (values.json) return json(page)
          out(taskTable(page.tasks))
          out(page.nextCursor ? `more: --cursor ${page.nextCursor}` : `${page.tasks.length} shown`)
          return 0
        }
      }
      case 'tasks show': {
        const id = oneId('task id')
        return async (c) => json(await c.getTask(id))
      }
      case 'tasks stop': {
        const id = oneId('task id')
        return async (c) => json(await c.stopTask(id))
      }
      case 'callbacks list': {
        oneOf('state', values.state, ['pending', 'delivered', 'failed'])
        num('limit', values.limit)
        num('app', values.app)
        const filter = {
          sdkAppId: values.app,
          taskId: values.task,
          state: values.state,
          since: since(values.since, 'since'),
          limit: values.limit,
        }
        return async (c) => {
          const { total, events } = await c.listCallbacks(filter)
          if (values.json) return json({ total, events })
          out(`${callbackTable(events)}\n${events.length} of ${total} shown, newest first`)
          return 0
        }
      }
      case 'callbacks show': {
        const id = oneId('event id')
        return async (c) => json(await c.getCallback(id))
      }
      case 'callbacks resend': {
        const app = num('app', values.app)
        const from = since(values.since, 'since')
        if (positionals.length > 0 && from !== undefined)
          throw new Usage('give event ids or --since, not both')
        if (positionals.length === 0 && (app === undefined || from === undefined))
          throw new Usage('give event ids, or --app and --since for failed events')
        const input =
          positionals.length > 0
            ? { eventIds: positionals, ...(app === undefined ? {} : { sdkAppId: app }) }
            : { sdkAppId: app, since: from }
        return async (c) => {
          const { eventIds } = await c.resend(input)
          out(`${eventIds.length} event${eventIds.length === 1 ? '' : 's'} will be sent again now`)
          for (const id of eventIds) out(`  ${id}`)
          const asked = positionals.length > 0 ? positionals.length : eventIds.length
          if (eventIds.length < asked)
            out(`${asked - eventIds.length} left alone: an attempt is in flight`)
          return 0
        }
      }
      case 'usersig': {
        const sdkAppId = num('sdk-app-id', values['sdk-app-id'])
        const userId = values['user-id']
        if (sdkAppId === undefined || userId === undefined)
          throw new Usage('--sdk-app-id and --user-id are required')
        const expire = num('expire', values.expire)
        return async (c) => {
          const sig = await c.userSig(sdkAppId, {
            userId,
            ...(expire === undefined ? {} : { expireSeconds: expire }),
          })
          out(sig.userSig)
          err(`valid until ${sig.expiresAt}`)
          return 0
        }
      }
      case 'info':
        return async (c) => json(await c.info())
      default:
        throw new Usage('unknown command')
    }
  }

  let connection: Awaited<ReturnType<typeof connectAdmin>> | undefined
  try {
    connection = await connectAdmin(loadConfig(), `${command} ${sub}`.trim())
    return await run(connection.client)
  } catch (error) {
    if (error instanceof AdminError || (error as Error).name === 'StoreLockedError') {
      err(`${command}${sub ? ` ${sub}` : ''}: ${(error as Error).message}`)
      return 1
    }
    throw error
  } finally {
    await connection?.close()
  }
}

const OPTIONS = {
  'sdk-app-id': { type: 'string' },
  'secret-id': { type: 'string' },
  'secret-key': { type: 'string' },
  'usersig-key': { type: 'string' },
  'max-concurrent-tasks': { type: 'string' },
  'rate-limit': { type: 'string' },
  'rate-burst': { type: 'string' },
  callback: { type: 'string' },
  'callback-key': { type: 'string' },
  kind: { type: 'string' },
  app: { type: 'string' },
  task: { type: 'string' },
  status: { type: 'string' },
  state: { type: 'string' },
  room: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  json: { type: 'boolean' },
  'user-id': { type: 'string' },
  expire: { type: 'string' },
} as const
