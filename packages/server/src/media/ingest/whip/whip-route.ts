// WHIP's HTTP side (RFC 9725) on the API port:
//   POST   /whip/{RoomId}?sdkappid=N&userid=U[&streamtype=main|aux]
//          Content-Type: application/sdp, Authorization: Bearer {UserSig}
//          → 201, the SDP answer, Location: /whip/session/{unguessable id}
//   DELETE /whip/session/{id}   ends the publish (the same Bearer again)
//   PATCH  /whip/session/{id}   405: no trickle ICE, no ICE restart
//   OPTIONS on either           CORS preflight, so a page elsewhere can publish
// Every refusal is a status with a one-line reason, in text/plain; 429 (over a
// quota of the tenant) and 503 (the service's capacity) with Retry-After.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ROOM_PATTERN, type StreamKind, USER_PATTERN } from '../../contracts.ts'
import type { WhipIngest } from './whip-ingest.ts'

/** An offer larger than this is refused before it is read further (browsers send 5–15 KB). */
export const MAX_OFFER_BYTES = 64 * 1024
const SESSION_PATH = '/whip/session/'

/** CORS for pages on any origin: the UserSig in Authorization is the credential, not a cookie. */
export function cors(
  request: FastifyRequest,
  reply: FastifyReply,
  methods = 'POST, DELETE, PATCH, OPTIONS',
): FastifyReply {
  return reply
    .header('access-control-allow-origin', request.headers.origin ?? '*')
    .header('vary', 'Origin')
    .header('access-control-allow-methods', methods)
    .header('access-control-allow-headers', 'Authorization, Content-Type, If-Match')
    .header(
      'access-control-expose-headers',
      'Location, Link, Accept-Post, WWW-Authenticate, Retry-After',
    )
    .header('access-control-max-age', '600')
}

function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  reason: string,
): FastifyReply {
  cors(request, reply).code(status).type('text/plain; charset=utf-8')
  if (status === 401) reply.header('www-authenticate', 'Bearer realm="whip", error="invalid_token"')
  return reply.send(`${reason}\n`)
}

/** The UserSig of `Authorization: Bearer …`, or undefined. */
export function bearer(request: FastifyRequest): string | undefined {
  const m = /^Bearer +([^\s]{1,4096})$/i.exec(request.headers.authorization ?? '')
  return m?.[1]
}

/** One query parameter as a string ('' when absent or repeated). */
function one(query: unknown, key: string): string {
  if (typeof query !== 'object' || query === null || !Object.hasOwn(query, key)) return ''
  const v = (query as Record<string, unknown>)[key]
  return typeof v === 'string' ? v : ''
}

/** The room (path), user id and SdkAppId (query) of a publisher's request, or why they are bad. */
export function roomUserOf(
  request: FastifyRequest<{ Params: { room: string } }>,
): { room: string; userId: string; sdkAppId: number } | string {
  const room = request.params.room
  if (!ROOM_PATTERN.test(room)) return 'bad room in the path'
  const userId = one(request.query, 'userid')
  if (!USER_PATTERN.test(userId)) return 'missing or bad userid'
  const sdkAppId = Number(one(request.query, 'sdkappid'))
  if (!Number.isSafeInteger(sdkAppId) || sdkAppId <= 0) return 'missing or bad sdkappid'
  return { room, userId, sdkAppId }
}

/** Why an SDP offer cannot be answered, or undefined when it can be tried. */
export function offerProblem(sdp: string): string | undefined {
  if (!sdp.startsWith('v=0')) return 'the body is not an SDP offer'
  if (!/^m=(audio|video) /m.test(sdp)) return 'the offer has no audio or video'
  if (!/^a=fingerprint:/m.test(sdp)) return 'the offer has no DTLS fingerprint'
  if (!/^a=ice-ufrag:/m.test(sdp) || !/^a=ice-pwd:/m.test(sdp))
    return 'the offer has no ICE credentials'
  return undefined
}

export function registerWhip(api: FastifyInstance, ingest: WhipIngest): void {
  api.register(async (scope) => {
    // Errors before a handler runs (a body over the limit) in this protocol's words.
    scope.setErrorHandler(
      (error: Error & { statusCode?: number; code?: string }, request, reply) => {
        const status =
          error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
            ? 413
            : error.statusCode !== undefined && error.statusCode < 500
              ? error.statusCode
              : 503
        return refuse(
          request,
          reply,
          status,
          status === 413 ? `the offer is larger than ${MAX_OFFER_BYTES} bytes` : error.message,
        )
      },
    )

    const preflight = async (request: FastifyRequest, reply: FastifyReply) =>
      cors(request, reply).header('accept-post', 'application/sdp').code(204).send()
    scope.options('/whip/:room', preflight)
    scope.options(`${SESSION_PATH}:session`, preflight)

    scope.post<{ Params: { room: string } }>(
      '/whip/:room',
      { bodyLimit: MAX_OFFER_BYTES },
      async (request, reply) => {
        const who = roomUserOf(request)
        if (typeof who === 'string') return refuse(request, reply, 400, who)
        const { room, userId, sdkAppId } = who
        const streamType = one(request.query, 'streamtype') || 'main'
        if (streamType !== 'main' && streamType !== 'aux')
          return refuse(request, reply, 400, 'streamtype must be main or aux')
        const userSig = bearer(request)
        if (userSig === undefined)
          return refuse(request, reply, 401, 'missing Authorization: Bearer {UserSig}')
        const type = String(request.headers['content-type'] ?? '')
          .split(';')[0]
          ?.trim()
          .toLowerCase()
        if (type !== 'application/sdp')
          return refuse(request, reply, 415, 'the body must be application/sdp')
        const body = Buffer.isBuffer(request.body) ? request.body.toString('utf8') : ''
        const problem = offerProblem(body)
        if (problem !== undefined) return refuse(request, reply, 400, problem)
        const result = await ingest.offer({
          room,
          sdkAppId,
          userId,
          kind: streamType as StreamKind,
          userSig,
          sdp: body,
          remote: `${request.ip}`,
        })
        if (!result.ok) {
          const retryAfter = result.retryAfter ?? (result.status === 503 ? 5 : undefined)
          if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
          return refuse(request, reply, result.status, result.reason)
        }
        return cors(request, reply)
          .code(201)
          .type('application/sdp')
          .header('location', `${SESSION_PATH}${result.session}`)
          .send(result.answer)
      },
    )

    scope.delete<{ Params: { session: string } }>(
      `${SESSION_PATH}:session`,
      async (request, reply) => {
        const userSig = bearer(request)
        if (userSig === undefined)
          return refuse(request, reply, 401, 'missing Authorization: Bearer {UserSig}')
        const outcome = ingest.end(request.params.session, userSig)
        if (outcome === 'unknown') return refuse(request, reply, 404, 'no such WHIP session')
        if (outcome === 'unauthorized')
          return refuse(request, reply, 401, 'not the UserSig this session was made with')
        return cors(request, reply).code(200).send()
      },
    )

    scope.patch<{ Params: { session: string } }>(
      `${SESSION_PATH}:session`,
      async (request, reply) => {
        if (!ingest.has(request.params.session))
          return refuse(request, reply, 404, 'no such WHIP session')
        reply.header('allow', 'DELETE, OPTIONS')
        return refuse(request, reply, 405, 'trickle ICE and ICE restarts are not supported')
      },
    )
  })
}
