// Starts `online-record serve` as a real process for end-to-end tests.
import assert from 'node:assert/strict'
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { after, before } from 'node:test'
import { fileURLToPath } from 'node:url'
import tencentcloud from 'tencentcloud-sdk-nodejs'
import { genUserSig } from '../src/apps/usersig.ts'
import { type Db, openDb, type Queryable } from '../src/store/db.ts'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

export const TEST_APP = {
  sdkAppId: 1400000001,
  secretId: 'AKIDe2etest00000000000001',
  secretKey: 'e2e-test-secret-key-000000000001',
  userSigKey: 'c'.repeat(64),
}

export interface ServerProcess {
  url: string
  /** `rtmp://host:port`, the ingest's base (publish to `${rtmp}/push/{room}?…`). */
  rtmp: string
  child: ChildProcessWithoutNullStreams
  output(): string
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<number | null>
  kill(): Promise<void>
}

export async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  // No wrapper process: a SIGKILL must hit the server itself.
  const child = spawn(process.execPath, ['--conditions=@online-record/source', cli, 'serve'], {
    env: {
      ...process.env,
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_RATE_LIMIT: '1000', // the tests poll many tasks at once
      ONLINE_RECORD_APPS: JSON.stringify([TEST_APP]),
      ...env,
    },
  })
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (c: string) => {
    output += c
  })
  child.stderr.on('data', (c: string) => {
    output += c
  })
  const rtmpLine = /RTMP ingest listening on (rtmp:\/\/[^/\s]+)\//
  // One set of listeners for the whole wait (a race of once() per chunk would pile them up).
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer)
      child.stdout.off('data', check)
      child.stderr.off('data', check)
      child.off('exit', exited)
      if (error) reject(error)
      else resolve()
    }
    const check = () => {
      if (/listening on (\S+)/.test(output) && rtmpLine.test(output)) done()
    }
    const exited = () => done(new Error(`server did not start:\n${output}`))
    const timer = setTimeout(exited, 60_000)
    child.stdout.on('data', check)
    child.stderr.on('data', check)
    child.once('exit', exited)
    check()
  })
  const url = (/listening on (\S+)/.exec(output) as RegExpExecArray)[1] as string
  const rtmp = (rtmpLine.exec(output) as RegExpExecArray)[1] as string
  return {
    url,
    rtmp,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill('SIGTERM')
      const [code] = await once(child, 'exit')
      return code as number | null
    },
    async kill() {
      // A process killed by a signal has no exit code, only a signal code.
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL')
      await once(child, 'exit')
    },
  }
}

export function tiwClient(url: string, app: { secretId: string; secretKey: string } = TEST_APP) {
  delete process.env.http_proxy
  delete process.env.HTTP_PROXY
  return new tencentcloud.tiw.v20190919.Client({
    credential: { secretId: app.secretId, secretKey: app.secretKey },
    profile: { httpProfile: { endpoint: url.replace('http://', ''), protocol: 'http://' } },
  })
}

/** A valid StartOnlineRecord request for `roomId`, its RecordUserSig signed with the app's key. */
export function startRequest(
  roomId: number,
  app: { sdkAppId: number; userSigKey: string } = TEST_APP,
) {
  const user = `tic_record_user_${roomId}_e2e`
  return {
    SdkAppId: app.sdkAppId,
    RoomId: roomId,
    RecordUserId: user,
    RecordUserSig: genUserSig(app.sdkAppId, app.userSigKey, user, 86_400),
  }
}

/** Starts `count` tasks in rooms from `firstRoom` on, spread over the clients, and pauses each. */
export async function startPausedTasks(
  clients: readonly ReturnType<typeof tiwClient>[],
  firstRoom: number,
  count: number,
): Promise<string[]> {
  const taskIds: string[] = []
  for (let i = 0; i < count; i++) {
    const client = clients[i % clients.length] as ReturnType<typeof tiwClient>
    const { TaskId } = await client.StartOnlineRecord(startRequest(firstRoom + i))
    await client.PauseOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string })
    taskIds.push(TaskId as string)
  }
  return taskIds
}

/** Polls until every task is FINISHED, or fails after `ms`. */
export async function waitFinished(
  client: ReturnType<typeof tiwClient>,
  taskIds: string[],
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    const states = await Promise.all(
      taskIds.map(
        async (TaskId) =>
          (await client.DescribeOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId })).Status,
      ),
    )
    if (states.every((s) => s === 'FINISHED')) return
    if (Date.now() > deadline) throw new Error(`tasks not finished: ${states.join(', ')}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** Each task's outbox holds exactly the long-pause sequence, numbered 1..5. */
export async function assertLongPauseOutbox(
  db: Queryable,
  taskIds: readonly string[],
  table = 'events',
): Promise<void> {
  const rows = await db.query<{ taskId: string; eventType: string; seq: number }>(
    `select task_id as "taskId", event_type as "eventType", seq from ${table} order by task_id, seq`,
  )
  for (const taskId of taskIds) {
    const mine = rows.filter((r) => r.taskId === taskId)
    assert.deepEqual(
      mine.map((r) => [r.seq, r.eventType]),
      LONG_PAUSE_SEQUENCE.map((type, i) => [i + 1, type]),
      taskId,
    )
  }
}

export const LONG_PAUSE_SEQUENCE = [
  'OnlineRecordStarted',
  'OnlineRecordLongPauseWarning',
  'OnlineRecordLongPauseForceStopped',
  'OnlineRecordStopped',
  'OnlineRecordFinished',
]

/**
 * A schema of its own on TEST_DATABASE_URL for one suite: made before its
 * tests, dropped after them. `databaseUrl` points servers at it; `admin` is a
 * connection to the database (schema-qualify what it reads).
 */
export function suiteSchema(prefix: string): {
  name: string
  databaseUrl: string
  admin(): Db
} {
  const base = process.env.TEST_DATABASE_URL as string
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  const url = new URL(base)
  url.searchParams.set('options', `-c search_path=${name}`)
  let db: Db | undefined
  before(async () => {
    db = await openDb({ databaseUrl: base, poolSize: 1 })
    await db.exec(`create schema ${name}`)
  })
  after(async () => {
    await db?.exec(`drop schema ${name} cascade`)
    await db?.close()
  })
  return {
    name,
    databaseUrl: url.toString(),
    admin: () => {
      assert.ok(db, 'the schema is made before the tests')
      return db
    },
  }
}
