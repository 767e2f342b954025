// Request and response schemas of the OnlineRecord actions (spec §1–2), and the
// mapping from a validation failure to the TIW error code a client expects.
import { z } from 'zod'
import { ApiError, type ErrorCode } from './errors.ts'
import { eventSchemas, FinishReasonSchema, issuePath } from './events.ts'
import { isStorableText } from './text.ts'

export const API_VERSION = '2019-09-19'

/** Bounds from the spec, named so that docs, schemas and tests share them. */
export const LIMITS = {
  roomId: { min: 1, max: 4_294_967_295 },
  recordUserIdBytes: 60,
  trtcRoomIdStrBytes: 64,
  autoStopTimeout: { min: 300, max: 86_400, default: 300 },
  whiteboardSize: { min: 2, max: 4096, defaultWidth: 1280, defaultHeight: 960 },
  layoutSize: { min: 2, max: 3000 },
  layoutOffset: { min: 0, max: 3000 },
  /**
   * Rectangles of a Custom layout. Each is a scaler and an overlay on every
   * frame of the mixed video, beside its stream's decoder: 25 holds a board,
   * a screen share and a gallery of 23 cameras (TIW's templates use 6).
   */
  mixInputs: 25,
  /**
   * The rectangles' total area (each clipped to the canvas) is at most this
   * many canvases: every covered pixel is composed on every frame. The
   * templates cover 1.7 canvases (a screen share over the board); 4 leaves
   * room for layered layouts and bounds the per-frame work at 5 canvases.
   */
  mixAreaCanvases: 4,
  callbackKeyLength: 64,
  /** A real UserSig is a few hundred characters; longer ones are refused before any work. */
  userSigChars: 4096,
  /** Ids and names: GroupId, ChatGroupId, TeacherId, StreamId, InputStreamId. */
  idChars: 256,
  extraDataChars: 4096,
  initParamChars: 16_384,
  imageUrlChars: 2048,
  callbackUrlLength: 2048,
  runningTasks: { defaultLimit: 100, maxLimit: 500 },
  callbackEvents: { defaultLimit: 100, maxLimit: 500 },
} as const

/** `MixStream` is accepted beside `MIX_STREAM`: Tencent's own CLI example sends it. */
export const EXTRAS = ['MIX_STREAM', 'MixStream'] as const
export const RECORD_MODES = ['REALTIME_MODE', 'VIDEO_GENERATION_MODE'] as const
export const TASK_STATUSES = ['PREPARED', 'RECORDING', 'PAUSED', 'STOPPED', 'FINISHED'] as const
export const RUNNING_TASK_TYPES = [
  'TranscodeH5',
  'TranscodeJPG',
  'WhiteboardPush',
  'OnlineRecord',
] as const

const utf8Bytes = (s: string): number => new TextEncoder().encode(s).length
const color = () => z.string().regex(/^#[0-9A-Fa-f]{6}$/, 'must be a colour "#RRGGBB"')
const id = () => z.string().max(LIMITS.idChars)
const httpUrl = () =>
  z.string().refine((s) => {
    try {
      const url = new URL(s)
      return url.protocol === 'http:' || url.protocol === 'https:'
    } catch {
      return false
    }
  }, 'must be an http:// or https:// URL')

const SdkAppId = z.int().positive()
const TaskId = z.string().min(1).max(LIMITS.idChars)

// ---- Input data types (§2) --------------------------------------------------

export const ConcatSchema = z.strictObject({
  Enabled: z.boolean(),
  Image: httpUrl()
    .refine(
      (s) => s.length <= LIMITS.imageUrlChars,
      `must be at most ${LIMITS.imageUrlChars} characters`,
    )
    .optional(),
})

export const WhiteboardSchema = z.strictObject({
  Width: z.int().min(LIMITS.whiteboardSize.min).max(LIMITS.whiteboardSize.max).optional(),
  Height: z.int().min(LIMITS.whiteboardSize.min).max(LIMITS.whiteboardSize.max).optional(),
  InitParam: z.string().max(LIMITS.initParamChars).optional(),
})

export const LayoutParamsSchema = z.strictObject({
  Width: z.int().min(LIMITS.layoutSize.min).max(LIMITS.layoutSize.max),
  Height: z.int().min(LIMITS.layoutSize.min).max(LIMITS.layoutSize.max),
  X: z.int().min(LIMITS.layoutOffset.min).max(LIMITS.layoutOffset.max).optional(),
  Y: z.int().min(LIMITS.layoutOffset.min).max(LIMITS.layoutOffset.max).optional(),
  ZOrder: z.int().nonnegative().optional(),
})

export const CanvasSchema = z.strictObject({
  LayoutParams: LayoutParamsSchema,
  BackgroundColor: color().optional(),
})

export const StreamLayoutSchema = z.strictObject({
  LayoutParams: LayoutParamsSchema,
  InputStreamId: id().optional(),
  BackgroundColor: color().optional(),
  FillMode: z.literal([0, 1]).optional(),
})

export const CustomLayoutSchema = z
  .strictObject({
    Canvas: CanvasSchema,
    InputStreamList: z
      .array(StreamLayoutSchema)
      .min(1)
      .max(LIMITS.mixInputs, `must have at most ${LIMITS.mixInputs} rectangles`),
  })
  .superRefine((layout, ctx) => {
    const canvas = layout.Canvas.LayoutParams
    let area = 0
    layout.InputStreamList.forEach((stream, i) => {
      const p = stream.LayoutParams
      const x = p.X ?? 0
      const y = p.Y ?? 0
      if (x + p.Width > canvas.Width || y + p.Height > canvas.Height) {
        ctx.addIssue({
          code: 'custom',
          path: ['InputStreamList', i, 'LayoutParams'],
          message: `the rectangle ${p.Width}x${p.Height} at (${x},${y}) leaves the ${canvas.Width}x${canvas.Height} canvas`,
        })
      }
      area +=
        Math.max(0, Math.min(x + p.Width, canvas.Width) - x) *
        Math.max(0, Math.min(y + p.Height, canvas.Height) - y)
    })
    const most = LIMITS.mixAreaCanvases * canvas.Width * canvas.Height
    if (area > most) {
      ctx.addIssue({
        code: 'custom',
        path: ['InputStreamList'],
        message: `the rectangles cover ${area} pixels, more than ${LIMITS.mixAreaCanvases} times the ${canvas.Width}x${canvas.Height} canvas (${most})`,
      })
    }
  })

export const MixStreamSchema = z
  .strictObject({
    Enabled: z.boolean(),
    DisableAudio: z.boolean().optional(),
    /** 1 or 2 without Custom; ignored (any integer) when Custom is given, as TIW says. */
    ModelId: z.int().optional(),
    TeacherId: id().optional(),
    Custom: CustomLayoutSchema.optional(),
  })
  .refine((m) => !m.Enabled || m.Custom !== undefined || m.ModelId === 1 || m.ModelId === 2, {
    message: 'must be 1 or 2 when Custom is absent',
    path: ['ModelId'],
  })

export const StreamControlSchema = z.strictObject({
  StreamId: id().min(1),
  DisableRecord: z.boolean().optional(),
  DisableAudio: z.boolean().optional(),
  PullSmallVideo: z.boolean().optional(),
})

export const RecordControlSchema = z.strictObject({
  Enabled: z.boolean(),
  DisableRecord: z.boolean().optional(),
  DisableAudio: z.boolean().optional(),
  PullSmallVideo: z.boolean().optional(),
  StreamControls: z.array(StreamControlSchema).optional(),
})

// ---- Requests (§1) ----------------------------------------------------------

export interface StartOnlineRecordOptions {
  /** Lowest accepted AutoStopTimeout; the spec's 300 unless a deployment lowers it. */
  autoStopTimeoutMin?: number
}

/** StartOnlineRecord's request schema; a deployment may lower the AutoStopTimeout floor. */
export function startOnlineRecordRequestSchema(options: StartOnlineRecordOptions = {}) {
  const autoStopMin = options.autoStopTimeoutMin ?? LIMITS.autoStopTimeout.min
  const roomId = () => z.int().min(LIMITS.roomId.min).max(LIMITS.roomId.max)
  return z
    .strictObject({
      SdkAppId,
      RoomId: roomId(),
      RecordUserId: z
        .string()
        .min(1)
        .refine(
          (s) => utf8Bytes(s) <= LIMITS.recordUserIdBytes,
          `must be at most ${LIMITS.recordUserIdBytes} bytes`,
        ),
      RecordUserSig: z.string().min(1).max(LIMITS.userSigChars),
      GroupId: id().optional(),
      Concat: ConcatSchema.optional(),
      Whiteboard: WhiteboardSchema.optional(),
      MixStream: MixStreamSchema.optional(),
      Extras: z.array(z.enum(EXTRAS)).optional(),
      AudioFileNeeded: z.boolean().optional(),
      RecordControl: RecordControlSchema.optional(),
      RecordMode: z.enum(RECORD_MODES).optional(),
      ChatGroupId: id().optional(),
      AutoStopTimeout: z.int().min(autoStopMin).max(LIMITS.autoStopTimeout.max).optional(),
      ExtraData: z.string().max(LIMITS.extraDataChars).optional(),
      TRTCRoomId: roomId().optional(),
      TRTCRoomIdStr: z
        .string()
        .min(1)
        .refine(
          (s) => utf8Bytes(s) <= LIMITS.trtcRoomIdStrBytes,
          `must be at most ${LIMITS.trtcRoomIdStrBytes} bytes`,
        )
        .optional(),
    })
    .superRefine((req, ctx) => {
      const prefix = `tic_record_user_${req.RoomId}_`
      if (!req.RecordUserId.startsWith(prefix) || req.RecordUserId.length === prefix.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['RecordUserId'],
          message: `must have the form ${prefix}{Random}`,
        })
      }
      if (
        req.MixStream?.Enabled &&
        !req.Extras?.includes('MIX_STREAM') &&
        !req.Extras?.includes('MixStream')
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['MixStream', 'Enabled'],
          message: 'is true but Extras does not contain "MIX_STREAM"',
        })
      }
      if (req.RecordMode === 'VIDEO_GENERATION_MODE') {
        ctx.addIssue({
          code: 'custom',
          path: ['RecordMode'],
          message:
            'VIDEO_GENERATION_MODE is not supported by this service: use REALTIME_MODE (the default)',
        })
      }
    })
}

export const StartOnlineRecordRequestSchema = startOnlineRecordRequestSchema()
export const StopOnlineRecordRequestSchema = z.strictObject({ SdkAppId, TaskId })
export const PauseOnlineRecordRequestSchema = z.strictObject({ SdkAppId, TaskId })
export const ResumeOnlineRecordRequestSchema = z.strictObject({ SdkAppId, TaskId })
export const DescribeOnlineRecordRequestSchema = z.strictObject({ SdkAppId, TaskId })
export const SetOnlineRecordCallbackRequestSchema = z.strictObject({
  SdkAppId,
  Callback: z.union([
    z.literal(''),
    httpUrl().refine(
      (s) => s.length <= LIMITS.callbackUrlLength,
      `must be at most ${LIMITS.callbackUrlLength} characters`,
    ),
  ]),
})
export const SetOnlineRecordCallbackKeyRequestSchema = z.strictObject({
  SdkAppId,
  CallbackKey: z.string().max(LIMITS.callbackKeyLength),
})
export const DescribeOnlineRecordCallbackRequestSchema = z.strictObject({ SdkAppId })
export const DescribeRunningTasksRequestSchema = z.strictObject({
  SdkAppID: SdkAppId,
  TaskType: z.enum(RUNNING_TASK_TYPES),
  Offset: z.int().nonnegative().optional(),
  Limit: z.int().min(1).max(LIMITS.runningTasks.maxLimit).optional(),
})

// ---- Responses --------------------------------------------------------------

const RequestId = z.string()
const empty = z.strictObject({ RequestId })

export const StartOnlineRecordResponseSchema = z.strictObject({ TaskId: z.string(), RequestId })
export const StopOnlineRecordResponseSchema = empty
export const PauseOnlineRecordResponseSchema = empty
export const ResumeOnlineRecordResponseSchema = empty
export const DescribeOnlineRecordResponseSchema = z.strictObject({
  FinishReason: z.union([FinishReasonSchema, z.literal('')]),
  TaskId: z.string(),
  Status: z.enum(TASK_STATUSES),
  RoomId: z.int(),
  GroupId: z.string(),
  RecordUserId: z.string(),
  RecordStartTime: z.int().nonnegative(),
  RecordStopTime: z.int().nonnegative(),
  TotalTime: z.int().nonnegative(),
  ExceptionCnt: z.int().nonnegative(),
  OmittedDurations: z.array(eventSchemas.OmittedDuration),
  VideoInfos: z.array(eventSchemas.VideoInfo),
  ReplayUrl: z.string().nullable(),
  Interrupts: z.array(eventSchemas.Interrupt).nullable(),
  RequestId,
})
export const SetOnlineRecordCallbackResponseSchema = empty
export const SetOnlineRecordCallbackKeyResponseSchema = empty
export const DescribeOnlineRecordCallbackResponseSchema = z.strictObject({
  Callback: z.string(),
  CallbackKey: z.string(),
  RequestId,
})
export const RunningTaskItemSchema = z.strictObject({
  SdkAppID: z.int(),
  TaskID: z.string(),
  TaskType: z.enum(RUNNING_TASK_TYPES),
  CreateTime: z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/),
  CancelTime: z.string().nullable(),
  Status: z.enum(['QUEUED', 'PROCESSING', 'FINISHED']),
  Progress: z.int().min(0).max(100),
  FileURL: z.string().nullable(),
  RoomID: z.int().nullable(),
})
export const DescribeRunningTasksResponseSchema = z.strictObject({
  Total: z.int().nonnegative(),
  Tasks: z.array(RunningTaskItemSchema),
  RequestId,
})

// ---- Extension actions ---------------------------------------------------------
// online-record's own actions, beside TIW's: same endpoint, signing, version and
// envelope; the `Ext` prefix keeps them apart from any name TIW may add. TIW
// clients never call them. Times are Unix ms (`…Ms`), except the event's own
// `Timestamp` (seconds, as in the callback body) and `Since` (seconds, as TIW).

export const CALLBACK_STATES = ['PENDING', 'DELIVERED', 'FAILED'] as const

export const ExtDescribeCallbacksRequestSchema = z.strictObject({
  SdkAppId,
  TaskId: TaskId.optional(),
  State: z.enum(CALLBACK_STATES).optional(),
  /** Events written at or after this Unix time in seconds. */
  Since: z.int().nonnegative().optional(),
  Offset: z.int().nonnegative().optional(),
  Limit: z.int().min(1).max(LIMITS.callbackEvents.maxLimit).optional(),
})
export const ExtDescribeCallbackAttemptsRequestSchema = z.strictObject({
  SdkAppId,
  EventId: z.string().min(1).max(LIMITS.idChars),
})
export const ExtResendCallbacksRequestSchema = z
  .strictObject({
    SdkAppId,
    /** These events, whatever their state. */
    EventIds: z
      .array(z.string().min(1).max(LIMITS.idChars))
      .min(1)
      .max(LIMITS.callbackEvents.maxLimit)
      .optional(),
    /** Every FAILED event written at or after this Unix time in seconds. */
    Since: z.int().nonnegative().optional(),
  })
  .superRefine((req, ctx) => {
    if ((req.EventIds === undefined) === (req.Since === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['EventIds'],
        message: 'give either EventIds or Since, not both and not neither',
      })
    }
  })

export const CallbackEventItemSchema = z.strictObject({
  EventId: z.string(),
  TaskId: z.string(),
  /** Position of the event in its task, from 1. */
  Seq: z.int().positive(),
  EventType: z.string(),
  Timestamp: z.int().nonnegative(),
  CreatedTimeMs: z.int().nonnegative(),
  State: z.enum(CALLBACK_STATES),
  Attempts: z.int().nonnegative(),
  /** While PENDING: the next attempt, or the end of the one in flight; else 0. */
  NextAttemptTimeMs: z.int().nonnegative(),
  InFlight: z.boolean(),
  LastAttemptTimeMs: z.int().nonnegative(),
  LastStatus: z.int().nullable(),
  LastError: z.string().nullable(),
  DeliveredTimeMs: z.int().nonnegative(),
})
export const CallbackAttemptItemSchema = z.strictObject({
  Attempt: z.int().positive(),
  TimeMs: z.int().nonnegative(),
  Url: z.string(),
  /** HTTP status, or null when no answer came. */
  Status: z.int().nullable(),
  LatencyMs: z.int().nonnegative(),
  /** The first 4 KB of the answer's body. */
  Response: z.string().nullable(),
  /** Network error, timeout, or why the attempt was not made. */
  Error: z.string().nullable(),
})

export const ExtDescribeCallbacksResponseSchema = z.strictObject({
  Total: z.int().nonnegative(),
  Events: z.array(CallbackEventItemSchema),
  RequestId,
})
export const ExtDescribeCallbackAttemptsResponseSchema = z.strictObject({
  Event: CallbackEventItemSchema,
  /** The event's data exactly as sent in `EventData`. */
  EventData: z.record(z.string(), z.unknown()),
  Attempts: z.array(CallbackAttemptItemSchema),
  RequestId,
})
export const ExtResendCallbacksResponseSchema = z.strictObject({
  /** The events that will be sent again now (events in flight are left out). */
  EventIds: z.array(z.string()),
  RequestId,
})

/** `{"Response":{"Error":{"Code","Message"},"RequestId"}}` */
export const ErrorResponseSchema = z.strictObject({
  Response: z.strictObject({
    Error: z.strictObject({ Code: z.string(), Message: z.string() }),
    RequestId,
  }),
})

// ---- The action table ---------------------------------------------------------

export const actions = {
  StartOnlineRecord: {
    request: StartOnlineRecordRequestSchema,
    response: StartOnlineRecordResponseSchema,
  },
  StopOnlineRecord: {
    request: StopOnlineRecordRequestSchema,
    response: StopOnlineRecordResponseSchema,
  },
  PauseOnlineRecord: {
    request: PauseOnlineRecordRequestSchema,
    response: PauseOnlineRecordResponseSchema,
  },
  ResumeOnlineRecord: {
    request: ResumeOnlineRecordRequestSchema,
    response: ResumeOnlineRecordResponseSchema,
  },
  DescribeOnlineRecord: {
    request: DescribeOnlineRecordRequestSchema,
    response: DescribeOnlineRecordResponseSchema,
  },
  SetOnlineRecordCallback: {
    request: SetOnlineRecordCallbackRequestSchema,
    response: SetOnlineRecordCallbackResponseSchema,
  },
  SetOnlineRecordCallbackKey: {
    request: SetOnlineRecordCallbackKeyRequestSchema,
    response: SetOnlineRecordCallbackKeyResponseSchema,
  },
  DescribeOnlineRecordCallback: {
    request: DescribeOnlineRecordCallbackRequestSchema,
    response: DescribeOnlineRecordCallbackResponseSchema,
  },
  DescribeRunningTasks: {
    request: DescribeRunningTasksRequestSchema,
    response: DescribeRunningTasksResponseSchema,
  },
  ExtDescribeCallbacks: {
    request: ExtDescribeCallbacksRequestSchema,
    response: ExtDescribeCallbacksResponseSchema,
  },
  ExtDescribeCallbackAttempts: {
    request: ExtDescribeCallbackAttemptsRequestSchema,
    response: ExtDescribeCallbackAttemptsResponseSchema,
  },
  ExtResendCallbacks: {
    request: ExtResendCallbacksRequestSchema,
    response: ExtResendCallbacksResponseSchema,
  },
} as const

export type ActionName = keyof typeof actions
/** online-record's own actions (see "Extension actions" above). */
export const EXTENSION_ACTION_NAMES = [
  'ExtDescribeCallbacks',
  'ExtDescribeCallbackAttempts',
  'ExtResendCallbacks',
] as const satisfies readonly ActionName[]
export const ACTION_NAMES = Object.keys(actions) as ActionName[]
export type RequestOf<A extends ActionName> = z.infer<(typeof actions)[A]['request']>
/** A response's fields as inside `Response`, RequestId included. */
export type ResponseOf<A extends ActionName> = z.infer<(typeof actions)[A]['response']>

export type StartOnlineRecordRequest = RequestOf<'StartOnlineRecord'>
export type DescribeOnlineRecordResponse = ResponseOf<'DescribeOnlineRecord'>
export type DescribeRunningTasksRequest = RequestOf<'DescribeRunningTasks'>

export function isActionName(name: string): name is ActionName {
  return Object.hasOwn(actions, name)
}

/** The code a rule broken inside `path` yields for `action` (a value, not a type, is wrong). */
function valueErrorCode(action: ActionName, path: readonly PropertyKey[]): ErrorCode {
  const field = path[0]
  switch (action) {
    case 'StartOnlineRecord':
      return field === 'Extras'
        ? 'InvalidParameter.InvalidExtra'
        : 'InvalidParameter.RecordParameter'
    case 'SetOnlineRecordCallback':
      return field === 'Callback'
        ? 'InvalidParameter.CallbackAddressFormatError'
        : 'InvalidParameter'
    case 'DescribeRunningTasks':
      return field === 'TaskType' ? 'InvalidParameter.InvalidTaskType' : 'InvalidParameter'
    default:
      return 'InvalidParameter'
  }
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

const jsonType = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v

/** Turns the first validation issue into the ApiError a TIW client expects. */
export function toApiError(action: ActionName, input: unknown, issue: z.core.$ZodIssue): ApiError {
  const path = issuePath(issue)
  if (issue.code === 'unrecognized_keys') {
    const prefix = path === '' ? '' : `${path}.`
    return new ApiError(
      'UnknownParameter',
      `The parameter \`${prefix}${issue.keys[0]}\` is not recognized.`,
    )
  }
  const value = valueAt(input, issue.path)
  if (value === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_union')) {
    if (path === 'SdkAppId' || path === 'SdkAppID') {
      const hint =
        path === 'SdkAppID' && Object.hasOwn(input as object, 'SdkAppId')
          ? ` (${action} spells it SdkAppID, not SdkAppId)`
          : ''
      return new ApiError(
        'InvalidParameter.SdkAppIdNotFound',
        `The parameter \`${path}\` is missing${hint}.`,
      )
    }
    return new ApiError(
      'MissingParameter',
      `The request is missing a required parameter \`${path}\`.`,
    )
  }
  if (issue.code === 'invalid_type') {
    return new ApiError(
      'InvalidParameter.BodyParameterTypeUnmatched',
      `The parameter \`${path}\` must be ${issue.expected === 'int' ? 'an integer' : `of type ${issue.expected}`}, got ${jsonType(value)}.`,
    )
  }
  if (issue.code === 'invalid_value' && typeof value !== typeof issue.values[0]) {
    return new ApiError(
      'InvalidParameter.BodyParameterTypeUnmatched',
      `The parameter \`${path}\` must be of type ${typeof issue.values[0]}, got ${jsonType(value)}.`,
    )
  }
  return new ApiError(
    valueErrorCode(action, issue.path),
    `The parameter \`${path}\` is invalid: ${issue.message}.`,
  )
}

export type ActionParseResult<A extends ActionName> =
  | { ok: true; value: RequestOf<A> }
  | { ok: false; error: ApiError }

/** Deepest nesting a request may have; TIW's deepest field is five levels down. */
export const MAX_REQUEST_DEPTH = 16

/**
 * The first place in a decoded request that no schema should see: nesting
 * deeper than MAX_REQUEST_DEPTH, or a key or string that is not storable
 * text. Iterative, so a hostile depth cannot overflow the stack.
 */
function hostileInput(
  action: ActionName,
  input: object,
): { path: PropertyKey[]; error: ApiError } | undefined {
  const stack: { value: unknown; path: PropertyKey[] }[] = [{ value: input, path: [] }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { value, path } = item
    const where = () => path.map(String).join('.')
    if (typeof value === 'string') {
      if (!isStorableText(value)) {
        return {
          path,
          error: new ApiError(
            valueErrorCode(action, path),
            `The parameter \`${where()}\` contains a NUL character or a lone UTF-16 surrogate.`,
          ),
        }
      }
      continue
    }
    if (value === null || typeof value !== 'object') continue
    if (path.length >= MAX_REQUEST_DEPTH) {
      return {
        path,
        error: new ApiError(
          'InvalidParameter',
          `The parameter \`${where()}\` is nested deeper than ${MAX_REQUEST_DEPTH} levels.`,
        ),
      }
    }
    if (Array.isArray(value)) {
      value.forEach((v, i) => {
        stack.push({ value: v, path: [...path, i] })
      })
      continue
    }
    for (const [key, v] of Object.entries(value)) {
      if (!isStorableText(key)) {
        return {
          path,
          error: new ApiError('UnknownParameter', 'A parameter name is not valid text.'),
        }
      }
      stack.push({ value: v, path: [...path, key] })
    }
  }
  return undefined
}

/** Validates a decoded request of `action`; a failure carries the TIW error code and names the field. */
export function parseActionRequest<A extends ActionName>(
  action: A,
  input: unknown,
  schema: z.ZodType = actions[action].request,
): ActionParseResult<A> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return {
      ok: false,
      error: new ApiError('InvalidParameter', 'The request body must be a JSON object.'),
    }
  }
  const hostile = hostileInput(action, input)
  if (hostile !== undefined) return { ok: false, error: hostile.error }
  const result = schema.safeParse(input)
  if (result.success) return { ok: true, value: result.data as RequestOf<A> }
  const issue = result.error.issues[0] as z.core.$ZodIssue
  return { ok: false, error: toApiError(action, input, issue) }
}
