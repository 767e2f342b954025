// The TencentCloud API 3.0 endpoint: POST / (JSON) and GET / (flattened query),
// signed with TC3-HMAC-SHA256 (or the legacy v1 form), answered with HTTP 200
// and {"Response": {...}} whatever happens, as the official SDKs require.
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import {
  type ActionName,
  API_VERSION,
  ApiError,
  actions,
  checkTc3Timestamp,
  isActionName,
  parseActionRequest,
  parseTc3Authorization,
  startOnlineRecordRequestSchema,
  verifyTc3,
  verifyV1,
} from '@online-record/protocol'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify'
import type { z } from 'zod'
import type { App, Apps } from '../apps/apps.ts'
import type { Clock } from '../clock.ts'
import {
  type CallbackEventRow,
  type CallbackState,
  getCallback,
  listCallbacks,
  resendCallbacks,
  unknownCallbackIds,
} from '../delivery/outbox.ts'
import type { TaskEngine } from '../engine/engine.ts'
import { ConnectionGuard, type ConnectionLimits } from '../net/connection-guard.ts'
import { callbackUrlProblem } from '../net/url-policy.ts'
import type { Db } from '../store/db.ts'
import { coerce, unflatten } from './flat-params.ts'
import { type RateLimit, RateLimiter } from './rate-limit.ts'
import { DatabaseLedger, MemoryLedger, type SignatureLedger } from './signature-ledger.ts'

export const MAX_BODY_BYTES = 1024 * 1024

export interface ApiOptions {
  db: Db
  apps: Apps
  engine: TaskEngine
  clock: Clock
  callbacks?: {
    /** Refuse callback URLs on loopback or private addresses. */
    blockPrivate: boolean
    /** Called when events may have become due (URL changed, resend). */
    changed(): void
    /** Whether this process holds an event in flight without a lease in the store. */
    holds?(eventId: string): boolean
  }
  /** The default limit of an app's requests (an app may have its own). */
  rateLimit: RateLimit
  maxSkewSeconds: number
  autoStopTimeoutMin: number
  /** The service's logger (pino); none: no logs. */
  logger?: FastifyBaseLogger
  /** Told of every TIW request once answered: for metrics. */
  onRequest?: (done: RequestDone) => void
  /** While true (the process is draining), StartOnlineRecord is refused. */
  draining?: () => boolean
  /** More routes on the same server (recordings, ingests, pages), each with its own replies. */
  routes?: readonly ((api: FastifyInstance) => void)[]
  /** Connections held at once; default 4096 in all, 256 per address. */
  connections?: ConnectionLimits
  /** A whole request (headers and body) must arrive within this; default 30 s. */
  requestTimeoutMs?: number
}

/** A TIW request as it ended: what metrics count and the request log line says. */
export interface RequestDone {
  action: string
  sdkAppId: number | undefined
  taskId: string | undefined
  /** The error code, or '' on success. */
  code: string
  seconds: number
}

/** Largest request head (request line and headers) accepted. */
export const MAX_HEADER_BYTES = 16 * 1024

/** Parameters of the v1 signature scheme that are not the action's own. */
const V1_COMMON = new Set([
  'Action',
  'Version',
  'Timestamp',
  'Nonce',
  'SecretId',
  'Region',
  'Signature',
  'SignatureMethod',
  'Token',
  'Language',
  'RequestClient',
])

/** Actions that change nothing: they may share a signature with any other action. */
const READ_ONLY_ACTIONS: ReadonlySet<string> = new Set([
  'DescribeOnlineRecord',
  'DescribeOnlineRecordCallback',
  'DescribeRunningTasks',
  'ExtDescribeCallbacks',
  'ExtDescribeCallbackAttempts',
])

type Handler = (app: App, params: never) => Promise<Record<string, unknown>>

export function buildApi(options: ApiOptions): FastifyInstance {
  const { db, apps, engine, clock } = options
  const callbacks = options.callbacks ?? { blockPrivate: false, changed: () => {} }
  const limiter = new RateLimiter(clock)
  /** What a request was about, for its log line and metrics. */
  const about = new WeakMap<
    FastifyRequest,
    { action: string; sdkAppId?: number; taskId?: string }
  >()
  const schemas = Object.fromEntries(
    Object.entries(actions).map(([name, a]) => [name, a.request as z.ZodType]),
  ) as unknown as Record<ActionName, z.ZodType>
  schemas.StartOnlineRecord = startOnlineRecordRequestSchema({
    autoStopTimeoutMin: options.autoStopTimeoutMin,
  })
  const verifyOptions = { now: () => clock.now(), maxSkewSeconds: options.maxSkewSeconds }
  const ledger: SignatureLedger =
    db.dialect === 'postgres' ? new DatabaseLedger(db) : new MemoryLedger()

  const handlers: Record<ActionName, Handler> = {
    StartOnlineRecord: async (
      app,
      p: z.infer<(typeof actions)['StartOnlineRecord']['request']>,
    ) => ({
      TaskId: await engine.start(app, p),
    }),
    StopOnlineRecord: async (app, p: { TaskId: string }) => none(await engine.stop(app, p.TaskId)),
    PauseOnlineRecord: async (app, p: { TaskId: string }) =>
      none(await engine.pause(app, p.TaskId)),
    ResumeOnlineRecord: async (app, p: { TaskId: string }) =>
      none(await engine.resume(app, p.TaskId)),
    DescribeOnlineRecord: async (app, p: { TaskId: string }) => engine.describe(app, p.TaskId),
    SetOnlineRecordCallback: async (app, p: { Callback: string }) => {
      const problem =
        p.Callback === '' ? undefined : callbackUrlProblem(p.Callback, callbacks.blockPrivate)
      if (problem !== undefined) {
        throw new ApiError(
          'InvalidParameter.CallbackAddressFormatError',
          `The callback address ${problem}.`,
        )
      }
      await apps.setCallback(app.sdkAppId, p.Callback)
      callbacks.changed()
      return {}
    },
    SetOnlineRecordCallbackKey: async (app, p: { CallbackKey: string }) =>
      none(await apps.setCallbackKey(app.sdkAppId, p.CallbackKey)),
    DescribeOnlineRecordCallback: async (app) => {
      const fresh = (await apps.get(app.sdkAppId)) as App
      return { Callback: fresh.callbackUrl, CallbackKey: fresh.callbackKey }
    },
    DescribeRunningTasks: async (app, p: { TaskType: string; Offset?: number; Limit?: number }) => {
      // Recording is the one task type this service runs.
      if (p.TaskType !== 'OnlineRecord') return { Total: 0, Tasks: [] }
      const { total, tasks } = await engine.running(app, p.Offset ?? 0, p.Limit ?? 100)
      return {
        Total: total,
        Tasks: tasks.map((t) => ({
          SdkAppID: app.sdkAppId,
          TaskID: t.taskId,
          TaskType: 'OnlineRecord',
          CreateTime: formatTime(t.createdAtMs),
          CancelTime: null,
          Status:
            t.status === 'STOPPED'
              ? 'PROCESSING'
              : t.status === 'PREPARED'
                ? 'QUEUED'
                : 'PROCESSING',
          Progress: t.status === 'STOPPED' ? t.progress : 0,
          FileURL: '',
          RoomID: t.roomId,
        })),
      }
    },
    ExtDescribeCallbacks: async (
      app,
      p: z.infer<(typeof actions)['ExtDescribeCallbacks']['request']>,
    ) => {
      const { total, events } = await listCallbacks(db, clock, {
        sdkAppId: app.sdkAppId,
        ...(p.TaskId === undefined ? {} : { taskId: p.TaskId }),
        ...(p.State === undefined ? {} : { state: p.State.toLowerCase() as CallbackState }),
        ...(p.Since === undefined ? {} : { sinceMs: p.Since * 1000 }),
        offset: p.Offset ?? 0,
        limit: p.Limit ?? 100,
      })
      return { Total: total, Events: events.map((e) => callbackItem(e, callbacks.holds)) }
    },
    ExtDescribeCallbackAttempts: async (app, p: { EventId: string }) => {
      const event = await getCallback(db, clock, p.EventId, app.sdkAppId)
      if (event === undefined) {
        throw new ApiError('ResourceNotFound', `Callback event ${p.EventId} does not exist.`)
      }
      return {
        Event: callbackItem(event, callbacks.holds),
        EventData: event.eventData,
        Attempts: event.attemptLog.map((a) => ({
          Attempt: a.attempt,
          TimeMs: a.atMs,
          Url: a.url,
          Status: a.status,
          LatencyMs: a.latencyMs,
          Response: a.response,
          Error: a.error,
        })),
      }
    },
    ExtResendCallbacks: async (app, p: { EventIds?: string[]; Since?: number }) => {
      if (p.EventIds) {
        // All or nothing: an unknown id changes nothing.
        const unknown = await unknownCallbackIds(db, p.EventIds, app.sdkAppId)
        if (unknown.length > 0) {
          throw new ApiError(
            'ResourceNotFound',
            `Callback event${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} do${unknown.length > 1 ? '' : 'es'} not exist.`,
          )
        }
      }
      const ids = await resendCallbacks(
        db,
        clock,
        p.EventIds
          ? { sdkAppId: app.sdkAppId, eventIds: p.EventIds }
          : { sdkAppId: app.sdkAppId, sinceMs: (p.Since as number) * 1000 },
        (p.EventIds ?? []).filter((id) => callbacks.holds?.(id)),
      )
      if (ids.length > 0) callbacks.changed()
      return { EventIds: ids }
    },
  }

  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  const api = Fastify({
    bodyLimit: MAX_BODY_BYTES,
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    // One line per request, with its action, app, task and code (onResponse below).
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    genReqId: () => randomUUID(),
    // Deadlines, not idle timers: the head within 10 s, the whole request
    // within requestTimeoutMs, checked every second.
    requestTimeout: requestTimeoutMs,
    http: {
      headersTimeout: Math.min(10_000, requestTimeoutMs),
      connectionsCheckingInterval: 1000,
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    // A request the HTTP parser refuses (head too large, malformed, too
    // slow) still gets an envelope, as TIW clients expect.
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE' || !socket.writable) {
        socket.destroy()
        return
      }
      const body = JSON.stringify({
        Response: {
          Error: clientError(error.code, requestTimeoutMs).toJSON(),
          RequestId: randomUUID(),
        },
      })
      socket.end(
        `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      )
    },
  })
  new ConnectionGuard(options.connections ?? { total: 4096, perAddress: 1024 }).attach(api.server)
  // The signature covers the exact bytes: every body is kept raw.
  api.removeAllContentTypeParsers()
  api.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  const envelope = (request: FastifyRequest, fields: Record<string, unknown>) => ({
    Response: { ...fields, RequestId: request.id },
  })
  const fail = (request: FastifyRequest, error: ApiError) =>
    envelope(request, { Error: error.toJSON() })

  /** Replies of the TIW API: JSON, and the client's trace id echoed. */
  const tiwReply = (request: FastifyRequest, reply: FastifyReply) => {
    const trace = request.headers['x-tc-traceid']
    if (typeof trace === 'string') reply.header('X-TC-TraceId', trace)
    return reply.header('content-type', 'application/json')
  }

  // Errors the framework raises before a handler runs (body too large, bad
  // content length, …) still answer HTTP 200 with an error envelope.
  api.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    const apiError =
      error instanceof ApiError
        ? error
        : error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? new ApiError(
              'RequestSizeLimitExceeded',
              `The request body exceeds ${MAX_BODY_BYTES} bytes.`,
            )
          : error.statusCode !== undefined && error.statusCode < 500
            ? new ApiError('InvalidRequest', error.message)
            : new ApiError('InternalError', 'Internal error.')
    if (apiError.code === 'InternalError') request.log.error({ err: error }, 'request failed')
    return tiwReply(request, reply).code(200).send(fail(request, apiError))
  })

  /**
   * Runs a change whose signature does not cover its action: refused if the
   * signature already applied another change; the signature is held while it
   * runs, kept when the change is applied, let go when it is refused.
   */
  async function applyOnce(
    action: string,
    { signature, expiresMs }: { signature: string; expiresMs: number },
    change: () => Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown>> {
    const claim = await ledger.claim(signature, action, expiresMs, clock.now())
    if (claim.action !== action) {
      throw new ApiError(
        'AuthFailure.SignatureFailure',
        `This signature already applied a change (${claim.action}): X-TC-Action is not signed, so a signed request is not taken for another change. Send it again in the next second (it is signed anew), or sign X-TC-Action.`,
      )
    }
    let result: Record<string, unknown>
    try {
      result = await change()
    } catch (error) {
      // Refused on its merits: nothing changed, the signature is free for another change.
      if (error instanceof ApiError) await ledger.release(signature, claim)
      throw error
    }
    await ledger.confirm(signature, action, expiresMs, clock.now())
    return result
  }

  async function handle(request: FastifyRequest): Promise<Record<string, unknown>> {
    const method = request.method
    const url = request.url
    const q = url.indexOf('?')
    const rawQuery = q < 0 ? '' : url.slice(q + 1)
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const authorization = request.headers.authorization
    const contentType = String(request.headers['content-type'] ?? '')

    // The action named in the header, for the log line of a request refused
    // before its action is read (only names that exist are kept).
    const named = String(request.headers['x-tc-action'] ?? '')
    if (isActionName(named)) about.set(request, { action: named })
    let app: App
    let action: string
    let params: unknown
    /** A change under a TC3 signature that does not cover its action: held in the ledger. */
    let guarded: { signature: string; expiresMs: number } | undefined
    // Flattened parameters arrive as strings and are typed by the schema.
    let flat = true
    if (authorization !== undefined) {
      action = String(request.headers['x-tc-action'] ?? '')
      checkAction(action, String(request.headers['x-tc-version'] ?? ''))
      about.set(request, { action })
      const auth = parseTc3Authorization(authorization)
      checkTc3Timestamp(request.headers, verifyOptions)
      const found = await apps.getBySecretId(auth.secretId)
      if (found === undefined)
        throw new ApiError(
          'AuthFailure.SecretIdNotFound',
          `SecretId ${auth.secretId} does not exist.`,
        )
      verifyTc3(
        {
          method,
          path: url.slice(0, q < 0 ? undefined : q),
          rawQuery,
          headers: request.headers,
          body,
        },
        auth,
        found.secretKey,
        verifyOptions,
      )
      app = usable(found)
      // X-TC-Action is outside the signature unless the client signed it: a
      // change is refused under a signature another change already applied.
      // Reads are left out both ways: a read and a change of the same body in
      // one second (Describe, then Stop) legitimately share a signature.
      if (!auth.signedHeaders.includes('x-tc-action') && !READ_ONLY_ACTIONS.has(action)) {
        const timestamp = Number(request.headers['x-tc-timestamp'])
        guarded = {
          signature: auth.signature,
          expiresMs: (timestamp + options.maxSkewSeconds + 1) * 1000,
        }
      }
      if (method === 'GET') params = unflatten(new URLSearchParams(rawQuery))
      else if (contentType.startsWith('application/x-www-form-urlencoded'))
        params = unflatten(new URLSearchParams(body.toString('utf8')))
      else {
        flat = false
        try {
          params = JSON.parse(body.toString('utf8'))
        } catch {
          throw new ApiError(
            'InvalidParameter.UnmarshalJSONBodyFail',
            'The request body is not valid JSON.',
          )
        }
      }
    } else {
      // Legacy v1: everything travels as form or query parameters.
      const form =
        method === 'GET'
          ? rawQuery
          : contentType.startsWith('application/x-www-form-urlencoded')
            ? body.toString('utf8')
            : ''
      const all: Record<string, string> = Object.create(null)
      for (const [k, v] of new URLSearchParams(form)) all[k] = v
      if (all.Signature === undefined) {
        throw new ApiError(
          'AuthFailure.InvalidAuthorization',
          'The request carries neither an Authorization header nor a v1 Signature.',
        )
      }
      action = all.Action ?? ''
      checkAction(action, all.Version ?? '')
      about.set(request, { action })
      const found = await apps.getBySecretId(all.SecretId ?? '')
      if (found === undefined)
        throw new ApiError(
          'AuthFailure.SecretIdNotFound',
          `SecretId ${all.SecretId ?? ''} does not exist.`,
        )
      verifyV1(
        all,
        found.secretKey,
        { method, host: String(request.headers.host ?? '') },
        verifyOptions,
      )
      app = usable(found)
      params = unflatten(Object.entries(all).filter(([k]) => !V1_COMMON.has(k)))
    }

    const name = action as ActionName
    about.set(request, { action: name, sdkAppId: app.sdkAppId })
    const limit = {
      perSecond: app.rateLimit ?? options.rateLimit.perSecond,
      burst: app.rateBurst ?? options.rateLimit.burst,
    }
    if (!limiter.take(String(app.sdkAppId), limit)) {
      throw new ApiError(
        'RequestLimitExceeded',
        `More than ${limit.perSecond} requests a second (${limit.burst} at once) for this app.`,
      )
    }
    if (name === 'StartOnlineRecord' && options.draining?.()) {
      throw new ApiError(
        'ResourceUnavailable',
        'This process is shutting down and takes no new tasks; send the request again (another process takes it).',
      )
    }
    const schema = schemas[name]
    const parsed = parseActionRequest(name, flat ? coerce(params, schema) : params, schema)
    if (!parsed.ok) throw parsed.error
    const sdkAppId =
      (parsed.value as { SdkAppId?: number; SdkAppID?: number }).SdkAppId ??
      (parsed.value as { SdkAppID?: number }).SdkAppID
    if (sdkAppId !== app.sdkAppId) {
      throw new ApiError(
        'UnauthorizedOperation.SdkAppId',
        `SdkAppId ${sdkAppId} does not belong to these credentials.`,
      )
    }
    const taskId = (parsed.value as { TaskId?: unknown }).TaskId
    if (typeof taskId === 'string')
      about.set(request, { action: name, sdkAppId: app.sdkAppId, taskId })
    const result = guarded
      ? await applyOnce(name, guarded, () => handlers[name](app, parsed.value as never))
      : await handlers[name](app, parsed.value as never)
    if (typeof result.TaskId === 'string')
      about.set(request, { action: name, sdkAppId: app.sdkAppId, taskId: result.TaskId })
    return result
  }

  /** The request's log line and metrics, once its answer is decided. */
  const done = (request: FastifyRequest, code: string, started: number) => {
    const a = about.get(request)
    const seconds = (performance.now() - started) / 1000
    const fields = {
      action: a?.action ?? '',
      sdkAppId: a?.sdkAppId,
      taskId: a?.taskId,
      code,
      ms: Math.round(seconds * 1000),
    }
    if (code === 'InternalError') request.log.error(fields, 'request failed')
    else request.log.info(fields, 'request')
    options.onRequest?.({ ...fields, seconds })
  }
  const route = async (request: FastifyRequest, reply: FastifyReply) => {
    tiwReply(request, reply)
    const started = performance.now()
    let code = 'InternalError'
    try {
      const answer = envelope(request, await handle(request))
      code = ''
      return answer
    } catch (error) {
      if (error instanceof ApiError) {
        code = error.code
        return fail(request, error)
      }
      throw error
    } finally {
      done(request, code, started)
    }
  }
  for (const register of options.routes ?? []) register(api)
  api.post('/*', route)
  api.get('/*', route)
  api.setNotFoundHandler((request, reply) =>
    tiwReply(request, reply)
      .code(200)
      .send(
        fail(
          request,
          new ApiError(
            'UnsupportedProtocol',
            `${request.method} is not supported; use POST or GET.`,
          ),
        ),
      ),
  )
  return api
}

/** The error a request refused by the HTTP parser gets. */
function clientError(code: string | undefined, requestTimeoutMs: number): ApiError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
    case 'HPE_URI_TOO_LONG':
      return new ApiError(
        'RequestSizeLimitExceeded',
        `The request line and headers exceed ${MAX_HEADER_BYTES} bytes.`,
      )
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new ApiError(
        'InvalidRequest',
        `The request did not arrive whole within ${requestTimeoutMs} ms.`,
      )
    default:
      return new ApiError('InvalidRequest', 'The request is not valid HTTP.')
  }
}

/** An app whose requests are taken: a disabled app's are refused. */
function usable(app: App): App {
  if (app.disabledAtMs !== null) {
    throw new ApiError('ResourceUnavailable.NotRegistered', 'This app is disabled by the operator.')
  }
  return app
}

/** The response of an action that returns only its RequestId. */
const none = (_done: unknown): Record<string, unknown> => ({})

function checkAction(action: string, version: string): void {
  if (action === '') throw new ApiError('MissingParameter', 'The action (X-TC-Action) is missing.')
  if (!isActionName(action))
    throw new ApiError('InvalidAction', `The action ${action} does not exist.`)
  if (version !== API_VERSION) {
    throw new ApiError(
      'NoSuchVersion',
      `Version "${version}" does not exist; this API is ${API_VERSION}.`,
    )
  }
}

function callbackItem(e: CallbackEventRow, holds?: (eventId: string) => boolean) {
  return {
    EventId: e.eventId,
    TaskId: e.taskId,
    Seq: e.seq,
    EventType: e.eventType,
    Timestamp: e.timestampS,
    CreatedTimeMs: e.createdAtMs,
    State: e.state.toUpperCase(),
    Attempts: e.attempts,
    NextAttemptTimeMs: e.state === 'pending' ? e.nextAttemptMs : 0,
    InFlight: e.inFlight || (e.state === 'pending' && holds?.(e.eventId) === true),
    LastAttemptTimeMs: e.lastAttemptMs ?? 0,
    LastStatus: e.lastStatus,
    LastError: e.lastError,
    DeliveredTimeMs: e.deliveredAtMs ?? 0,
  }
}

/** "YYYY-MM-DD hh:mm:ss" in UTC, as RunningTaskItem.CreateTime. */
function formatTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ')
}
