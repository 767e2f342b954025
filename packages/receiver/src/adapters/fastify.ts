// Fastify: `app.register(fastifyReceiver(receiver), { prefix: '/callback' })`.
// The plugin keeps the raw body in its own encapsulated scope, so the app's
// JSON parsing elsewhere is untouched.
import type { IncomingHttpHeaders } from 'node:http'
import type { Receiver } from '../receiver.ts'

/** The slices of Fastify's types this adapter uses, so Fastify stays an optional peer. */
export interface FastifyInstanceLike {
  removeAllContentTypeParsers(): void
  addContentTypeParser(
    contentType: string,
    options: { parseAs: 'buffer' },
    parser: (
      request: unknown,
      body: Buffer,
      done: (error: Error | null, body?: unknown) => void,
    ) => void,
  ): void
  post(
    path: string,
    handler: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>,
  ): void
}
export interface FastifyRequestLike {
  body: unknown
  headers: IncomingHttpHeaders
}
export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike
  header(name: string, value: string): FastifyReplyLike
  send(payload: string): unknown
}

export interface FastifyReceiverOptions {
  /** Route inside the plugin's prefix. Default `/`. */
  path?: string
}

export function fastifyReceiver(receiver: Receiver, options: FastifyReceiverOptions = {}) {
  return async (fastify: FastifyInstanceLike): Promise<void> => {
    // Inherited parsers (JSON above all) would hand the route a parsed object.
    fastify.removeAllContentTypeParsers()
    fastify.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) =>
      done(null, body),
    )
    fastify.post(options.path ?? '/', async (request, reply) => {
      const body = request.body instanceof Uint8Array ? request.body : new Uint8Array()
      const result = await receiver.receive(body, request.headers)
      return reply.code(result.status).header('content-type', 'application/json').send(result.body)
    })
  }
}
