// 100,000 paused tasks whose long-pause warnings come due at once, fired by a
// real server process on PostgreSQL (BENCH_DATABASE_URL, else
// TEST_DATABASE_URL): how fast all have fired, against the raw work of
// inserting as many event rows in one statement, and the server's peak RSS.
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Db, openDb } from '../packages/server/src/store/db.ts'
import type { Comparison } from './run.ts'
import { cli, spawnService } from './service-process.ts'

const TASKS = 100_000
const APP_ID = 1400000001
const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL

let state: { admin: Db; db: Db; schema: string; server: ChildProcess; round: number } | undefined

async function setUp(): Promise<NonNullable<typeof state>> {
  if (state) return state
  const schema = `bench_timers_${randomBytes(5).toString('hex')}`
  const admin = await openDb({ databaseUrl: databaseUrl as string, poolSize: 1 })
  await admin.exec(`create schema ${schema}`)
  const url = new URL(databaseUrl as string)
  url.searchParams.set('options', `-c search_path=${schema}`)
  const { child: server } = await spawnService(
    [cli, 'serve'],
    {
      DATABASE_URL: url.toString(),
      ONLINE_RECORD_DATA_DIR: mkdtempSync(join(tmpdir(), 'online-record-timers-')),
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_APPS: JSON.stringify([{ sdkAppId: APP_ID, maxConcurrentTasks: 100_000 }]),
    },
    /listening on/,
  )
  const db = await openDb({ databaseUrl: databaseUrl as string, schema, poolSize: 2 })
  state = { admin, db, schema, server, round: 0 }
  return state
}

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024

/**
 * Seeds TASKS paused tasks whose warnings come due together a moment later
 * (as if all were paused at the same time 20 minutes earlier), waits until
 * all fired. Each round starts from the same state: the previous round's
 * tasks and events are removed and vacuumed away first.
 */
async function fire(): Promise<number> {
  const s = await setUp()
  if (s.round++ > 0) {
    await s.db.exec(`delete from events where task_id like 'bench%'`)
    await s.db.exec(`delete from tasks where task_id like 'bench%'`)
  }
  await s.db.exec('vacuum analyze tasks, events, timers')
  const now = Date.now()
  await s.db.query(
    `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status, request,
       created_at_ms, record_start_ms, paused_at_ms, last_activity_ms)
     select 'bench' || lpad(g::text, 15, '0'), $1, g, g::text, 'tic_record_user_' || g || '_b', 'PAUSED',
       '{}'::jsonb, $2, $2, $2, $2
     from generate_series(1, $3::int8) g`,
    [APP_ID, now, TASKS],
  )
  await s.db.exec('vacuum analyze tasks')
  // Far enough ahead for the insert and the server's next poll to see it coming.
  const due = Date.now() + 1500
  await s.db.query(
    `insert into timers (task_id, kind, due_ms)
     select 'bench' || lpad(g::text, 15, '0'), 'long-pause-warning', $1 from generate_series(1, $2::int8) g`,
    [due, TASKS],
  )
  await s.db.exec('analyze timers')
  if (Date.now() >= due - 600) throw new Error('timers.bench: seeding overran the due time')
  const pid = s.server.pid as number
  let peak = rssMb(pid)
  // A warning's timer is deleted in the statement that writes its event, and
  // each such statement notifies at its commit: the earliest notification
  // after which no warning timer is left marks the end, without polling a
  // table the server is busy with.
  let done = Number.POSITIVE_INFINITY
  let finished!: () => void
  const allFired = new Promise<void>((resolve) => {
    finished = resolve
  })
  const check = async () => {
    const at = Date.now()
    peak = Math.max(peak, rssMb(pid))
    const [row] = await s.db.query<{ left: boolean }>(
      `select exists (select 1 from timers where kind = 'long-pause-warning') as left`,
    )
    if (!row?.left) {
      done = Math.min(done, at)
      finished()
    }
  }
  const unlisten = await s.db.listen('online_record_events', () => void check())
  while (Date.now() < due) await new Promise((r) => setTimeout(r, due - Date.now()))
  // The RSS is sampled between notifications too, and a missed one is caught up.
  const sampler = setInterval(() => void check(), 250)
  await allFired
  clearInterval(sampler)
  await unlisten()
  const [written] = await s.db.query<{ n: number }>(
    `select count(*)::int4 as n from events
     where event_type = 'OnlineRecordLongPauseWarning' and task_id like 'bench%'`,
  )
  if (written?.n !== TASKS) throw new Error(`expected ${TASKS} warnings, found ${written?.n}`)
  const seconds = (done - due) / 1000
  console.error(
    `timers.bench: ${TASKS} warnings fired ${seconds.toFixed(2)} s after due; server RSS peak ${peak.toFixed(0)} MB`,
  )
  return TASKS / seconds
}

/** The unavoidable database work: as many event-shaped rows inserted in one statement. */
async function rawInsert(): Promise<number> {
  const s = await setUp()
  await s.db.exec('create table if not exists scratch_events (like events including defaults)')
  const started = performance.now()
  await s.db.query(
    `insert into scratch_events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s, event_data,
       created_at_ms, next_attempt_ms)
     select 'evt_' || replace(gen_random_uuid()::text, '-', ''), $1, 'bench' || g, 2,
       'OnlineRecordLongPauseWarning', 0, json_build_object('TaskId', 'bench' || g, 'RoomId', g), 0, 0
     from generate_series(1, $2::int8) g`,
    [APP_ID, TASKS],
  )
  const rate = TASKS / ((performance.now() - started) / 1000)
  await s.db.exec('truncate scratch_events')
  return rate
}

if (!databaseUrl)
  console.error('timers.bench: not measured (set BENCH_DATABASE_URL or TEST_DATABASE_URL)')

export const comparisons: Comparison[] = databaseUrl
  ? [
      {
        name: `${TASKS} due long-pause warnings on PostgreSQL`,
        // All within 2 s of due time.
        targetOps: TASKS / 2,
        rounds: 3,
        baseline: { name: 'one INSERT of as many event rows', measure: rawInsert },
        subject: { name: 'warnings fired/s by a server process', measure: fire },
        teardown: async () => {
          if (!state) return
          state.server.kill('SIGTERM')
          await once(state.server, 'exit')
          await state.db.close()
          await state.admin.exec(`drop schema ${state.schema} cascade`)
          await state.admin.close()
          state = undefined
        },
      },
    ]
  : []
