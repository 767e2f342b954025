// Hash primitives on Node's built-in crypto (OpenSSL). The portable twin in
// ./portable.ts has the same exports; package.json `imports` picks one per runtime.
import { createHash, createHmac, createSecretKey, type KeyObject } from 'node:crypto'

export type Bytes = Uint8Array
export type Data = string | Uint8Array
/** A key ready for repeated HMACs; opaque outside this module. */
export type HmacKey = string | KeyObject

/**
 * Node 24 checks a Buffer HMAC key against KeyObject and CryptoKey in a way
 * that costs ~8 µs per call; a KeyObject skips that (measured 11.2 → 4.0 µs,
 * 2.6 µs when the KeyObject is reused).
 */
export function hmacKey(key: Data): HmacKey {
  if (typeof key === 'string') return key
  return key.length === 0 ? '' : createSecretKey(key)
}

export function md5Hex(data: Data): string {
  return createHash('md5').update(data).digest('hex')
}

export function sha256Hex(data: Data): string {
  return createHash('sha256').update(data).digest('hex')
}

export function hmacSha256(key: Data | HmacKey, data: Data): Bytes {
  return createHmac('sha256', asKey(key)).update(data).digest()
}

export function hmacSha256Hex(key: Data | HmacKey, data: Data): string {
  return createHmac('sha256', asKey(key)).update(data).digest('hex')
}

/** HMAC-SHA256 of `head` followed by `tail`, base64-encoded (two parts, no rest array: it is on the hot path). */
export function hmacSha256Base64(key: Data | HmacKey, head: Data, tail: Data = ''): string {
  return createHmac('sha256', typeof key === 'string' ? key : asKey(key))
    .update(head)
    .update(tail)
    .digest('base64')
}

export function hmacSha1Base64(key: Data, data: Data): string {
  return createHmac('sha1', key).update(data).digest('base64')
}

export function base64ToBytes(text: string): Bytes {
  return Buffer.from(text, 'base64')
}

export function bytesToBase64(bytes: Bytes): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

function asKey(key: Data | HmacKey): HmacKey {
  return key instanceof Uint8Array ? hmacKey(key) : key
}
