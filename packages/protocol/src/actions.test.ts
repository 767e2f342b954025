import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  ACTION_NAMES,
  type ActionName,
  actions,
  LIMITS,
  parseActionRequest,
  startOnlineRecordRequestSchema,
} from './actions.ts'
import { ERROR_CODES } from './errors.ts'

// The StartOnlineRecord body the official Node SDK sent in the probe
// (spec/tencentcloud-node-sdk.md), every optional field used.
const fullStart = {
  SdkAppId: 1400000001,
  RoomId: 12358,
  RecordUserId: 'tic_record_user_12358_x1',
  RecordUserSig: 'eJy-sig',
  GroupId: '12358',
  Concat: { Enabled: true, Image: 'https://example.com/pad.png' },
  Whiteboard: { Width: 1280, Height: 960, InitParam: '{"ratio":"16:9"}' },
  MixStream: {
    Enabled: true,
    DisableAudio: false,
    Custom: {
      Canvas: { LayoutParams: { Width: 1920, Height: 1080 }, BackgroundColor: '#000000' },
      InputStreamList: [
        {
          LayoutParams: { Width: 1280, Height: 960, X: 0, Y: 60, ZOrder: 0 },
          InputStreamId: 'tic_record_user',
        },
        {
          LayoutParams: { Width: 640, Height: 360, X: 1280, Y: 0, ZOrder: 1 },
          InputStreamId: 'teacher1',
          FillMode: 1,
        },
      ],
    },
  },
  Extras: ['MIX_STREAM'],
  AudioFileNeeded: true,
  RecordControl: {
    Enabled: true,
    DisableRecord: false,
    DisableAudio: false,
    PullSmallVideo: false,
    StreamControls: [
      { StreamId: 'tic_substream', DisableRecord: true },
      { StreamId: 'student', PullSmallVideo: true, DisableAudio: true },
    ],
  },
  RecordMode: 'REALTIME_MODE',
  AutoStopTimeout: 300,
  TRTCRoomId: 12358,
  TRTCRoomIdStr: '房间-12358',
}
const minimalStart = {
  SdkAppId: 1400000001,
  RoomId: 1203,
  RecordUserId: 'tic_record_user_1203_141551',
  RecordUserSig: 'sig',
}
const task = { SdkAppId: 1400000001, TaskId: 'bj0mt2l23osdj300hl30' }
/** A Custom layout on a 640x360 canvas with `n` copies of one rectangle. */
const slots = (n: number, rect: Record<string, number>) => ({
  Enabled: true,
  Custom: {
    Canvas: { LayoutParams: { Width: 640, Height: 360 } },
    InputStreamList: Array.from({ length: n }, () => ({ LayoutParams: rect })),
  },
})

const valid: Record<ActionName, unknown[]> = {
  StartOnlineRecord: [
    minimalStart,
    fullStart,
    { ...minimalStart, RoomId: 1, RecordUserId: 'tic_record_user_1_a' },
    // Tencent's CLI example spells the extra MixStream.
    { ...minimalStart, MixStream: { Enabled: true, ModelId: 2 }, Extras: ['MixStream'] },
    // With Custom, ModelId is ignored, whatever it is.
    {
      ...minimalStart,
      MixStream: { ...fullStart.MixStream, ModelId: 7 },
      Extras: ['MIX_STREAM'],
    },
    // At the limits: 25 rectangles, covering exactly 4 canvases.
    {
      ...minimalStart,
      MixStream: slots(25, { Width: 256, Height: 144 }),
      Extras: ['MIX_STREAM'],
    },
    { ...minimalStart, MixStream: slots(4, { Width: 640, Height: 360 }), Extras: ['MIX_STREAM'] },
    // Area is counted inside the canvas: a rectangle is never larger than it.
    {
      ...minimalStart,
      MixStream: slots(4, { Width: 640, Height: 360, X: 0, Y: 0 }),
      Extras: ['MIX_STREAM'],
    },
  ],
  StopOnlineRecord: [task],
  PauseOnlineRecord: [task],
  ResumeOnlineRecord: [task],
  DescribeOnlineRecord: [task],
  SetOnlineRecordCallback: [
    { SdkAppId: 1, Callback: 'https://example.com/online/callback' },
    { SdkAppId: 1, Callback: 'http://127.0.0.1:8080/cb' },
    { SdkAppId: 1, Callback: '' },
  ],
  SetOnlineRecordCallbackKey: [
    { SdkAppId: 1, CallbackKey: '6vg9G7Fd' },
    { SdkAppId: 1, CallbackKey: '' },
    { SdkAppId: 1, CallbackKey: 'k'.repeat(64) },
  ],
  DescribeOnlineRecordCallback: [{ SdkAppId: 1 }],
  DescribeRunningTasks: [
    { SdkAppID: 1, TaskType: 'OnlineRecord' },
    { SdkAppID: 1, TaskType: 'OnlineRecord', Offset: 0, Limit: 500 },
  ],
  ExtDescribeCallbacks: [
    { SdkAppId: 1 },
    { SdkAppId: 1, TaskId: 't', State: 'FAILED', Since: 1_700_000_000, Offset: 0, Limit: 500 },
  ],
  ExtDescribeCallbackAttempts: [{ SdkAppId: 1, EventId: 'evt_1' }],
  ExtResendCallbacks: [
    { SdkAppId: 1, EventIds: ['evt_1', 'evt_2'] },
    { SdkAppId: 1, Since: 0 },
  ],
}

type Case = [description: string, action: ActionName, input: unknown, code: string, field: string]
const start = (patch: Record<string, unknown>) => ({ ...minimalStart, ...patch })
const layout = (rect: Record<string, number>) => ({
  Enabled: true,
  Custom: {
    Canvas: { LayoutParams: { Width: 640, Height: 360 } },
    InputStreamList: [{ LayoutParams: rect }],
  },
})
const cases: Case[] = [
  [
    'SdkAppId missing',
    'StartOnlineRecord',
    { ...minimalStart, SdkAppId: undefined },
    'InvalidParameter.SdkAppIdNotFound',
    'SdkAppId',
  ],
  [
    'SdkAppId as a string',
    'StopOnlineRecord',
    { ...task, SdkAppId: '1400000001' },
    'InvalidParameter.BodyParameterTypeUnmatched',
    'SdkAppId',
  ],
  [
    'SdkAppId not an integer',
    'StopOnlineRecord',
    { ...task, SdkAppId: 1.5 },
    'InvalidParameter.BodyParameterTypeUnmatched',
    'SdkAppId',
  ],
  ['TaskId missing', 'PauseOnlineRecord', { SdkAppId: 1 }, 'MissingParameter', 'TaskId'],
  [
    'TaskId a number',
    'ResumeOnlineRecord',
    { SdkAppId: 1, TaskId: 5 },
    'InvalidParameter.BodyParameterTypeUnmatched',
    'TaskId',
  ],
  [
    'TaskId empty',
    'DescribeOnlineRecord',
    { SdkAppId: 1, TaskId: '' },
    'InvalidParameter',
    'TaskId',
  ],
  ['unknown field', 'StopOnlineRecord', { ...task, Force: true }, 'UnknownParameter', 'Force'],
  [
    'unknown nested field',
    'StartOnlineRecord',
    start({ Concat: { Enabled: true, Color: 'red' } }),
    'UnknownParameter',
    'Concat.Color',
  ],
  [
    'RoomId 0',
    'StartOnlineRecord',
    start({ RoomId: 0, RecordUserId: 'tic_record_user_0_a' }),
    'InvalidParameter.RecordParameter',
    'RoomId',
  ],
  [
    'RoomId above 4294967295',
    'StartOnlineRecord',
    start({ RoomId: 4294967296 }),
    'InvalidParameter.RecordParameter',
    'RoomId',
  ],
  [
    'RoomId as a string',
    'StartOnlineRecord',
    start({ RoomId: '1203' }),
    'InvalidParameter.BodyParameterTypeUnmatched',
    'RoomId',
  ],
  [
    'RecordUserId missing',
    'StartOnlineRecord',
    { ...minimalStart, RecordUserId: undefined },
    'MissingParameter',
    'RecordUserId',
  ],
  [
    'RecordUserId over 60 bytes',
    'StartOnlineRecord',
    start({ RecordUserId: `tic_record_user_1203_${'x'.repeat(40)}` }),
    'InvalidParameter.RecordParameter',
    'RecordUserId',
  ],
  [
    'RecordUserId over 60 bytes in UTF-8',
    'StartOnlineRecord',
    start({ RecordUserId: `tic_record_user_1203_${'录'.repeat(14)}` }),
    'InvalidParameter.RecordParameter',
    'RecordUserId',
  ],
  [
    'RecordUserId of another room',
    'StartOnlineRecord',
    start({ RecordUserId: 'tic_record_user_1204_x' }),
    'InvalidParameter.RecordParameter',
    'RecordUserId',
  ],
  [
    'RecordUserId without random part',
    'StartOnlineRecord',
    start({ RecordUserId: 'tic_record_user_1203_' }),
    'InvalidParameter.RecordParameter',
    'RecordUserId',
  ],
  [
    'RecordUserSig empty',
    'StartOnlineRecord',
    start({ RecordUserSig: '' }),
    'InvalidParameter.RecordParameter',
    'RecordUserSig',
  ],
  [
    'AutoStopTimeout below 300',
    'StartOnlineRecord',
    start({ AutoStopTimeout: 299 }),
    'InvalidParameter.RecordParameter',
    'AutoStopTimeout',
  ],
  [
    'AutoStopTimeout above 86400',
    'StartOnlineRecord',
    start({ AutoStopTimeout: 86401 }),
    'InvalidParameter.RecordParameter',
    'AutoStopTimeout',
  ],
  [
    'Extras unknown value',
    'StartOnlineRecord',
    start({ Extras: ['MIXSTREAM'] }),
    'InvalidParameter.InvalidExtra',
    'Extras.0',
  ],
  [
    'Extras not an array',
    'StartOnlineRecord',
    start({ Extras: 'MIX_STREAM' }),
    'InvalidParameter.BodyParameterTypeUnmatched',
    'Extras',
  ],
  [
    'MixStream without Extras MIX_STREAM',
    'StartOnlineRecord',
    start({ MixStream: { Enabled: true, ModelId: 1 } }),
    'InvalidParameter.RecordParameter',
    'MixStream.Enabled',
  ],
  [
    'MixStream with Extras of another feature only',
    'StartOnlineRecord',
    start({ MixStream: { Enabled: true, ModelId: 2 }, Extras: [] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Enabled',
  ],
  [
    'RecordMode VIDEO_GENERATION_MODE (not supported, never silently recorded as real time)',
    'StartOnlineRecord',
    start({ RecordMode: 'VIDEO_GENERATION_MODE' }),
    'InvalidParameter.RecordParameter',
    'RecordMode',
  ],
  [
    'MixStream ModelId 0 without Custom',
    'StartOnlineRecord',
    start({ MixStream: { Enabled: true, ModelId: 0 }, Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.ModelId',
  ],
  [
    'MixStream Canvas colour not #RRGGBB',
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 640, Height: 360 }, BackgroundColor: 'red' },
          InputStreamList: [{ LayoutParams: { Width: 320, Height: 180 } }],
        },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.Canvas.BackgroundColor',
  ],
  [
    'MixStream without ModelId or Custom',
    'StartOnlineRecord',
    start({ MixStream: { Enabled: true }, Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.ModelId',
  ],
  [
    'MixStream ModelId 3',
    'StartOnlineRecord',
    start({ MixStream: { Enabled: true, ModelId: 3 }, Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.ModelId',
  ],
  [
    'layout wider than the canvas',
    'StartOnlineRecord',
    start({ MixStream: layout({ Width: 320, Height: 180, X: 321 }), Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList.0.LayoutParams',
  ],
  [
    'layout taller than the canvas',
    'StartOnlineRecord',
    start({ MixStream: layout({ Width: 320, Height: 300, Y: 61 }), Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList.0.LayoutParams',
  ],
  [
    'layout Width below 2',
    'StartOnlineRecord',
    start({ MixStream: layout({ Width: 1, Height: 2 }), Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList.0.LayoutParams.Width',
  ],
  [
    'layout X above 3000',
    'StartOnlineRecord',
    start({ MixStream: layout({ Width: 2, Height: 2, X: 3001 }), Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList.0.LayoutParams.X',
  ],
  [
    'canvas Height above 3000',
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: { Canvas: { LayoutParams: { Width: 2, Height: 3001 } }, InputStreamList: [] },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.Canvas.LayoutParams.Height',
  ],
  [
    'BackgroundColor not #RRGGBB',
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 2, Height: 2 }, BackgroundColor: 'black' },
          InputStreamList: [{ LayoutParams: { Width: 2, Height: 2 } }],
        },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.Canvas.BackgroundColor',
  ],
  [
    'FillMode 2',
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 4, Height: 4 } },
          InputStreamList: [{ LayoutParams: { Width: 2, Height: 2 }, FillMode: 2 }],
        },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList.0.FillMode',
  ],
  [
    `InputStreamList of ${LIMITS.mixInputs + 1} rectangles`,
    'StartOnlineRecord',
    start({
      MixStream: slots(LIMITS.mixInputs + 1, { Width: 16, Height: 16 }),
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList',
  ],
  [
    "the probe's 1,500 full-canvas rectangles on a 3000x3000 canvas",
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 3000, Height: 3000 } },
          InputStreamList: Array.from({ length: 1500 }, () => ({
            LayoutParams: { Width: 3000, Height: 3000 },
          })),
        },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList',
  ],
  [
    'rectangles covering more than 4 canvases (5 full-canvas ones)',
    'StartOnlineRecord',
    start({ MixStream: slots(5, { Width: 640, Height: 360 }), Extras: ['MIX_STREAM'] }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList',
  ],
  [
    'rectangles covering 4 canvases and one pixel row more',
    'StartOnlineRecord',
    start({
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 640, Height: 360 } },
          InputStreamList: [
            ...Array.from({ length: 4 }, () => ({ LayoutParams: { Width: 640, Height: 360 } })),
            { LayoutParams: { Width: 640, Height: 2, Y: 10 } },
          ],
        },
      },
      Extras: ['MIX_STREAM'],
    }),
    'InvalidParameter.RecordParameter',
    'MixStream.Custom.InputStreamList',
  ],
  [
    'Whiteboard Width 1',
    'StartOnlineRecord',
    start({ Whiteboard: { Width: 1 } }),
    'InvalidParameter.RecordParameter',
    'Whiteboard.Width',
  ],
  [
    'Concat without Enabled',
    'StartOnlineRecord',
    start({ Concat: { Image: 'http://x/y.png' } }),
    'MissingParameter',
    'Concat.Enabled',
  ],
  [
    'Concat Image not a URL',
    'StartOnlineRecord',
    start({ Concat: { Enabled: true, Image: 'pad.png' } }),
    'InvalidParameter.RecordParameter',
    'Concat.Image',
  ],
  [
    'Concat Enabled as a string',
    'StartOnlineRecord',
    start({ Concat: { Enabled: 'true' } }),
    'InvalidParameter.BodyParameterTypeUnmatched',
    'Concat.Enabled',
  ],
  [
    'RecordControl StreamId empty',
    'StartOnlineRecord',
    start({ RecordControl: { Enabled: true, StreamControls: [{ StreamId: '' }] } }),
    'InvalidParameter.RecordParameter',
    'RecordControl.StreamControls.0.StreamId',
  ],
  [
    'RecordMode unknown',
    'StartOnlineRecord',
    start({ RecordMode: 'FAST_MODE' }),
    'InvalidParameter.RecordParameter',
    'RecordMode',
  ],
  [
    'TRTCRoomIdStr over 64 bytes',
    'StartOnlineRecord',
    start({ TRTCRoomIdStr: '房'.repeat(22) }),
    'InvalidParameter.RecordParameter',
    'TRTCRoomIdStr',
  ],
  [
    'TRTCRoomId 0',
    'StartOnlineRecord',
    start({ TRTCRoomId: 0 }),
    'InvalidParameter.RecordParameter',
    'TRTCRoomId',
  ],
  [
    'Callback ftp URL',
    'SetOnlineRecordCallback',
    { SdkAppId: 1, Callback: 'ftp://example.com/cb' },
    'InvalidParameter.CallbackAddressFormatError',
    'Callback',
  ],
  [
    'Callback not a URL',
    'SetOnlineRecordCallback',
    { SdkAppId: 1, Callback: 'example.com/cb' },
    'InvalidParameter.CallbackAddressFormatError',
    'Callback',
  ],
  ['Callback missing', 'SetOnlineRecordCallback', { SdkAppId: 1 }, 'MissingParameter', 'Callback'],
  [
    'CallbackKey of 65 characters',
    'SetOnlineRecordCallbackKey',
    { SdkAppId: 1, CallbackKey: 'k'.repeat(65) },
    'InvalidParameter',
    'CallbackKey',
  ],
  [
    'CallbackKey a number',
    'SetOnlineRecordCallbackKey',
    { SdkAppId: 1, CallbackKey: 5 },
    'InvalidParameter.BodyParameterTypeUnmatched',
    'CallbackKey',
  ],
  [
    'SdkAppID spelled SdkAppId',
    'DescribeRunningTasks',
    { SdkAppId: 1, TaskType: 'OnlineRecord' },
    'InvalidParameter.SdkAppIdNotFound',
    'SdkAppID',
  ],
  [
    'TaskType unknown',
    'DescribeRunningTasks',
    { SdkAppID: 1, TaskType: 'Record' },
    'InvalidParameter.InvalidTaskType',
    'TaskType',
  ],
  [
    'Limit 501',
    'DescribeRunningTasks',
    { SdkAppID: 1, TaskType: 'OnlineRecord', Limit: 501 },
    'InvalidParameter',
    'Limit',
  ],
  [
    'State unknown',
    'ExtDescribeCallbacks',
    { SdkAppId: 1, State: 'pending' },
    'InvalidParameter',
    'State',
  ],
  [
    'neither EventIds nor Since',
    'ExtResendCallbacks',
    { SdkAppId: 1 },
    'InvalidParameter',
    'EventIds',
  ],
  [
    'both EventIds and Since',
    'ExtResendCallbacks',
    { SdkAppId: 1, EventIds: ['e'], Since: 5 },
    'InvalidParameter',
    'EventIds',
  ],
  [
    'EventIds empty',
    'ExtResendCallbacks',
    { SdkAppId: 1, EventIds: [] },
    'InvalidParameter',
    'EventIds',
  ],
  [
    'EventId missing',
    'ExtDescribeCallbackAttempts',
    { SdkAppId: 1 },
    'MissingParameter',
    'EventId',
  ],
  [
    'Offset negative',
    'DescribeRunningTasks',
    { SdkAppID: 1, TaskType: 'OnlineRecord', Offset: -1 },
    'InvalidParameter',
    'Offset',
  ],
]

describe('action request schemas', () => {
  test('every action of the spec has a request and a response schema', () => {
    assert.deepEqual(ACTION_NAMES.sort(), Object.keys(valid).sort())
    for (const name of ACTION_NAMES) assert.ok(actions[name].request && actions[name].response)
  })

  for (const [action, inputs] of Object.entries(valid) as [ActionName, unknown[]][]) {
    test(`${action} accepts valid requests`, () => {
      for (const input of inputs) {
        const result = parseActionRequest(action, input)
        assert.ok(result.ok, result.ok ? '' : `${result.error.code}: ${result.error.message}`)
      }
    })
  }

  for (const [description, action, input, code, field] of cases) {
    test(`${action}: ${description} → ${code}`, () => {
      const clean = JSON.parse(JSON.stringify(input)) // drops the undefined fields, as the SDK does
      const result = parseActionRequest(action, clean)
      assert.ok(!result.ok, 'expected a rejection')
      assert.equal(result.error.code, code, result.error.message)
      assert.ok(
        result.error.message.includes(`\`${field}\``),
        `${result.error.message} should name ${field}`,
      )
      assert.ok(Object.hasOwn(ERROR_CODES, result.error.code))
    })
  }

  test('a non-object body is InvalidParameter', () => {
    for (const body of [null, [], 'x', 5]) {
      const result = parseActionRequest('StopOnlineRecord', body)
      assert.ok(!result.ok)
      assert.equal(result.error.code, 'InvalidParameter')
    }
  })

  test('a deployment may lower the AutoStopTimeout floor', () => {
    const schema = startOnlineRecordRequestSchema({ autoStopTimeoutMin: 5 })
    assert.ok(parseActionRequest('StartOnlineRecord', start({ AutoStopTimeout: 5 }), schema).ok)
    assert.equal(parseActionRequest('StartOnlineRecord', start({ AutoStopTimeout: 5 })).ok, false)
  })
})
