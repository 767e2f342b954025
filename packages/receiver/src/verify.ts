import {
  type CallbackEvent,
  EVENT_TYPES,
  getHeader,
  type HeadersLike,
  parseCallback,
  VerificationError,
  verifyCallbackSign,
  verifyWebhook,
} from '@online-record/protocol'
import { ReceiverError } from './receiver-error.ts'

export interface VerifyOptions {
  /** The app's CallbackKey(s), to check the TIW `Sign` field. Several during a rotation. */
  callbackKeys?: string | readonly string[]
  /**
   * The app's Standard Webhooks secret(s) (`whsec_…`). When given and the request
   * carries `webhook-signature`, that signature, which covers the body, is checked.
   */
  webhookSecrets?: string | readonly string[]
  /** Refuse callbacks that lack the body-bound `webhook-signature`. Default false. */
  requireBodySignature?: boolean
  /** Seconds of clock skew tolerated. Default 300. */
  toleranceSeconds?: number
  /** Current time in Unix milliseconds; defaults to `Date.now`. */
  now?: () => number
}

export interface VerifiedCallback {
  event: CallbackEvent
  /** The stable event id (`webhook-id`); undefined for callbacks that do not carry one. */
  id: string | undefined
  /** Which signature authenticated the callback. */
  verifiedBy: 'webhook-signature' | 'sign'
}

const decoder = new TextDecoder('utf-8', { fatal: true })

function rawText(rawBody: unknown): string {
  if (typeof rawBody === 'string') return rawBody
  if (rawBody instanceof Uint8Array) {
    try {
      return decoder.decode(rawBody)
    } catch {
      throw new ReceiverError('INVALID_PAYLOAD', 'The body is not valid UTF-8.')
    }
  }
  throw new ReceiverError(
    'RAW_BODY_REQUIRED',
    `verify() needs the raw request body as a string or bytes, got ${rawBody === null ? 'null' : typeof rawBody}. ` +
      'A body parsed by a JSON middleware cannot be verified: re-serialising it changes the bytes. ' +
      'Use express.raw({ type: "application/json" }) or read the body yourself.',
  )
}

function rethrow(error: unknown): never {
  if (error instanceof VerificationError) throw new ReceiverError(error.code, error.message)
  throw error
}

/**
 * Verifies one callback request and returns its typed event.
 * Throws a {@link ReceiverError} whose `code` says what is wrong.
 */
export function verify(
  rawBody: string | Uint8Array,
  headers: HeadersLike,
  options: VerifyOptions,
): VerifiedCallback {
  const hasKeys = options.callbackKeys !== undefined && options.callbackKeys.length > 0
  const hasSecrets = options.webhookSecrets !== undefined && options.webhookSecrets.length > 0
  if (!hasKeys && !hasSecrets) {
    throw new TypeError('verify: set callbackKeys, webhookSecrets or both')
  }
  const text = rawText(rawBody)
  const tolerance = options.toleranceSeconds ?? 300
  let id: string | undefined
  let verifiedBy: VerifiedCallback['verifiedBy'] | undefined
  if (hasSecrets && getHeader(headers, 'webhook-signature') !== undefined) {
    try {
      id = verifyWebhook(rawBody, headers, {
        secrets: options.webhookSecrets as string | readonly string[],
        toleranceSeconds: tolerance,
        ...(options.now ? { now: options.now } : {}),
      }).id
    } catch (error) {
      rethrow(error)
    }
    verifiedBy = 'webhook-signature'
  } else if (options.requireBodySignature || !hasKeys) {
    throw new ReceiverError(
      'MISSING_SIGNATURE',
      'The request has no webhook-signature header, and a body-bound signature is required.',
    )
  }

  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new ReceiverError('INVALID_PAYLOAD', 'The body is not JSON.')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ReceiverError('INVALID_PAYLOAD', 'The body is not a JSON object.')
  }

  if (verifiedBy === undefined) {
    try {
      verifyCallbackSign(body as { Sign?: unknown; ExpireTime?: unknown }, {
        keys: options.callbackKeys as string | readonly string[],
        toleranceSeconds: tolerance,
        ...(options.now ? { now: options.now } : {}),
      })
    } catch (error) {
      rethrow(error)
    }
    verifiedBy = 'sign'
  }

  const eventType = (body as { EventType?: unknown }).EventType
  if (typeof eventType === 'string' && !(EVENT_TYPES as readonly string[]).includes(eventType)) {
    throw new ReceiverError(
      'UNKNOWN_EVENT',
      `EventType "${eventType}" is not an OnlineRecord event.`,
    )
  }
  const parsed = parseCallback(body, 'lenient')
  if (!parsed.ok) throw new ReceiverError('INVALID_PAYLOAD', `Invalid callback: ${parsed.message}`)
  return { event: parsed.value, id, verifiedBy }
}
