// The web-standard Request/Response adapter: Next.js route handlers, Cloudflare
// Workers, Deno, Bun, Vercel Edge, and Hono through it.
import type { Receiver } from '../receiver.ts'

/** `(request) => Response` for a POST route that receives callbacks. */
export function createWebHandler(receiver: Receiver): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method !== 'POST') {
      return Response.json(
        { error_code: 405, error: 'METHOD_NOT_ALLOWED' },
        { status: 405, headers: { allow: 'POST' } },
      )
    }
    if (request.bodyUsed) {
      const result = await receiver.receive(undefined as unknown as string, request.headers)
      return new Response(result.body, {
        status: result.status,
        headers: { 'content-type': 'application/json' },
      })
    }
    const body = new Uint8Array(await request.arrayBuffer())
    const result = await receiver.receive(body, request.headers)
    return new Response(result.body, {
      status: result.status,
      headers: { 'content-type': 'application/json' },
    })
  }
}
