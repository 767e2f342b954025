/**
 * Compares two strings in time that depends only on their lengths, so a
 * forged signature cannot be found byte by byte through response timing.
 */
export function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/**
 * Whether `b` equals `a` from offset `at` to its end, in time that depends
 * only on the lengths: compares a signature inside a longer header value
 * without copying it out.
 */
export function timingSafeEqualAt(a: string, b: string, at: number): boolean {
  if (b.length - at !== a.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(at + i)
  return diff === 0
}
