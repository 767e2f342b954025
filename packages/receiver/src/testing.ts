// Helpers for an app's own tests: signed requests carrying sample events.
import {
  type CallbackEvent,
  type CallbackOf,
  type EventType,
  sampleEvents,
  sampleFailedFinished,
  signCallback,
  webhookHeaders,
} from '@online-record/protocol'

export { sampleEvents, sampleFailedFinished }

export interface SignPayloadOptions {
  /** The CallbackKey; sets `Sign` and `ExpireTime`. Left out: both are removed, as the server does. */
  callbackKey?: string
  /** Standard Webhooks secret(s); adds the `webhook-*` headers. */
  webhookSecret?: string | readonly string[]
  /** `webhook-id`; a random `evt_…` when left out. */
  id?: string
  /** Current time in Unix milliseconds; defaults to `Date.now`. */
  now?: () => number
  /** Seconds from now to ExpireTime. Default 600, as the server. */
  validitySeconds?: number
}

export interface SignedRequest {
  body: string
  headers: Record<string, string>
}

/** Serialises and signs a callback body the way online-record sends it. */
export function signPayload(
  payload: CallbackEvent,
  options: SignPayloadOptions = {},
): SignedRequest {
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000)
  const { Sign: _sign, ExpireTime: _expire, ...rest } = payload
  let message: Record<string, unknown> = rest
  if (options.callbackKey !== undefined) {
    const expireTime = nowSeconds + (options.validitySeconds ?? 600)
    message = {
      ...rest,
      ExpireTime: expireTime,
      Sign: signCallback(options.callbackKey, expireTime),
    }
  }
  const body = JSON.stringify(message)
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (options.webhookSecret !== undefined) {
    const id = options.id ?? `evt_${globalThis.crypto.randomUUID().replaceAll('-', '')}`
    Object.assign(headers, webhookHeaders(options.webhookSecret, id, nowSeconds, body))
  }
  return { body, headers }
}

/** A copy of the sample event of `type`, with `patch` applied to its EventData. */
export function sampleEvent<T extends EventType>(
  type: T,
  patch: Partial<CallbackOf<T>['EventData']> = {},
): CallbackOf<T> {
  const sample = structuredClone(sampleEvents[type]) as CallbackOf<T>
  Object.assign(sample.EventData, patch)
  return sample
}
