// TencentCloud API 3.0 request signing, TC3-HMAC-SHA256 (spec §6.2), and the
// legacy v1 HmacSHA1/HmacSHA256 form. Verification follows what the official
// SDKs really send (spec/tencentcloud-node-sdk.md): the service is read from the
// credential scope, and the signed host may or may not carry the port.
import {
  type HmacKey,
  hmacKey,
  hmacSha1Base64,
  hmacSha256,
  hmacSha256Base64,
  hmacSha256Hex,
  sha256Hex,
} from '#crypto'
import { timingSafeEqual } from './constant-time.ts'
import { ApiError } from './errors.ts'
import { getHeader, type HeadersLike } from './headers.ts'

export const TC3_ALGORITHM = 'TC3-HMAC-SHA256'
const DEFAULT_MAX_SKEW_SECONDS = 300

/** UTC `YYYY-MM-DD` of a Unix-seconds timestamp. */
export function tc3Date(timestampSeconds: number): string {
  // Formatting a Date costs more than a signature check's string work; requests
  // of one day share the answer.
  const day = Math.floor(timestampSeconds / 86_400)
  if (day !== lastDay) {
    lastDate = new Date(day * 86_400_000).toISOString().slice(0, 10)
    lastDay = day
  }
  return lastDate
}
let lastDay = Number.NaN
let lastDate = ''

function signingKey(secretKey: string, date: string, service: string): HmacKey {
  const kDate = hmacSha256(`TC3${secretKey}`, date)
  const kService = hmacSha256(hmacKey(kDate), service)
  return hmacKey(hmacSha256(hmacKey(kService), 'tc3_request'))
}

function canonicalRequest(
  method: string,
  path: string,
  rawQuery: string,
  canonicalHeaders: string,
  signedHeaders: string,
  payloadHash: string,
): string {
  return `${method}\n${path}\n${rawQuery}\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`
}

function stringToSign(timestamp: string, scope: string, canonical: string): string {
  return `${TC3_ALGORITHM}\n${timestamp}\n${scope}\n${sha256Hex(canonical)}`
}

export interface Tc3SignInput {
  secretId: string
  secretKey: string
  /** Service in the credential scope; `tiw` for the real endpoint. */
  service: string
  /** Host as signed (the Node SDK signs it without port). */
  host: string
  /** Unix seconds, sent as X-TC-Timestamp. */
  timestamp: number
  payload: string | Uint8Array
  method?: 'POST' | 'GET'
  /** Raw query string for GET, exactly as sent. */
  query?: string
  /** Default `application/json` for POST, `application/x-www-form-urlencoded` for GET. */
  contentType?: string
}

export interface Tc3Signature {
  authorization: string
  signature: string
  contentType: string
}

export function signTc3(input: Tc3SignInput): Tc3Signature {
  const method = input.method ?? 'POST'
  const contentType =
    input.contentType ??
    (method === 'GET' ? 'application/x-www-form-urlencoded' : 'application/json')
  const date = tc3Date(input.timestamp)
  const scope = `${date}/${input.service}/tc3_request`
  const canonical = canonicalRequest(
    method,
    '/',
    input.query ?? '',
    `content-type:${contentType}\nhost:${input.host}\n`,
    'content-type;host',
    sha256Hex(input.payload),
  )
  const signature = hmacSha256Hex(
    signingKey(input.secretKey, date, input.service),
    stringToSign(String(input.timestamp), scope, canonical),
  )
  return {
    signature,
    contentType,
    authorization: `${TC3_ALGORITHM} Credential=${input.secretId}/${scope}, SignedHeaders=content-type;host, Signature=${signature}`,
  }
}

export interface Tc3Authorization {
  secretId: string
  date: string
  service: string
  signedHeaders: readonly string[]
  signature: string
}

const invalidAuthorization = (why: string): ApiError =>
  new ApiError('AuthFailure.InvalidAuthorization', `Authorization header is malformed: ${why}.`)

// The exact shape every official SDK sends; anything else takes the slow path,
// which accepts other spacing and orders and explains what is wrong.
const CANONICAL_AUTHORIZATION =
  /^TC3-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{4}-\d{2}-\d{2})\/([^/,\s]+)\/tc3_request, SignedHeaders=content-type;host, Signature=([0-9a-f]{64})$/
const SDK_SIGNED_HEADERS: readonly string[] = Object.freeze(['content-type', 'host'])

/** Parses a TC3 Authorization header; throws `AuthFailure.InvalidAuthorization`. */
export function parseTc3Authorization(header: string): Tc3Authorization {
  const m = CANONICAL_AUTHORIZATION.exec(header)
  if (m !== null) {
    return {
      secretId: m[1] as string,
      date: m[2] as string,
      service: m[3] as string,
      signedHeaders: SDK_SIGNED_HEADERS,
      signature: m[4] as string,
    }
  }
  const space = header.indexOf(' ')
  if (space < 0 || header.slice(0, space) !== TC3_ALGORITHM) {
    throw invalidAuthorization(`it must start with "${TC3_ALGORITHM} "`)
  }
  const fields = new Map<string, string>()
  for (const part of header.slice(space + 1).split(',')) {
    const eq = part.indexOf('=')
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
  const credential = fields.get('Credential')
  const signedHeaders = fields.get('SignedHeaders')
  const signature = fields.get('Signature')
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw invalidAuthorization('Credential, SignedHeaders and Signature are required')
  }
  const parts = credential.split('/')
  const secretId = parts[0] ?? ''
  const date = parts[1] ?? ''
  const service = parts.slice(2, -1).join('/')
  if (parts.length < 4 || parts.at(-1) !== 'tc3_request' || secretId === '' || service === '') {
    throw invalidAuthorization('Credential must be SecretId/Date/Service/tc3_request')
  }
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date))
    throw invalidAuthorization('the credential date is not YYYY-MM-DD')
  if (!/^[0-9a-f]{64}$/.test(signature))
    throw invalidAuthorization('Signature must be 64 lowercase hex digits')
  const names = signedHeaders.split(';')
  if (!names.includes('content-type') || !names.includes('host')) {
    throw invalidAuthorization('SignedHeaders must include content-type and host')
  }
  if (names.some((n) => n === '' || n !== n.toLowerCase())) {
    throw invalidAuthorization('SignedHeaders must be lowercase names separated by ";"')
  }
  return { secretId, date, service, signedHeaders: names, signature }
}

export interface Tc3Request {
  method: string
  /** Path of the request; the API always uses `/`. */
  path?: string
  /** Query string exactly as received, without `?`. */
  rawQuery: string
  headers: HeadersLike
  /** Body bytes exactly as received. */
  body: string | Uint8Array
}

export interface VerifyTc3Options {
  /** Current time in Unix milliseconds; defaults to `Date.now`. */
  now?: () => number
  /** Largest accepted |X-TC-Timestamp − now|, in seconds. Default 300. */
  maxSkewSeconds?: number
  /** Accepted services in the credential scope; any when left out. */
  services?: readonly string[]
}

/** Reads and checks X-TC-Timestamp against the clock; returns it. */
export function checkTc3Timestamp(headers: HeadersLike, options: VerifyTc3Options = {}): number {
  const text = getHeader(headers, 'x-tc-timestamp')
  if (text === undefined)
    throw new ApiError('MissingParameter', 'The X-TC-Timestamp header is missing.')
  if (!/^\d{1,12}$/.test(text)) {
    throw new ApiError(
      'InvalidParameter',
      'X-TC-Timestamp must be an integer number of Unix seconds.',
    )
  }
  const timestamp = Number(text)
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000)
  const maxSkew = options.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS
  if (Math.abs(nowSeconds - timestamp) > maxSkew) {
    throw new ApiError(
      'AuthFailure.SignatureExpire',
      `X-TC-Timestamp ${timestamp} differs from server time ${nowSeconds} by more than ${maxSkew} s.`,
    )
  }
  return timestamp
}

function withoutPort(host: string): string {
  // "[::1]:8080" -> "[::1]", "127.0.0.1:8080" -> "127.0.0.1"; a bare IPv6 address is left alone.
  const match = /^(\[[^\]]*\]|[^:]*):\d+$/.exec(host)
  return match ? (match[1] as string) : host
}

/**
 * Verifies a TC3-HMAC-SHA256 request with the secret key of `auth.secretId`.
 * Throws `AuthFailure.SignatureExpire` or `AuthFailure.SignatureFailure`.
 */
export function verifyTc3(
  request: Tc3Request,
  auth: Tc3Authorization,
  secretKey: string,
  options: VerifyTc3Options = {},
): void {
  const timestamp = checkTc3Timestamp(request.headers, options)
  const failure = (why: string): ApiError =>
    new ApiError('AuthFailure.SignatureFailure', `${ERROR_SIGNATURE} (${why})`)
  if (options.services !== undefined && !options.services.includes(auth.service)) {
    throw failure(`service "${auth.service}" is not accepted`)
  }
  if (auth.date !== tc3Date(timestamp)) {
    throw failure(`credential date ${auth.date} is not the UTC date of X-TC-Timestamp`)
  }
  // Canonical headers apart from host, which is tried in two forms below.
  const sentHost = getHeader(request.headers, 'host') ?? ''
  const hosts = [withoutPort(sentHost).toLowerCase()]
  if (sentHost.toLowerCase() !== hosts[0]) hosts.push(sentHost.trim().toLowerCase())
  const before: string[] = []
  const after: string[] = []
  let seenHost = false
  for (const name of auth.signedHeaders) {
    if (name === 'host') {
      seenHost = true
      continue
    }
    const value = (getHeader(request.headers, name) ?? '').trim().toLowerCase()
    ;(seenHost ? after : before).push(`${name}:${value}\n`)
  }
  const signedHeaders = auth.signedHeaders.join(';')
  const payloadHash = sha256Hex(request.body)
  const key = signingKey(secretKey, auth.date, auth.service)
  const scope = `${auth.date}/${auth.service}/tc3_request`
  const head = before.join('')
  const tail = after.join('')
  for (const host of hosts) {
    const canonical = canonicalRequest(
      request.method.toUpperCase(),
      request.path ?? '/',
      request.rawQuery,
      `${head}host:${host}\n${tail}`,
      signedHeaders,
      payloadHash,
    )
    const expected = hmacSha256Hex(key, stringToSign(String(timestamp), scope, canonical))
    if (timingSafeEqual(expected, auth.signature)) return
  }
  throw failure('signature mismatch')
}

const ERROR_SIGNATURE =
  'The provided credentials could not be validated. Please check your signature is correct.'

// ---- Legacy v1 (HmacSHA1 / HmacSHA256) -------------------------------------

export type V1SignatureMethod = 'HmacSHA1' | 'HmacSHA256'

/**
 * The v1 signature of decoded request parameters (without `Signature`): keys
 * sorted, `k=v` joined with `&`, prefixed by METHOD + host (with port) + path + `?`.
 */
export function signV1(
  params: Readonly<Record<string, string>>,
  secretKey: string,
  method: string,
  host: string,
  path = '/',
): string {
  const joined = Object.keys(params)
    .filter((k) => k !== 'Signature')
    .sort()
    .map((k) => `${k}=${params[k]}`)
    .join('&')
  const source = `${method.toUpperCase()}${host}${path}?${joined}`
  return params.SignatureMethod === 'HmacSHA256'
    ? hmacSha256Base64(secretKey, source)
    : hmacSha1Base64(secretKey, source)
}

/** Verifies a v1-signed request's decoded parameters; throws an ApiError. */
export function verifyV1(
  params: Readonly<Record<string, string>>,
  secretKey: string,
  request: { method: string; host: string; path?: string },
  options: Omit<VerifyTc3Options, 'services'> = {},
): void {
  const signature = params.Signature
  const method = params.SignatureMethod
  if (signature === undefined)
    throw new ApiError('MissingParameter', 'The Signature parameter is missing.')
  if (method !== undefined && method !== 'HmacSHA1' && method !== 'HmacSHA256') {
    throw new ApiError('InvalidParameterValue', 'SignatureMethod must be HmacSHA1 or HmacSHA256.')
  }
  checkTc3Timestamp({ 'x-tc-timestamp': params.Timestamp }, options)
  const expected = signV1(params, secretKey, request.method, request.host, request.path ?? '/')
  if (!timingSafeEqual(expected, signature)) {
    throw new ApiError('AuthFailure.SignatureFailure', ERROR_SIGNATURE)
  }
}
