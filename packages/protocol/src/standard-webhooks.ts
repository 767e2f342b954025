// Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. Unlike the
// TIW Sign, this covers the body and carries a stable event id.
import { base64ToBytes, bytesToBase64, type HmacKey, hmacKey, hmacSha256Base64 } from '#crypto'
import { timingSafeEqualAt } from './constant-time.ts'
import { getHeader, type HeadersLike } from './headers.ts'
import { VerificationError } from './verification-error.ts'

const SECRET_PREFIX = 'whsec_'
const DEFAULT_TOLERANCE_SECONDS = 300

export type WebhookHeaders = {
  'webhook-id': string
  'webhook-timestamp': string
  'webhook-signature': string
}

/** A new random secret in the `whsec_<base64>` form (24 random bytes). */
export function generateWebhookSecret(): string {
  const bytes = new Uint8Array(24)
  globalThis.crypto.getRandomValues(bytes)
  return SECRET_PREFIX + bytesToBase64(bytes)
}

// Decoded secrets, so that verifying many deliveries does not decode the same
// secret each time. Bounded: a process holds a handful of secrets at most.
const decoded = new Map<string, HmacKey>()

let lastSecret = ''
let lastKey: HmacKey | undefined

function secretKey(secret: string): HmacKey {
  // Most processes verify with one secret: skip even the map lookup for it.
  if (secret === lastSecret && lastKey !== undefined) return lastKey
  const key = decodeSecret(secret)
  lastSecret = secret
  lastKey = key
  return key
}

function decodeSecret(secret: string): HmacKey {
  const cached = decoded.get(secret)
  if (cached !== undefined) return cached
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret
  if (encoded.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) {
    throw new TypeError('A webhook secret must be "whsec_" followed by base64')
  }
  const key = hmacKey(base64ToBytes(encoded))
  if (decoded.size >= 256) decoded.clear()
  decoded.set(secret, key)
  return key
}

/** The `v1,<base64>` signature of one message under one secret. */
export function signWebhook(
  secret: string,
  id: string,
  timestampSeconds: number,
  body: string | Uint8Array,
): string {
  return `v1,${hmacSha256Base64(secretKey(secret), `${id}.${timestampSeconds}.`, body)}`
}

/**
 * The three headers for one delivery. With several secrets (during a rotation)
 * `webhook-signature` carries one signature per secret, space-separated.
 */
export function webhookHeaders(
  secrets: string | readonly string[],
  id: string,
  timestampSeconds: number,
  body: string | Uint8Array,
): WebhookHeaders {
  const list = typeof secrets === 'string' ? [secrets] : secrets
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': list.map((s) => signWebhook(s, id, timestampSeconds, body)).join(' '),
  }
}

export interface VerifyWebhookOptions {
  /** Accepted secrets; any one matching signature is enough (rotation). */
  secrets: string | readonly string[]
  /** Current time in Unix milliseconds; defaults to `Date.now`. */
  now?: () => number
  /** Largest accepted distance between webhook-timestamp and now, in seconds. Default 300. */
  toleranceSeconds?: number
}

export interface VerifiedWebhook {
  id: string
  timestamp: number
}

/**
 * Verifies the Standard Webhooks headers against the raw body exactly as received.
 * Throws a {@link VerificationError}.
 */
export function verifyWebhook(
  body: string | Uint8Array,
  headers: HeadersLike,
  options: VerifyWebhookOptions,
): VerifiedWebhook {
  // Node's headers (and most plain objects) have these keys in lowercase: read
  // with literal keys first, which the engine looks up several times faster.
  const record = headers as Readonly<Record<string, unknown>>
  const rawId = record['webhook-id']
  const rawTimestamp = record['webhook-timestamp']
  const rawSignature = record['webhook-signature']
  const id = typeof rawId === 'string' ? rawId : getHeader(headers, 'webhook-id')
  const timestampText =
    typeof rawTimestamp === 'string' ? rawTimestamp : getHeader(headers, 'webhook-timestamp')
  const signatureHeader =
    typeof rawSignature === 'string' ? rawSignature : getHeader(headers, 'webhook-signature')
  if (id === undefined || timestampText === undefined || signatureHeader === undefined) {
    throw new VerificationError(
      'MISSING_SIGNATURE',
      'Missing webhook-id, webhook-timestamp or webhook-signature header.',
    )
  }
  if (!isDigits(timestampText)) {
    throw new VerificationError(
      'MALFORMED_SIGNATURE',
      'webhook-timestamp must be an integer number of Unix seconds.',
    )
  }
  const timestamp = Number(timestampText)
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000)
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS
  if (nowSeconds - timestamp > tolerance) {
    throw new VerificationError(
      'EXPIRED',
      `webhook-timestamp is ${nowSeconds - timestamp} s old, more than the ${tolerance} s tolerance.`,
    )
  }
  if (timestamp - nowSeconds > tolerance) {
    throw new VerificationError(
      'TIMESTAMP_IN_FUTURE',
      `webhook-timestamp is ${timestamp - nowSeconds} s in the future, more than the ${tolerance} s tolerance.`,
    )
  }
  // Usually one signature; during a rotation several, space-separated.
  const several = signatureHeader.includes(' ')
  const offered = several ? signatureHeader.split(' ').filter((p) => p.startsWith('v1,')) : []
  if (several ? offered.length === 0 : !signatureHeader.startsWith('v1,')) {
    throw new VerificationError('MALFORMED_SIGNATURE', 'webhook-signature has no v1 signature.')
  }
  const prefix = `${id}.${timestampText}.`
  const secrets = typeof options.secrets === 'string' ? undefined : options.secrets
  if (secrets?.length === 0) throw new TypeError('verifyWebhook: at least one secret is required')
  let ok = false
  for (let s = 0; s < (secrets?.length ?? 1); s++) {
    const secret = secrets === undefined ? (options.secrets as string) : (secrets[s] as string)
    const expected = hmacSha256Base64(secretKey(secret), prefix, body)
    if (!several) ok = timingSafeEqualAt(expected, signatureHeader, 3) || ok
    // Every candidate is compared, so timing does not tell which one matched.
    else for (const candidate of offered) if (timingSafeEqualAt(expected, candidate, 3)) ok = true
  }
  if (!ok) {
    throw new VerificationError(
      'BAD_SIGNATURE',
      'No webhook-signature matches the body under any configured secret. Pass the raw body exactly as received.',
    )
  }
  return { id, timestamp }
}

/** 1 to 15 ASCII digits (a regular expression costs more on this hot path). */
function isDigits(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 48 || c > 57) return false
  }
  return true
}
