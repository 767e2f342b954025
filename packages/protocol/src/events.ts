// The five OnlineRecord callback events of spec/seed-online-record-events.md,
// the spec of record: field names and types exactly as there.
import { z } from 'zod'

/**
 * `strict` rejects fields the seed does not define (what our server must send);
 * `lenient` ignores them (what a receiver should accept, in case the sender is
 * newer than the receiver). Both reject missing fields and wrong types.
 */
export type SchemaMode = 'strict' | 'lenient'

const unixSeconds = () => z.int().nonnegative()

export const FINISH_REASONS = ['AUTO', 'USER_CALL', 'EXCEPTION', 'FORCE_STOP'] as const
export const FinishReasonSchema = z.enum(FINISH_REASONS)
export type FinishReason = z.infer<typeof FinishReasonSchema>

export const EVENT_TYPES = [
  'OnlineRecordStarted',
  'OnlineRecordStopped',
  'OnlineRecordFinished',
  'OnlineRecordLongPauseWarning',
  'OnlineRecordLongPauseForceStopped',
] as const
export const EventTypeSchema = z.enum(EVENT_TYPES)
export type EventType = z.infer<typeof EventTypeSchema>

/** VideoType: 0 camera, 1 screen share, 2 whiteboard, 3 mixed stream, 4 audio-only mp3. */
export const VIDEO_TYPES = [0, 1, 2, 3, 4] as const

function build(mode: SchemaMode) {
  const object = mode === 'strict' ? z.strictObject : z.object

  const VideoInfo = object({
    UserId: z.string(),
    VideoDuration: z.int().nonnegative(),
    VideoFormat: z.string(),
    VideoId: z.string(),
    VideoPlayTime: z.int().nonnegative(),
    VideoSize: z.int().nonnegative(),
    VideoType: z.literal(VIDEO_TYPES),
    VideoUrl: z.string(),
    // In the data-type reference, not in the seed's example: optional.
    Width: z.int().nonnegative().optional(),
    Height: z.int().nonnegative().optional(),
  })

  const OmittedDuration = object({
    VideoTime: z.int().nonnegative(),
    PauseTime: z.int().nonnegative(),
    ResumeTime: z.int().nonnegative(),
  })

  const Interrupt = object({
    UserId: z.string().nullable(),
    Count: z.int().nonnegative().nullable(),
  })

  const RecordError = object({ Code: z.string(), Message: z.string() })

  const taskFields = {
    TaskId: z.string(),
    RoomId: z.int(),
    RecordUserId: z.string(),
  }

  const StartedData = object(taskFields)
  const StoppedData = object(taskFields)
  const FinishedData = object({
    TaskId: z.string(),
    RoomId: z.int(),
    GroupId: z.string(),
    RecordUserId: z.string(),
    FinishReason: FinishReasonSchema,
    RecordStartTime: unixSeconds(),
    RecordStopTime: unixSeconds(),
    TotalTime: z.int().nonnegative(),
    ExceptionCnt: z.int().nonnegative(),
    OmittedDurations: z.array(OmittedDuration),
    VideoInfos: z.array(VideoInfo),
    Error: RecordError.optional(),
  })
  const LongPauseWarningData = object({
    ...taskFields,
    PauseTime: unixSeconds(),
    EstimateStopTime: unixSeconds(),
  })
  const LongPauseForceStoppedData = object({
    ...taskFields,
    PauseTime: unixSeconds(),
    StopTime: unixSeconds(),
  })

  const envelope = <T extends (typeof EVENT_TYPES)[number], D extends z.ZodType>(
    type: T,
    data: D,
  ) =>
    object({
      EventData: data,
      EventType: z.literal(type),
      // Both present when the app has a CallbackKey, both absent otherwise.
      ExpireTime: unixSeconds().optional(),
      SdkAppId: z.int().positive(),
      Sign: z.string().optional(),
      Timestamp: unixSeconds(),
    })

  const OnlineRecordStarted = envelope('OnlineRecordStarted', StartedData)
  const OnlineRecordStopped = envelope('OnlineRecordStopped', StoppedData)
  const OnlineRecordFinished = envelope('OnlineRecordFinished', FinishedData)
  const OnlineRecordLongPauseWarning = envelope(
    'OnlineRecordLongPauseWarning',
    LongPauseWarningData,
  )
  const OnlineRecordLongPauseForceStopped = envelope(
    'OnlineRecordLongPauseForceStopped',
    LongPauseForceStoppedData,
  )

  const Callback = z
    .discriminatedUnion('EventType', [
      OnlineRecordStarted,
      OnlineRecordStopped,
      OnlineRecordFinished,
      OnlineRecordLongPauseWarning,
      OnlineRecordLongPauseForceStopped,
    ])
    .refine((e) => (e.Sign === undefined) === (e.ExpireTime === undefined), {
      message: 'Sign and ExpireTime go together: both present or both absent',
      path: ['Sign'],
    })

  return {
    VideoInfo,
    OmittedDuration,
    Interrupt,
    RecordError,
    StartedData,
    StoppedData,
    FinishedData,
    LongPauseWarningData,
    LongPauseForceStoppedData,
    OnlineRecordStarted,
    OnlineRecordStopped,
    OnlineRecordFinished,
    OnlineRecordLongPauseWarning,
    OnlineRecordLongPauseForceStopped,
    Callback,
  }
}

/** Exactly the seed's fields: what online-record sends. */
export const eventSchemas = build('strict')
/** The seed's fields, unknown extra fields ignored: what a receiver accepts. */
export const lenientEventSchemas = build('lenient')

export type VideoInfo = z.infer<typeof eventSchemas.VideoInfo>
export type OmittedDuration = z.infer<typeof eventSchemas.OmittedDuration>
export type Interrupt = z.infer<typeof eventSchemas.Interrupt>
export type RecordError = z.infer<typeof eventSchemas.RecordError>
export type OnlineRecordStarted = z.infer<typeof eventSchemas.OnlineRecordStarted>
export type OnlineRecordStopped = z.infer<typeof eventSchemas.OnlineRecordStopped>
export type OnlineRecordFinished = z.infer<typeof eventSchemas.OnlineRecordFinished>
export type OnlineRecordLongPauseWarning = z.infer<typeof eventSchemas.OnlineRecordLongPauseWarning>
export type OnlineRecordLongPauseForceStopped = z.infer<
  typeof eventSchemas.OnlineRecordLongPauseForceStopped
>
/** Any callback body. Narrow on `EventType`. */
export type CallbackEvent = z.infer<typeof eventSchemas.Callback>
/** The callback body of one event type. */
export type CallbackOf<T extends EventType> = Extract<CallbackEvent, { EventType: T }>
/** The EventData of one event type. */
export type EventDataOf<T extends EventType> = CallbackOf<T>['EventData']

export type ParseResult<T> =
  | { ok: true; value: T }
  | { ok: false; path: string; message: string; issues: readonly z.core.$ZodIssue[] }

/** Dotted path of an issue, as in `EventData.VideoInfos.0.VideoSize`. */
export function issuePath(issue: z.core.$ZodIssue): string {
  return issue.path.map(String).join('.')
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issuePath(issue)
  if (issue.code === 'unrecognized_keys') {
    const prefix = path === '' ? '' : `${path}.`
    return `unknown field ${issue.keys.map((k) => prefix + k).join(', ')}`
  }
  let value: unknown = input
  for (const key of issue.path) value = (value as Record<PropertyKey, unknown> | undefined)?.[key]
  if (issue.code === 'invalid_type' && value === undefined)
    return `${path}: required field is missing`
  return `${path}: ${issue.message}`
}

/** Parses an already-decoded callback body. The message names the offending field. */
export function parseCallback(
  input: unknown,
  mode: SchemaMode = 'strict',
): ParseResult<CallbackEvent> {
  const schema = mode === 'strict' ? eventSchemas.Callback : lenientEventSchemas.Callback
  const result = schema.safeParse(input)
  if (result.success) return { ok: true, value: result.data }
  const issues = result.error.issues
  const first = issues[0] as z.core.$ZodIssue
  return {
    ok: false,
    path: issuePath(first),
    message: issues.map((i) => describeIssue(i, input)).join('; '),
    issues,
  }
}
