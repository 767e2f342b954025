/** Request headers as Node (`IncomingHttpHeaders`), fetch (`Headers`) or a plain object give them. */
export type HeadersLike =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>

/** Reads one header case-insensitively; a repeated header yields its first value. */
export function getHeader(headers: HeadersLike, name: string): string | undefined {
  // Node's headers and most plain objects have lowercase keys: try that first.
  const direct = (headers as Readonly<Record<string, unknown>>)[name]
  if (typeof direct === 'string') return direct
  if (typeof headers.get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined
  }
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>
  const lower = name.toLowerCase()
  let value = record[lower]
  if (value === undefined) {
    for (const key of Object.keys(record)) {
      if (key.toLowerCase() === lower) {
        value = record[key]
        break
      }
    }
  }
  return typeof value === 'string' ? value : value?.[0]
}

/**
 * The event's position in its task (1, 2, …), on every delivery. Informational:
 * no signature covers headers other than `webhook-id` and `webhook-timestamp`.
 */
export const SEQUENCE_HEADER = 'online-record-sequence'
/** The delivery attempt (1 first, 2 and above retries of the same `webhook-id`). Informational. */
export const ATTEMPT_HEADER = 'online-record-attempt'

/** A positive integer header, or undefined when absent or malformed. */
export function getCountHeader(headers: HeadersLike, name: string): number | undefined {
  const value = getHeader(headers, name)
  return value !== undefined && /^[1-9]\d{0,9}$/.test(value) ? Number(value) : undefined
}
