// Hono: `app.post('/callback', honoHandler(receiver))`.
import type { Receiver } from '../receiver.ts'
import { createWebHandler } from './web.ts'

/** The slice of Hono's Context this adapter uses, so Hono stays an optional peer. */
export interface HonoContextLike {
  req: { raw: Request }
}

export function honoHandler(receiver: Receiver): (c: HonoContextLike) => Promise<Response> {
  const handle = createWebHandler(receiver)
  return (c) => handle(c.req.raw)
}
