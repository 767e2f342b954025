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
export { type FastifyReceiverOptions, fastifyReceiver } from './adapters/fastify.ts'
export { type HonoContextLike, honoHandler } from './adapters/hono.ts'
export { createNodeMiddleware, type NodeMiddlewareOptions } from './adapters/node.ts'
export { createWebHandler } from './adapters/web.ts'
export { type DedupeStore, dedupeKey, MemoryDedupeStore } from './dedupe.ts'
export {
  type AnyHandler,
  createReceiver,
  type ErrorHandler,
  type Handler,
  type HandlerContext,
  type ReceiveResult,
  Receiver,
  type ReceiverOptions,
} from './receiver.ts'
export { ReceiverError, type ReceiverErrorCode } from './receiver-error.ts'
export { type VerifiedCallback, type VerifyOptions, verify } from './verify.ts'
