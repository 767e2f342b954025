// The control API from a separate load process: signed DescribeOnlineRecord
// requests/s and StartOnlineRecord+StopOnlineRecord cycles/s, on PGlite and on
// PostgreSQL (BENCH_DATABASE_URL, else TEST_DATABASE_URL), each beside a bare
// Fastify route answering a constant envelope.
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { signTc3 } from '@online-record/protocol'
import { type Db, openDb } from '../packages/server/src/store/db.ts'
import { startRequest } from '../packages/server/test/server-process.ts'
import { closedLoop, send } from './http-load.ts'
import type { Comparison } from './run.ts'
import { cli, spawnService } from './service-process.ts'

const CONCURRENCY = 16
const APP = {
  sdkAppId: 1400000001,
  secretId: 'AKIDbench0000000000000001',
  secretKey: 'bench-secret-key-000000000000001',
  userSigKey: 'b'.repeat(64),
}

interface Running {
  port: number
  child: ChildProcess
}

async function spawnServer(args: string[], env: Record<string, string>): Promise<Running> {
  const listening = /listening (?:on|at) http:\/\/[^:]+:(\d+)/
  const { child, output } = await spawnService(args, env, listening)
  return { port: Number((listening.exec(output()) as RegExpExecArray)[1]), child }
}

function signed(action: string, payload: string) {
  const timestamp = Math.floor(Date.now() / 1000)
  const { authorization } = signTc3({
    secretId: APP.secretId,
    secretKey: APP.secretKey,
    service: 'tiw',
    host: '127.0.0.1',
    timestamp,
    payload,
  })
  return {
    headers: {
      'content-type': 'application/json',
      'x-tc-action': action,
      'x-tc-version': '2019-09-19',
      'x-tc-timestamp': String(timestamp),
      authorization,
    },
    body: Buffer.from(payload),
  }
}

const parse = (text: string) =>
  JSON.parse(text) as { Response: { TaskId?: string; Error?: { Code: string } } }

class Target {
  #server: Promise<Running> | undefined
  #cleanup: (() => Promise<void>) | undefined
  #describe: ReturnType<typeof signed> | undefined

  readonly store: 'pglite' | 'postgres' | 'hello'

  constructor(store: 'pglite' | 'postgres' | 'hello') {
    this.store = store
  }

  async #start(): Promise<Running> {
    if (this.store === 'hello')
      return spawnServer([fileURLToPath(new URL('./hello-server.ts', import.meta.url))], {})
    // A data directory of its own on either store (PGlite's store, the
    // recorder's segments, the operator token), and any free RTMP port.
    const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-'))
    const env: Record<string, string> = {
      ONLINE_RECORD_DATA_DIR: dir,
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_RATE_LIMIT: '100000',
      ONLINE_RECORD_APPS: JSON.stringify([{ ...APP, maxConcurrentTasks: 10_000 }]),
    }
    const removeDir = async () => rmSync(dir, { recursive: true, force: true })
    if (this.store === 'pglite') {
      this.#cleanup = removeDir
    } else {
      const base = databaseUrl as string
      const schema = `bench_${randomBytes(5).toString('hex')}`
      const admin: Db = await openDb({ databaseUrl: base, poolSize: 1 })
      await admin.exec(`create schema ${schema}`)
      const url = new URL(base)
      url.searchParams.set('options', `-c search_path=${schema}`)
      env.DATABASE_URL = url.toString()
      this.#cleanup = async () => {
        await admin.exec(`drop schema ${schema} cascade`)
        await admin.close()
        await removeDir()
      }
    }
    const running = await spawnServer([cli, 'serve'], env)
    // One recording task to describe.
    const start = signed('StartOnlineRecord', JSON.stringify(startBody(1)))
    const taskId = parse(await send(new Agent(), running.port, start)).Response.TaskId
    this.#describe = signed(
      'DescribeOnlineRecord',
      JSON.stringify({ SdkAppId: APP.sdkAppId, TaskId: taskId }),
    )
    return running
  }

  async port(): Promise<number> {
    this.#server ??= this.#start()
    return (await this.#server).port
  }

  describeRequest(): ReturnType<typeof signed> {
    // The hello route ignores the body; the service describes a live task.
    return this.#describe ?? signed('DescribeOnlineRecord', '{"SdkAppId":1400000001,"TaskId":"x"}')
  }

  async stop(): Promise<void> {
    if (this.#server === undefined) return
    const { child } = await this.#server
    child.kill('SIGTERM')
    await once(child, 'exit')
    await this.#cleanup?.()
    this.#server = undefined
  }
}

const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL

const startBody = (worker: number) => startRequest(100_000 + worker, APP)

async function describeRate(target: Target, ms: number): Promise<number> {
  const port = await target.port()
  const request = target.describeRequest()
  return closedLoop(CONCURRENCY, ms, async (_w, agent) => {
    const r = parse(await send(agent, port, request))
    if (r.Response.Error) throw new Error(r.Response.Error.Code)
  })
}

async function cycleRate(target: Target, ms: number): Promise<number> {
  const port = await target.port()
  const bodies = Array.from({ length: CONCURRENCY }, (_, w) => JSON.stringify(startBody(w + 2)))
  return closedLoop(CONCURRENCY, ms, async (w, agent) => {
    const started = parse(await send(agent, port, signed('StartOnlineRecord', bodies[w] as string)))
    if (started.Response.Error) throw new Error(started.Response.Error.Code)
    const stop = JSON.stringify({ SdkAppId: APP.sdkAppId, TaskId: started.Response.TaskId ?? 'x' })
    const stopped = parse(await send(agent, port, signed('StopOnlineRecord', stop)))
    if (stopped.Response.Error) throw new Error(stopped.Response.Error.Code)
  })
}

const hello = new Target('hello')
const stores = [new Target('pglite'), ...(databaseUrl ? [new Target('postgres')] : [])]
if (!databaseUrl)
  console.error('api.bench: PostgreSQL not measured (set BENCH_DATABASE_URL or TEST_DATABASE_URL)')

export const comparisons: Comparison[] = stores.flatMap((target, i) => {
  const name = target.store === 'pglite' ? 'PGlite' : 'PostgreSQL'
  const last = i === stores.length - 1
  return [
    {
      name: `API on ${name}`,
      ...(target.store === 'postgres' ? { targetOps: 2000 } : {}),
      minTimeMs: 14_000,
      baseline: { name: 'Fastify hello route', measure: (ms) => describeRate(hello, ms) },
      subject: { name: 'signed DescribeOnlineRecord/s', measure: (ms) => describeRate(target, ms) },
    },
    {
      name: `API on ${name}`,
      ...(target.store === 'postgres' ? { targetOps: 300 } : {}),
      minTimeMs: 14_000,
      // A cycle is two requests; the hello route answers both without work.
      baseline: {
        name: 'Fastify hello route, 2 requests',
        measure: async (ms) => (await describeRate(hello, ms)) / 2,
      },
      subject: {
        name: 'StartOnlineRecord+StopOnlineRecord cycles/s',
        measure: (ms) => cycleRate(target, ms),
      },
      teardown: async () => {
        await target.stop()
        if (last) await hello.stop()
      },
    },
  ]
})
