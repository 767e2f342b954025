// Node's http (and Express, Connect, Next.js pages API) adapter.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ReceiveResult, Receiver } from '../receiver.ts'

export interface NodeMiddlewareOptions {
  /** Only requests to this path are handled; others go to `next` (or get 404). */
  path?: string
  /** Largest accepted body in bytes. Default 1 MiB. */
  maxBodyBytes?: number
}

type RequestWithBody = IncomingMessage & { body?: unknown; rawBody?: unknown }

const RAW_BODY_HINT =
  'The request body was already parsed by a JSON middleware; the raw bytes are needed to verify it. ' +
  'Mount the receiver before express.json(), or use express.raw({ type: "application/json" }) on its route.'

async function readBody(
  req: RequestWithBody,
  limit: number,
): Promise<Uint8Array | string | 'too-large' | 'parsed'> {
  // Frameworks that read the stream leave the bytes behind in one of these.
  if (typeof req.rawBody === 'string' || req.rawBody instanceof Uint8Array) return req.rawBody
  if (typeof req.body === 'string' || req.body instanceof Uint8Array) return req.body
  if (req.body !== undefined && req.body !== null && typeof req.body === 'object') return 'parsed'
  if (req.readableEnded) return 'parsed'
  // Listeners rather than `for await`: the async iterator costs tens of µs a request.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) chunks.push(chunk)
    })
    req.once('end', () =>
      resolve(
        size > limit
          ? 'too-large'
          : chunks.length === 1
            ? (chunks[0] as Buffer)
            : Buffer.concat(chunks),
      ),
    )
    req.once('error', reject)
  })
}

function send(res: ServerResponse, result: Pick<ReceiveResult, 'status' | 'body'>): void {
  res.writeHead(result.status, { 'content-type': 'application/json' })
  res.end(result.body)
}

/** `(req, res, next?)`: answers callbacks at `path`, passes anything else to `next`. */
export function createNodeMiddleware(receiver: Receiver, options: NodeMiddlewareOptions = {}) {
  const limit = options.maxBodyBytes ?? 1024 * 1024
  return async (
    req: IncomingMessage,
    res: ServerResponse,
    next?: (error?: unknown) => void,
  ): Promise<void> => {
    const pathname = (req.url ?? '/').split('?')[0]
    if (options.path !== undefined && pathname !== options.path) {
      if (next) return next()
      return send(res, {
        status: 404,
        body: JSON.stringify({ error_code: 404, error: 'NOT_FOUND' }),
      })
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST')
      return send(res, {
        status: 405,
        body: JSON.stringify({ error_code: 405, error: 'METHOD_NOT_ALLOWED' }),
      })
    }
    const body = await readBody(req as RequestWithBody, limit)
    if (body === 'too-large') {
      return send(res, {
        status: 413,
        body: JSON.stringify({ error_code: 413, error: 'PAYLOAD_TOO_LARGE' }),
      })
    }
    if (body === 'parsed') {
      // Same outcome as verify() given a parsed object, with the Node-specific fix.
      const result = await receiver.receive(undefined as unknown as string, req.headers)
      const parsed = JSON.parse(result.body) as Record<string, unknown>
      return send(res, {
        status: result.status,
        body: JSON.stringify({ ...parsed, message: RAW_BODY_HINT }),
      })
    }
    send(res, await receiver.receive(body, req.headers))
  }
}
