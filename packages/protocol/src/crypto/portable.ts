// Hash primitives in pure JavaScript (@noble/hashes), for runtimes without
// node:crypto (edge functions, browsers). Synchronous, unlike Web Crypto, and
// Web Crypto has no MD5, which the TIW callback Sign needs.
import { hmac } from '@noble/hashes/hmac'
import { md5, sha1 } from '@noble/hashes/legacy'
import { sha256 } from '@noble/hashes/sha2'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils'

export type Bytes = Uint8Array
export type Data = string | Uint8Array

/** A key ready for repeated HMACs; opaque outside this module. */
export type HmacKey = Uint8Array

export function hmacKey(key: Data): HmacKey {
  return toBytes(key)
}

const toBytes = (data: Data): Bytes => (typeof data === 'string' ? utf8ToBytes(data) : data)

export function md5Hex(data: Data): string {
  return bytesToHex(md5(toBytes(data)))
}

export function sha256Hex(data: Data): string {
  return bytesToHex(sha256(toBytes(data)))
}

export function hmacSha256(key: Data, data: Data): Bytes {
  return hmac(sha256, toBytes(key), toBytes(data))
}

export function hmacSha256Hex(key: Data, data: Data): string {
  return bytesToHex(hmacSha256(key, data))
}

/** HMAC-SHA256 of `head` followed by `tail`, base64-encoded. */
export function hmacSha256Base64(key: Data, head: Data, tail: Data = ''): string {
  const mac = hmac.create(sha256, toBytes(key))
  mac.update(toBytes(head))
  mac.update(toBytes(tail))
  return bytesToBase64(mac.digest())
}

export function hmacSha1Base64(key: Data, data: Data): string {
  return bytesToBase64(hmac(sha1, toBytes(key), toBytes(data)))
}

export function base64ToBytes(text: string): Bytes {
  const binary = atob(text)
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}

export function bytesToBase64(bytes: Bytes): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i] as number)
  return btoa(binary)
}
