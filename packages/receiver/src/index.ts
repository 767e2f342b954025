export type {
  CallbackEvent,
  CallbackOf,
  EventDataOf,
  EventType,
  FinishReason,
  HeadersLike,
  OmittedDuration,
  VideoInfo,
} from '@online-record/protocol'
export { EVENT_TYPES, signCallback, webhookHeaders } from '@online-record/protocol'
export { ReceiverError, type ReceiverErrorCode } from './receiver-error.ts'
export { type VerifiedCallback, type VerifyOptions, verify } from './verify.ts'
