import {
  ATTEMPT_HEADER,
  type CallbackEvent,
  type CallbackOf,
  type EventType,
  getCountHeader,
  type HeadersLike,
  SEQUENCE_HEADER,
} from '@online-record/protocol'
import { type DedupeStore, dedupeKey } from './dedupe.ts'
import { ReceiverError } from './receiver-error.ts'
import { type VerifiedCallback, type VerifyOptions, verify } from './verify.ts'

export interface HandlerContext {
  /** The stable event id (`webhook-id`), when the sender gives one. */
  id: string | undefined
  verifiedBy: VerifiedCallback['verifiedBy']
  /**
   * The event's position in its task (1, 2, …) from `online-record-sequence`.
   * online-record delivers a task's events in this order; a gap means an
   * earlier event was given up. Not covered by a signature: a hint, not proof.
   */
  sequence: number | undefined
  /** The delivery attempt from `online-record-attempt`; above 1 it is a retry. Not signed either. */
  attempt: number | undefined
}

export type Handler<T extends EventType> = (
  event: CallbackOf<T>,
  context: HandlerContext,
) => void | Promise<void>
export type AnyHandler = (event: CallbackEvent, context: HandlerContext) => void | Promise<void>
export type ErrorHandler = (error: Error) => void | Promise<void>

export interface ReceiverOptions extends VerifyOptions {
  /** Skips callbacks already handled (see DedupeStore). */
  dedupe?: DedupeStore
  /** How long a handled callback is remembered, in seconds. Default 3 days, past the sender's retries. */
  dedupeTtlSeconds?: number
}

/** What an adapter writes back: TIW expects HTTP 200 with `{"error_code":0}`. */
export interface ReceiveResult {
  status: number
  body: string
  event?: CallbackEvent
  duplicate?: boolean
  error?: Error
}

const OK_BODY = '{"error_code":0}'

function errorBody(status: number, code: string, message: string): string {
  return JSON.stringify({ error_code: status, error: code, message })
}

/**
 * Verifies callbacks and dispatches them to typed handlers. Handlers of one
 * event run concurrently; their errors are gathered into an AggregateError and
 * answered with the first error's `status` (default 500), so the sender retries.
 */
export class Receiver {
  readonly #options: ReceiverOptions
  readonly #handlers = new Map<EventType, AnyHandler[]>()
  readonly #any: AnyHandler[] = []
  readonly #errorHandlers: ErrorHandler[] = []

  /**
   * @throws TypeError when neither `callbackKeys` nor `webhookSecrets` is
   * given: such a receiver could verify nothing and would answer every
   * callback 401, so the mistake is reported at start rather than per request.
   */
  constructor(options: ReceiverOptions) {
    const given = (v: string | readonly string[] | undefined): boolean =>
      typeof v === 'string' ? v !== '' : (v ?? []).some((k) => k !== '')
    if (!given(options.callbackKeys) && !given(options.webhookSecrets))
      throw new TypeError(
        "createReceiver needs callbackKeys (the CallbackKey set with SetOnlineRecordCallbackKey), webhookSecrets (the app's whsec_… secret) or both",
      )
    this.#options = options
  }

  on<T extends EventType>(type: T | readonly T[], handler: Handler<T>): this {
    for (const t of typeof type === 'string' ? [type] : type) {
      const list = this.#handlers.get(t) ?? []
      list.push(handler as AnyHandler)
      this.#handlers.set(t, list)
    }
    return this
  }

  onAny(handler: AnyHandler): this {
    this.#any.push(handler)
    return this
  }

  onError(handler: ErrorHandler): this {
    this.#errorHandlers.push(handler)
    return this
  }

  removeListener<T extends EventType>(type: T, handler: Handler<T>): this {
    const list = this.#handlers.get(type)
    const at = list?.indexOf(handler as AnyHandler) ?? -1
    if (at >= 0) list?.splice(at, 1)
    return this
  }

  /** Verifies and dispatches one request; never throws. */
  async receive(rawBody: string | Uint8Array, headers: HeadersLike): Promise<ReceiveResult> {
    let verified: VerifiedCallback
    try {
      verified = verify(rawBody, headers, this.#options)
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error))
      await this.#reportError(e)
      if (e instanceof ReceiverError) {
        return { status: e.status, body: errorBody(e.status, e.code, e.message), error: e }
      }
      return { status: 500, body: errorBody(500, 'INTERNAL', e.message), error: e }
    }
    const { event, id, verifiedBy } = verified
    const store = this.#options.dedupe
    const key = store ? dedupeKey(event, id) : ''
    if (store && !(await store.claim(key, this.#options.dedupeTtlSeconds ?? 259_200))) {
      return { status: 200, body: OK_BODY, event, duplicate: true }
    }
    const context: HandlerContext = {
      id,
      verifiedBy,
      sequence: getCountHeader(headers, SEQUENCE_HEADER),
      attempt: getCountHeader(headers, ATTEMPT_HEADER),
    }
    const handlers = [...(this.#handlers.get(event.EventType) ?? []), ...this.#any]
    const results = await Promise.allSettled(handlers.map(async (h) => h(event, context)))
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
    if (errors.length === 0) return { status: 200, body: OK_BODY, event }

    if (store) await store.release(key)
    const aggregate = new AggregateError(
      errors,
      `${errors.length} handler(s) failed for ${event.EventType}: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`,
    )
    await this.#reportError(aggregate)
    const first = errors[0] as { status?: unknown }
    const status = typeof first?.status === 'number' && first.status >= 400 ? first.status : 500
    return {
      status,
      body: errorBody(status, 'HANDLER_FAILED', aggregate.message),
      event,
      error: aggregate,
    }
  }

  async #reportError(error: Error): Promise<void> {
    // An onError handler's own failure must not hide the callback's outcome.
    await Promise.allSettled(this.#errorHandlers.map(async (h) => h(error)))
  }
}

export function createReceiver(options: ReceiverOptions): Receiver {
  return new Receiver(options)
}
