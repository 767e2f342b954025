// Callback delivery: the sustained rate at which the dispatcher empties an
// outbox backlog into a keep-alive receiver (its own process), on PGlite and
// on PostgreSQL (BENCH_DATABASE_URL, else TEST_DATABASE_URL), against raw
// undici POSTs of the same body to the same receiver with no persistence;
// and the latency from an event's commit to its arrival at 500 events/s.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { generateWebhookSecret } from '@online-record/protocol'
import { Pool, request } from 'undici'
import { Apps } from '../packages/server/src/apps/apps.ts'
import { systemClock } from '../packages/server/src/clock.ts'
import { Dispatcher } from '../packages/server/src/delivery/dispatcher.ts'
import { buildCallbackRequest } from '../packages/server/src/delivery/message.ts'
import { type Db, openDb } from '../packages/server/src/store/db.ts'
import { migrate } from '../packages/server/src/store/migrations.ts'
import type { Comparison, Measurement } from './run.ts'

/** Attempts in flight at once, for the dispatcher and for the raw baseline alike. */
const IN_FLIGHT = 32
const EVENTS_PER_TASK = 3
const APP_ID = 1400000001
const KEY = 'bench-callback-key'
const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL

// ---- the receiver ------------------------------------------------------------------

let sink: Promise<{ url: string; child: ChildProcess }> | undefined
function startSink() {
  sink ??= (async () => {
    const child = spawn(
      process.execPath,
      [new URL('./callback-sink.ts', import.meta.url).pathname],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const [chunk] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer]
    return { url: `http://127.0.0.1:${chunk.toString().trim()}`, child }
  })()
  return sink
}
async function sinkGet(path: string): Promise<string> {
  const { url } = await startSink()
  const res = await request(`${url}${path}`)
  return res.body.text()
}

// ---- the baseline: raw POSTs ----------------------------------------------------------

const sample = buildCallbackRequest(
  {
    eventId: `evt_${'0'.repeat(32)}`,
    taskId: 'benchtask00000000001',
    seq: 1,
    sdkAppId: APP_ID,
    eventType: 'OnlineRecordStarted',
    timestampS: Math.floor(Date.now() / 1000),
    data: '{"TaskId":"benchtask00000000001","RoomId":1,"RecordUserId":"tic_record_user_1_b"}',
    attempt: 1,
  },
  { callbackKey: KEY, webhookSecret: generateWebhookSecret() },
  { nowMs: Date.now(), signValiditySeconds: 600, userAgent: 'online-record/bench' },
)

async function rawPosts(ms: number): Promise<number> {
  const { url } = await startSink()
  const pool = new Pool(url, { connections: IN_FLIGHT, keepAliveTimeout: 30_000 })
  const started = performance.now()
  const deadline = started + ms
  let done = 0
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < deadline) {
        const res = await pool.request({
          path: '/callback',
          method: 'POST',
          headers: sample.headers,
          body: sample.body,
        })
        await res.body.text()
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
        done++
      }
    }),
  )
  const rate = done / ((performance.now() - started) / 1000)
  await pool.close()
  return rate
}

// ---- the subject: the dispatcher over a store -------------------------------------------

interface Store {
  db: Db
  close(): Promise<void>
  /** Last measured rate, to size the next backlog to about the round's time. */
  rate: number
  nextTask: number
}
const stores = new Map<string, Promise<Store>>()

function openStore(kind: 'PGlite' | 'PostgreSQL'): Promise<Store> {
  let store = stores.get(kind)
  if (store) return store
  store = (async () => {
    const { url } = await startSink()
    let db: Db
    let cleanup: () => Promise<void>
    if (kind === 'PGlite') {
      const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-delivery-'))
      db = await openDb({ dataDir: dir })
      cleanup = async () => {
        await db.close()
        rmSync(dir, { recursive: true, force: true })
      }
    } else {
      const schema = `bench_delivery_${randomBytes(5).toString('hex')}`
      const admin = await openDb({ databaseUrl: databaseUrl as string, poolSize: 1 })
      await admin.exec(`create schema ${schema}`)
      db = await openDb({ databaseUrl: databaseUrl as string, schema, poolSize: 10 })
      cleanup = async () => {
        await db.close()
        await admin.exec(`drop schema ${schema} cascade`)
        await admin.close()
      }
    }
    await migrate(db, systemClock)
    const apps = new Apps(db, systemClock)
    await apps.upsert({ sdkAppId: APP_ID })
    await apps.setCallback(APP_ID, `${url}/callback`)
    await apps.setCallbackKey(APP_ID, KEY)
    return { db, close: cleanup, rate: 2000, nextTask: 0 }
  })()
  stores.set(kind, store)
  return store
}

/** Writes `tasks` tasks of EVENTS_PER_TASK events each, as the engine would, due now. */
async function seed(s: Store, tasks: number, eventsPerTask = EVENTS_PER_TASK): Promise<string[]> {
  const first = s.nextTask
  s.nextTask += tasks
  const now = Date.now()
  const rows = await s.db.query<{ id: string }>(
    `insert into events (event_id, sdk_app_id, task_id, seq, event_type, timestamp_s, event_data,
       created_at_ms, next_attempt_ms)
     select 'evt_' || md5(random()::text || t || '/' || n), $1, 'benchtask' || lpad(t::text, 11, '0'), n,
       'OnlineRecordStarted', $2,
       json_build_object('TaskId', 'benchtask' || lpad(t::text, 11, '0'), 'RoomId', t,
         'RecordUserId', 'tic_record_user_' || t || '_b'),
       $3, $3
     from generate_series($4::int4, $5::int4) t, generate_series(1, $6::int4) n
     returning event_id as id`,
    [APP_ID, Math.floor(now / 1000), now, first, first + tasks - 1, eventsPerTask],
  )
  return rows.map((r) => r.id)
}

function dispatcher(s: Store): Dispatcher {
  return new Dispatcher({
    db: s.db,
    clock: systemClock,
    settings: {
      concurrency: IN_FLIGHT,
      endpointConcurrency: IN_FLIGHT,
      pollMs: 500,
      // As the service runs it: PGlite's store is one process's alone.
      leases: s.db.dialect === 'pglite' ? 'memory' : 'database',
    },
  })
}

/** Seeds a backlog of about `ms` worth of events, then times the dispatcher emptying it. */
async function drainRate(kind: 'PGlite' | 'PostgreSQL', ms: number): Promise<number> {
  const s = await openStore(kind)
  const tasks = Math.max(200, Math.round((s.rate * ms) / 1000 / EVENTS_PER_TASK))
  await seed(s, tasks)
  await sinkGet('/reset')
  const d = dispatcher(s)
  const started = performance.now()
  await d.start()
  await sinkGet(`/wait?count=${tasks * EVENTS_PER_TASK}`)
  const rate = (tasks * EVENTS_PER_TASK) / ((performance.now() - started) / 1000)
  await d.close()
  s.rate = rate
  return rate
}

/** Commits one event at a time at `perSecond` for a second and then `seconds` more; returns commit→arrival ms of each after the first second. */
async function commitToReceipt(
  kind: 'PGlite' | 'PostgreSQL',
  perSecond: number,
  seconds: number,
): Promise<number[]> {
  const s = await openStore(kind)
  await sinkGet('/reset')
  const d = dispatcher(s)
  await d.start()
  const committed = new Map<string, number>()
  const started = performance.now()
  const total = perSecond * (seconds + 1)
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / perSecond
    const wait = due - performance.now()
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    const [id] = await seed(s, 1, 1)
    committed.set(id as string, performance.timeOrigin + performance.now())
    d.wake() // as the engine does after each commit
  }
  await sinkGet(`/wait?count=${total}`)
  await d.close()
  const arrivals = JSON.parse(await sinkGet('/arrivals')) as Record<string, number>
  // The first second warms up (PGlite's WebAssembly, the JIT): not counted.
  return [...committed].slice(perSecond).map(([id, at]) => (arrivals[id] as number) - at)
}

const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[
    Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))
  ] as number

const kinds = (databaseUrl ? ['PGlite', 'PostgreSQL'] : ['PGlite']) as ('PGlite' | 'PostgreSQL')[]
let closing: Promise<void> | undefined
const teardown = () =>
  (closing ??= (async () => {
    for (const s of stores.values()) await (await s).close()
    ;(await sink)?.child.kill('SIGTERM')
  })())

export const measurements: Measurement[] = kinds.map((kind) => ({
  name: `delivery on ${kind}: commit → receipt at 500 events/s (5 s after 1 s of warm-up)`,
  target: 'p99 ≤ 50 ms',
  async run() {
    const ms = await commitToReceipt(kind, 500, 5)
    const p99 = percentile(ms, 99)
    return {
      figure: `p50 ${percentile(ms, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms`,
      met: p99 <= 50,
    }
  },
}))

export const comparisons: Comparison[] = kinds.map((kind, i) => ({
  name: `delivery on ${kind}`,
  target: kind === 'PGlite' ? 0.25 : 0.5,
  baseline: { name: `raw undici POSTs, ${IN_FLIGHT} in flight`, measure: rawPosts },
  subject: {
    name: `dispatcher draining a backlog, ${IN_FLIGHT} in flight`,
    measure: (ms) => drainRate(kind, ms),
  },
  minTimeMs: 14_000,
  rounds: 5,
  ...(i === kinds.length - 1 ? { teardown } : {}),
}))
