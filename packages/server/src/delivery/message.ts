// One attempt's HTTP request for an outbox event: the TIW body, signed for
// this attempt, and the Standard Webhooks headers.
import {
  ATTEMPT_HEADER,
  SEQUENCE_HEADER,
  signCallback,
  webhookHeaders,
} from '@online-record/protocol'

export interface OutboxEvent {
  eventId: string
  taskId: string
  seq: number
  sdkAppId: number
  eventType: string
  /** Unix seconds of the event: the body's `Timestamp`, the same on every attempt. */
  timestampS: number
  /** EventData as the JSON text the engine wrote. */
  data: string
  /** This attempt's number, 1-based. */
  attempt: number
}

export interface SigningKeys {
  /** TIW CallbackKey; empty: no `Sign` and no `ExpireTime`. */
  callbackKey: string
  webhookSecret: string
  /** Also signed with, during a rotation. */
  previousWebhookSecret?: string | null
}

export interface CallbackRequest {
  body: string
  headers: Record<string, string>
}

/**
 * The body keeps the seed's field order (alphabetical, as in its examples).
 * `ExpireTime` is this attempt's time plus the validity, so a retry hours
 * later still verifies; `Timestamp` stays the event's time.
 */
export function buildCallbackRequest(
  event: OutboxEvent,
  keys: SigningKeys,
  options: { nowMs: number; signValiditySeconds: number; userAgent: string },
): CallbackRequest {
  const nowS = Math.floor(options.nowMs / 1000)
  let signature = ''
  if (keys.callbackKey !== '') {
    const expireTime = nowS + options.signValiditySeconds
    signature = `,"ExpireTime":${expireTime}`
    // SdkAppId sits between ExpireTime and Sign in the seed's order.
    signature += `,"SdkAppId":${event.sdkAppId},"Sign":"${signCallback(keys.callbackKey, expireTime)}"`
  } else {
    signature = `,"SdkAppId":${event.sdkAppId}`
  }
  const body = `{"EventData":${event.data},"EventType":${JSON.stringify(event.eventType)}${signature},"Timestamp":${event.timestampS}}`
  const secrets = keys.previousWebhookSecret
    ? [keys.webhookSecret, keys.previousWebhookSecret]
    : keys.webhookSecret
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': options.userAgent,
      ...webhookHeaders(secrets, event.eventId, nowS, body),
      [SEQUENCE_HEADER]: String(event.seq),
      [ATTEMPT_HEADER]: String(event.attempt),
    },
  }
}
