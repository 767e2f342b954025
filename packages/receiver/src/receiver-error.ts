/** Stable codes of a refused callback; each maps to the HTTP status a receiver should answer. */
export type ReceiverErrorCode =
  | 'MISSING_SIGNATURE'
  | 'MALFORMED_SIGNATURE'
  | 'BAD_SIGNATURE'
  | 'EXPIRED'
  | 'TIMESTAMP_IN_FUTURE'
  | 'RAW_BODY_REQUIRED'
  | 'INVALID_PAYLOAD'
  | 'UNKNOWN_EVENT'

const STATUS: Record<ReceiverErrorCode, number> = {
  MISSING_SIGNATURE: 401,
  MALFORMED_SIGNATURE: 401,
  BAD_SIGNATURE: 401,
  EXPIRED: 401,
  TIMESTAMP_IN_FUTURE: 401,
  RAW_BODY_REQUIRED: 500,
  INVALID_PAYLOAD: 400,
  UNKNOWN_EVENT: 400,
}

export class ReceiverError extends Error {
  override name = 'ReceiverError'
  readonly code: ReceiverErrorCode
  /** The HTTP status to answer with: 401 signature, 400 payload, 500 receiver misconfiguration. */
  readonly status: number

  constructor(code: ReceiverErrorCode, message: string) {
    super(message)
    this.code = code
    this.status = STATUS[code]
  }
}
