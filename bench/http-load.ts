// A closed-loop HTTP load generator: `concurrency` keep-alive connections, each
// sending its next request as soon as the previous answer arrived.
import { Agent, request } from 'node:http'

export interface HttpRequestSpec {
  path?: string
  headers: Record<string, string | number>
  body: Buffer
}

export function send(agent: Agent, port: number, spec: HttpRequestSpec): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: spec.path ?? '/',
        agent,
        headers: { ...spec.headers, 'content-length': spec.body.length },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`))
          else resolve(Buffer.concat(chunks).toString('utf8'))
        })
      },
    )
    req.on('error', reject)
    req.end(spec.body)
  })
}

/**
 * Runs `op(worker, agent)` in `concurrency` loops for `ms` milliseconds and
 * returns completed operations per second.
 */
export async function closedLoop(
  concurrency: number,
  ms: number,
  op: (worker: number, agent: Agent) => Promise<void>,
): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const started = performance.now()
  const deadline = started + ms
  let done = 0
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < deadline) {
        await op(worker, agent)
        done++
      }
    }),
  )
  agent.destroy()
  return done / ((performance.now() - started) / 1000)
}
