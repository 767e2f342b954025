// The admin API: `/admin/v1/…` on the service's HTTP port, JSON in and out,
// `Authorization: Bearer {operator token}` on every request. The CLI is a
// client of it; the dashboard will be another. Errors are
// `{"error": {"code", "message"}}` with an HTTP status (400 invalid, 401,
// 404 not_found, 409 exists / not_active, 413 too large, 500 internal).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AdminError, type AdminOperations, parse, RotateSchema } from './operations.ts'
import { bearerMatches } from './token.ts'

export const ADMIN_PREFIX = '/admin/v1'

export interface AdminApiOptions {
  ops: AdminOperations
  /** The operator token every request must carry. */
  token: string
}

function body(request: FastifyRequest): unknown {
  const raw = request.body
  if (!Buffer.isBuffer(raw) || raw.length === 0) return {}
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch {
    throw new AdminError(400, 'invalid', 'the body is not JSON')
  }
}

const appId = (request: FastifyRequest): number => {
  const text = (request.params as { sdkAppId: string }).sdkAppId
  if (!/^\d{1,15}$/.test(text)) throw new AdminError(400, 'invalid', 'sdkAppId must be a number')
  return Number(text)
}
const param = (request: FastifyRequest, name: string): string =>
  (request.params as Record<string, string>)[name] as string

export function registerAdminApi(api: FastifyInstance, options: AdminApiOptions): void {
  const { ops, token } = options
  void api.register(
    async (scope) => {
      scope.addHook('onRequest', async (request, reply) => {
        reply.header('cache-control', 'no-store')
        if (!bearerMatches(request.headers.authorization, token)) {
          reply.header('www-authenticate', 'Bearer realm="online-record admin"')
          throw new AdminError(
            401,
            'unauthorized',
            'a valid operator token is needed (Authorization: Bearer …)',
          )
        }
      })
      scope.setErrorHandler(
        (error: Error & { statusCode?: number }, request, reply: FastifyReply) => {
          if (error instanceof AdminError) {
            return reply
              .code(error.status)
              .send({ error: { code: error.code, message: error.message } })
          }
          // Fastify's own refusals keep their status (413 too large, 415, 400).
          if (error.statusCode !== undefined && error.statusCode < 500) {
            return reply
              .code(error.statusCode)
              .send({ error: { code: 'invalid', message: error.message } })
          }
          request.log.error({ err: error }, 'admin request failed')
          return reply.code(500).send({ error: { code: 'internal', message: 'internal error' } })
        },
      )
      // Any other path under the prefix (the TIW API answers every other path).
      const noSuchEndpoint = async (_request: FastifyRequest, reply: FastifyReply) =>
        reply.code(404).send({ error: { code: 'not_found', message: 'no such admin endpoint' } })
      scope.setNotFoundHandler(noSuchEndpoint)
      scope.all('/*', noSuchEndpoint)

      scope.get('/info', async () => ops.info())

      scope.get('/apps', async () => ({ apps: await ops.listApps() }))
      scope.post('/apps', async (request, reply) => {
        reply.code(201)
        return { app: await ops.createApp(body(request)) }
      })
      scope.get('/apps/:sdkAppId', async (request) => ({ app: await ops.getApp(appId(request)) }))
      scope.patch('/apps/:sdkAppId', async (request) => ({
        app: await ops.updateApp(appId(request), body(request)),
      }))
      scope.post('/apps/:sdkAppId/rotate', async (request) => ({
        app: await ops.rotate(appId(request), parse(RotateSchema, body(request)).kind),
      }))
      scope.post('/apps/:sdkAppId/usersig', async (request) =>
        ops.userSig(appId(request), body(request)),
      )

      scope.get('/tasks', async (request) => ops.listTasks(request.query))
      scope.get('/tasks/:taskId', async (request) => ({
        task: await ops.getTask(param(request, 'taskId')),
      }))
      scope.post('/tasks/:taskId/stop', async (request) => ({
        task: await ops.stopTask(param(request, 'taskId')),
      }))

      scope.get('/callbacks', async (request) => ops.listCallbacks(request.query))
      scope.get('/callbacks/:eventId', async (request) => ({
        event: await ops.getCallback(param(request, 'eventId')),
      }))
      scope.post('/callbacks/resend', async (request) => ops.resend(body(request)))
    },
    { prefix: ADMIN_PREFIX },
  )
}
