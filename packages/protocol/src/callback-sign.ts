import { md5Hex } from '#crypto'
import { timingSafeEqual } from './constant-time.ts'
import { VerificationError } from './verification-error.ts'

/** TIW callback signature: lowercase hex md5 of CallbackKey followed by ExpireTime in decimal. */
export function signCallback(callbackKey: string, expireTime: number): string {
  return md5Hex(callbackKey + String(expireTime))
}

export interface VerifyCallbackSignOptions {
  /** The app's CallbackKey; several are accepted while a key is being rotated. */
  keys: string | readonly string[]
  /** Current time in Unix milliseconds; defaults to `Date.now`. */
  now?: () => number
  /** Seconds an ExpireTime may lie in the past and still be accepted (clock skew). Default 0. */
  toleranceSeconds?: number
}

/**
 * Checks the `Sign` and `ExpireTime` fields of a TIW callback body.
 * Throws a {@link VerificationError}; returns the key that matched.
 */
export function verifyCallbackSign(
  body: { readonly Sign?: unknown; readonly ExpireTime?: unknown },
  options: VerifyCallbackSignOptions,
): string {
  const { Sign: sign, ExpireTime: expireTime } = body
  if (sign === undefined || expireTime === undefined) {
    throw new VerificationError(
      'MISSING_SIGNATURE',
      'The callback has no Sign/ExpireTime: the sender has no CallbackKey set for this app.',
    )
  }
  if (
    typeof sign !== 'string' ||
    typeof expireTime !== 'number' ||
    !Number.isSafeInteger(expireTime)
  ) {
    throw new VerificationError(
      'MALFORMED_SIGNATURE',
      'Sign must be a string and ExpireTime an integer number of Unix seconds.',
    )
  }
  const suffix = String(expireTime)
  let matched: string | undefined
  if (typeof options.keys === 'string') {
    if (timingSafeEqual(md5Hex(options.keys + suffix), sign)) matched = options.keys
  } else {
    if (options.keys.length === 0)
      throw new TypeError('verifyCallbackSign: at least one key is required')
    for (const key of options.keys) {
      // Every key is tried, so timing does not reveal which one matched.
      if (timingSafeEqual(md5Hex(key + suffix), sign) && matched === undefined) matched = key
    }
  }
  if (matched === undefined) {
    throw new VerificationError(
      'BAD_SIGNATURE',
      'Sign does not match md5(CallbackKey + ExpireTime) for any configured key.',
    )
  }
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000)
  if (nowSeconds > expireTime + (options.toleranceSeconds ?? 0)) {
    throw new VerificationError(
      'EXPIRED',
      `ExpireTime ${expireTime} is ${nowSeconds - expireTime} s in the past; the callback is too old to accept.`,
    )
  }
  return matched
}
