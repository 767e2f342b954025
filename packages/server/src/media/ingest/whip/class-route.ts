// The class page and what it reads:
//   GET /class/{RoomId}[?sdkappid=…&userid=…&usersig=…]   the page (a join form without them)
//   GET /class-app/class.js                                 its script
//   GET /class/{RoomId}/status?sdkappid=…&userid=…[&sessions=id,id]   { room, state[, sessions] },
//       with Authorization: Bearer {UserSig}; state is "recording", "paused" or "not recording";
//       sessions: each WHIP session resource asked for (the last part of its Location), "live",
//       the reason it ended ("failed": the media worker died; "dropped": the connection was
//       lost; "replaced", "unpublished", "kicked", "refused"), or "unknown" (not this process's,
//       another user's, or long gone). The page publishes again when its session is gone.
// The page publishes with WHIP on the same origin; nothing is loaded from elsewhere.
import { readFile } from 'node:fs/promises'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Authorization } from '../../contracts.ts'
import type { SessionState } from './whip-ingest.ts'
import { bearer, cors, roomUserOf } from './whip-route.ts'

const PAGE = new URL('./page/class.html', import.meta.url)
const SCRIPT = new URL('./page/class.js', import.meta.url)

export type RoomState = 'recording' | 'paused' | 'not recording'

export interface ClassPageOptions {
  authorize(sdkAppId: number, userId: string, userSig: string): Promise<Authorization>
  /** The status of the task recording the room now (TRTCRoomIdStr, TRTCRoomId or RoomId), if any. */
  taskStatus(sdkAppId: number, room: string): Promise<string | undefined>
  /** Whether a WHIP session resource of this user in this room is live, or why it ended. */
  sessionState(
    session: string,
    who: { sdkAppId: number; room: string; userId: string },
  ): SessionState
}

/** Session resources one status request may ask about (a camera and a screen, and a spare). */
const MAX_SESSIONS = 4
const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/

/** The `sessions` query parameter: the ids, or why it is bad. */
function sessionsOf(query: unknown): string[] | string {
  const raw =
    typeof query === 'object' && query !== null && Object.hasOwn(query, 'sessions')
      ? (query as Record<string, unknown>).sessions
      : ''
  if (typeof raw !== 'string') return 'sessions must be given once'
  if (raw === '') return []
  const ids = raw.split(',')
  if (ids.length > MAX_SESSIONS) return `at most ${MAX_SESSIONS} sessions`
  if (!ids.every((id) => SESSION_ID.test(id))) return 'bad session id in sessions'
  return ids
}

export function stateOf(status: string | undefined): RoomState {
  return status === 'RECORDING' ? 'recording' : status === 'PAUSED' ? 'paused' : 'not recording'
}

function problem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  reason: string,
): FastifyReply {
  return cors(request, reply, STATUS_METHODS)
    .code(status)
    .header('cache-control', 'no-store')
    .send({ reason })
}

const STATUS_METHODS = 'GET, OPTIONS'

export function registerClassPage(api: FastifyInstance, options: ClassPageOptions): void {
  api.get('/class/:room', async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'self'; media-src 'self' blob: mediastream:; style-src 'self' 'unsafe-inline'; script-src 'self'",
      )
      .send(await readFile(PAGE, 'utf8')),
  )
  api.get('/class-app/class.js', async (_request, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(await readFile(SCRIPT, 'utf8')),
  )
  api.register(async (scope) => {
    // A failure behind the endpoint (the store) is this endpoint's 503, not the TIW API's envelope.
    scope.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
      const status =
        error.statusCode !== undefined && error.statusCode < 500 ? error.statusCode : 503
      return problem(request, reply, status, status === 503 ? 'not available now' : error.message)
    })
    scope.options('/class/:room/status', async (request, reply) =>
      cors(request, reply, STATUS_METHODS).code(204).send(),
    )
    scope.get<{ Params: { room: string } }>('/class/:room/status', async (request, reply) => {
      const who = roomUserOf(request)
      if (typeof who === 'string') return problem(request, reply, 400, who)
      const { room, userId, sdkAppId } = who
      const sessions = sessionsOf(request.query)
      if (typeof sessions === 'string') return problem(request, reply, 400, sessions)
      const userSig = bearer(request)
      if (userSig === undefined)
        return problem(request, reply, 401, 'missing Authorization: Bearer {UserSig}')
      const decision = await options.authorize(sdkAppId, userId, userSig)
      if (!decision.ok) return problem(request, reply, 401, decision.reason)
      const state = stateOf(await options.taskStatus(sdkAppId, room))
      const body: { room: string; state: RoomState; sessions?: Record<string, SessionState> } = {
        room,
        state,
      }
      if (sessions.length > 0)
        body.sessions = Object.fromEntries(
          sessions.map((id) => [id, options.sessionState(id, { sdkAppId, room, userId })]),
        )
      return cors(request, reply, STATUS_METHODS).header('cache-control', 'no-store').send(body)
    })
  })
}
