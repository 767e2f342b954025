/** Stable codes of a failed signature check; match on `code`, not on the message. */
export type VerificationErrorCode =
  | 'MISSING_SIGNATURE'
  | 'MALFORMED_SIGNATURE'
  | 'BAD_SIGNATURE'
  | 'EXPIRED'
  | 'TIMESTAMP_IN_FUTURE'

export class VerificationError extends Error {
  override name = 'VerificationError'
  readonly code: VerificationErrorCode

  constructor(code: VerificationErrorCode, message: string) {
    super(message)
    this.code = code
  }
}
