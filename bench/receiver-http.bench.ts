// Requests/s through the receiver's Node http adapter (verify a signed
// OnlineRecordFinished, dispatch to a handler) against a bare http.createServer
// answering 200, each in its own process, loaded the same way from this one.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { Agent, request } from 'node:http'
import { generateWebhookSecret } from '@online-record/protocol'
import { sampleEvent, signPayload } from '@online-record/receiver/testing'
import type { Comparison } from './run.ts'

const CONCURRENCY = 32
const key = 'bench-callback-key'
const secret = generateWebhookSecret()
const { body, headers } = signPayload(sampleEvent('OnlineRecordFinished'), {
  callbackKey: key,
  webhookSecret: secret,
})
const payload = Buffer.from(body)

async function startServer(
  mode: 'bare' | 'receiver',
): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      '--conditions=@online-record/source',
      new URL('./receiver-server.ts', import.meta.url).pathname,
      mode,
      key,
      secret,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const [chunk] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer]
  return { port: Number(chunk.toString().trim()), child }
}

/** Keeps CONCURRENCY keep-alive requests in flight for `ms`; returns responses/s (all must be 200). */
async function load(port: number, ms: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const deadline = performance.now() + ms
  let done = 0
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          agent,
          headers: { ...headers, 'content-length': payload.length },
        },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`))
          res.resume()
          res.on('end', resolve)
        },
      )
      req.on('error', reject)
      req.end(payload)
    })
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await one()
        done++
      }
    }),
  )
  const rate = done / ((performance.now() - started) / 1000)
  agent.destroy()
  return rate
}

// One server process per side, kept across rounds so that its JIT stays warm,
// stopped by the comparison's teardown.
const servers = new Map<string, Promise<{ port: number; child: ChildProcess }>>()

async function stopServers(): Promise<void> {
  for (const server of servers.values()) {
    const { child } = await server
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  servers.clear()
}

async function measure(mode: 'bare' | 'receiver', ms: number): Promise<number> {
  let server = servers.get(mode)
  if (server === undefined) {
    server = startServer(mode)
    servers.set(mode, server)
    await load((await server).port, 1000) // warm-up
  }
  return load((await server).port, ms)
}

export const comparisons: Comparison[] = [
  {
    name: 'receiver over HTTP',
    target: 0.7,
    minTimeMs: 21_000,
    baseline: {
      name: 'bare http.createServer answering 200',
      measure: (ms) => measure('bare', ms),
    },
    subject: {
      name: 'createNodeMiddleware: verify + dispatch',
      measure: (ms) => measure('receiver', ms),
    },
    teardown: stopServers,
  },
]
