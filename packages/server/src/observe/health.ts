// GET /healthz: the process is alive (plain 200, nothing checked).
// GET /readyz: it can take traffic: every check passes (200), or 503 naming
// the checks that fail. A load balancer sends traffic by the second; a
// supervisor restarts by the first.
import type { FastifyInstance } from 'fastify'

export interface Check {
  name: string
  /** Resolves when the check passes; rejects (or throws) with why it does not. */
  run(): Promise<void>
}

/** Each check's own deadline: a hung store is a failed check, not a hung probe. */
const CHECK_MS = 3000

export function registerHealth(api: FastifyInstance, checks: () => readonly Check[]): void {
  api.get('/healthz', async (_request, reply) => reply.type('text/plain').send('ok\n'))
  api.get('/readyz', async (_request, reply) => {
    const results = await Promise.all(
      checks().map(async (c) => {
        let timer: NodeJS.Timeout | undefined
        try {
          await Promise.race([
            c.run(),
            new Promise((_r, reject) => {
              timer = setTimeout(
                () => reject(new Error(`no answer within ${CHECK_MS} ms`)),
                CHECK_MS,
              )
            }),
          ])
          return { name: c.name, ok: true as const }
        } catch (error) {
          return { name: c.name, ok: false as const, error: (error as Error).message }
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    const failed = results.filter((r) => !r.ok)
    return reply
      .code(failed.length === 0 ? 200 : 503)
      .type('text/plain')
      .send(
        failed.length === 0
          ? `ready: ${results.map((r) => r.name).join(', ')}\n`
          : failed.map((r) => `not ready: ${r.name}: ${'error' in r ? r.error : ''}`).join('\n') +
              '\n',
      )
  })
}
