// UserSig, the TLS-sig-api-v2 algorithm TRTC and IM use: a zlib-deflated JSON
// document carrying an HMAC-SHA256 of the identity and validity under the
// app's key, base64 with `+/=` replaced by `*-_`.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { deflateSync, inflateSync } from 'node:zlib'

function mac(
  key: string,
  sdkAppId: number,
  userId: string,
  time: number,
  expire: number,
  userBuf?: string,
): string {
  let content = `TLS.identifier:${userId}\nTLS.sdkappid:${sdkAppId}\nTLS.time:${time}\nTLS.expire:${expire}\n`
  if (userBuf !== undefined) content += `TLS.userbuf:${userBuf}\n`
  return createHmac('sha256', key).update(content).digest('base64')
}

/** A UserSig for `userId`, valid `expireSeconds` from `nowMs`. */
export function genUserSig(
  sdkAppId: number,
  key: string,
  userId: string,
  expireSeconds: number,
  nowMs: number = Date.now(),
): string {
  const time = Math.floor(nowMs / 1000)
  const doc = {
    'TLS.ver': '2.0',
    'TLS.identifier': userId,
    'TLS.sdkappid': sdkAppId,
    'TLS.time': time,
    'TLS.expire': expireSeconds,
    'TLS.sig': mac(key, sdkAppId, userId, time, expireSeconds),
  }
  return deflateSync(Buffer.from(JSON.stringify(doc)))
    .toString('base64')
    .replace(/\+/g, '*')
    .replace(/\//g, '-')
    .replace(/=/g, '_')
}

/**
 * A real UserSig is a few hundred characters (with a userbuf, rarely over a
 * thousand). Longer ones are refused before any work, and what they inflate
 * to is capped: a deflate bomb must cost nothing.
 */
export const MAX_USERSIG_CHARS = 4096
export const MAX_USERSIG_INFLATED_BYTES = 16 * 1024

export type UserSigCheck =
  | { ok: true; expiresAtMs: number }
  | {
      ok: false
      code: 'MALFORMED' | 'WRONG_USER' | 'WRONG_APP' | 'BAD_SIGNATURE' | 'EXPIRED'
      message: string
    }

/** Checks a UserSig for `userId` of `sdkAppId` under `key` at `nowMs`. */
export function verifyUserSig(
  userSig: string,
  sdkAppId: number,
  key: string,
  userId: string,
  nowMs: number,
): UserSigCheck {
  if (userSig.length > MAX_USERSIG_CHARS) {
    return {
      ok: false,
      code: 'MALFORMED',
      message: `UserSig is longer than ${MAX_USERSIG_CHARS} characters`,
    }
  }
  let doc: Record<string, unknown>
  try {
    const base64 = userSig.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '=')
    const inflated = inflateSync(Buffer.from(base64, 'base64'), {
      maxOutputLength: MAX_USERSIG_INFLATED_BYTES,
    })
    const parsed: unknown = JSON.parse(inflated.toString('utf8'))
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error()
    doc = parsed as Record<string, unknown>
  } catch {
    return { ok: false, code: 'MALFORMED', message: 'UserSig is not a TLS-sig-api-v2 signature' }
  }
  const time = doc['TLS.time']
  const expire = doc['TLS.expire']
  const sig = doc['TLS.sig']
  const userBuf = doc['TLS.userbuf']
  if (
    doc['TLS.ver'] !== '2.0' ||
    typeof time !== 'number' ||
    typeof expire !== 'number' ||
    typeof sig !== 'string' ||
    (userBuf !== undefined && typeof userBuf !== 'string')
  ) {
    return { ok: false, code: 'MALFORMED', message: 'UserSig is not a TLS-sig-api-v2 signature' }
  }
  if (String(doc['TLS.identifier']) !== userId) {
    return {
      ok: false,
      code: 'WRONG_USER',
      message: `UserSig was issued for another user, not ${userId}`,
    }
  }
  if (Number(doc['TLS.sdkappid']) !== sdkAppId) {
    return {
      ok: false,
      code: 'WRONG_APP',
      message: `UserSig was issued for another SdkAppId, not ${sdkAppId}`,
    }
  }
  const expected = Buffer.from(
    mac(key, sdkAppId, userId, time, expire, userBuf as string | undefined),
  )
  const given = Buffer.from(sig)
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    return {
      ok: false,
      code: 'BAD_SIGNATURE',
      message: 'UserSig signature does not match the app key',
    }
  }
  const expiresAtMs = (time + expire) * 1000
  if (nowMs >= expiresAtMs) {
    return {
      ok: false,
      code: 'EXPIRED',
      message: `UserSig expired at ${new Date(expiresAtMs).toISOString()}`,
    }
  }
  return { ok: true, expiresAtMs }
}
