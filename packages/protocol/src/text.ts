// Text a peer sent, checked or made safe for every store and JSON consumer.

/**
 * Whether `s` is text every store and every JSON consumer takes as it is: no
 * NUL (PostgreSQL's text and jsonb refuse it) and no lone UTF-16 surrogate
 * (not encodable as UTF-8, refused by jsonb).
 */
export function isStorableText(s: string): boolean {
  return !UNSTORABLE.test(s)
}
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what is looked for
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g')

/** `s` with every NUL and lone surrogate replaced by U+FFFD: text a peer sent, made storable. */
export function toStorableText(s: string): string {
  return UNSTORABLE.test(s) ? s.replace(UNSTORABLE_ALL, '\uFFFD') : s
}
