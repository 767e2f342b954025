// The API over real HTTP, driven by the official tencentcloud-sdk-nodejs client
// and by hand-made requests for what the client cannot send.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { LIMITS, signV1 } from '@online-record/protocol'
import fc from 'fast-check'
import tencentcloud from 'tencentcloud-sdk-nodejs'
import { genUserSig } from '../apps/usersig.ts'
import { ManualClock } from '../clock.ts'
import { loadConfig } from '../config.ts'
import { type Service, startService } from '../service.ts'
import { apiTestClient } from './test-api.ts'

const APP = {
  sdkAppId: 1400000001,
  secretId: 'AKIDapitest000000000001',
  secretKey: 'api-test-secret-key-0000000000001',
  userSigKey: 'f'.repeat(64),
}
const LIMITED = {
  sdkAppId: 1400000003,
  secretId: 'AKIDapitest000000000003',
  secretKey: 'api-test-secret-key-0000000000003',
  userSigKey: 'd'.repeat(64),
  maxConcurrentTasks: 1,
}
/** An app whose task limit is raised to 1,000, on the default rate limit. */
const BURST = {
  sdkAppId: 1400000004,
  secretId: 'AKIDapitest000000000004',
  secretKey: 'api-test-secret-key-0000000000004',
  userSigKey: 'c'.repeat(64),
  maxConcurrentTasks: 1000,
}
const OTHER = {
  sdkAppId: 1400000002,
  secretId: 'AKIDapitest000000000002',
  secretKey: 'api-test-secret-key-0000000000002',
  userSigKey: 'e'.repeat(64),
}

describe('TIW API over HTTP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-api-'))
  const clock = new ManualClock(Date.now())
  let service: Service
  let endpoint = ''

  before(async () => {
    delete process.env.http_proxy
    delete process.env.HTTP_PROXY
    const config = loadConfig({
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_DATA_DIR: dir,
      ONLINE_RECORD_APPS: JSON.stringify([APP, OTHER, LIMITED]),
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_TIMER_INTERVAL_MS: '60000',
    })
    service = await startService(config, { clock, log: () => {} })
    endpoint = service.url.replace('http://', '')
  })
  after(async () => {
    await service.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const client = (
    credentials = APP,
    signMethod: 'TC3-HMAC-SHA256' | 'HmacSHA256' | 'HmacSHA1' = 'TC3-HMAC-SHA256',
    reqMethod: 'POST' | 'GET' = 'POST',
  ) =>
    new tencentcloud.tiw.v20190919.Client({
      credential: { secretId: credentials.secretId, secretKey: credentials.secretKey },
      profile: { signMethod, httpProfile: { endpoint, protocol: 'http://', reqMethod } },
    })
  let room = 5000
  const startRequest = (patch: Record<string, unknown> = {}) => {
    const roomId = ++room
    const user = `tic_record_user_${roomId}_api`
    return {
      SdkAppId: APP.sdkAppId,
      RoomId: roomId,
      RecordUserId: user,
      RecordUserSig: genUserSig(APP.sdkAppId, APP.userSigKey, user, 86_400, clock.now()),
      ...patch,
    }
  }
  /** Describes the task until post-processing has finished it (or says why not, after 30 s). */
  const finished = async (
    tiw: ReturnType<typeof client>,
    taskId: string,
    sdkAppId = APP.sdkAppId,
  ) => {
    const deadline = Date.now() + 30_000
    for (;;) {
      const d = await tiw.DescribeOnlineRecord({ SdkAppId: sdkAppId, TaskId: taskId })
      if (d.Status === 'FINISHED') return d
      if (Date.now() > deadline) {
        const job = await service.db.query('select * from post_jobs where task_id = $1', [taskId])
        throw new Error(`task ${taskId} is ${d.Status}; its job: ${JSON.stringify(job)}`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  /** Waits for the next second of the real clock, which the official client signs with. */
  const nextSecond = () => new Promise((r) => setTimeout(r, 1001 - (Date.now() % 1000)))
  const sdkError = async (p: Promise<unknown>) => {
    try {
      await p
    } catch (error) {
      const e = error as { code?: string; requestId?: string; message: string }
      return e.code ?? `no code: ${e.message}`
    }
    return 'no error'
  }

  for (const [signMethod, reqMethod] of [
    ['TC3-HMAC-SHA256', 'POST'],
    ['TC3-HMAC-SHA256', 'GET'],
    ['HmacSHA256', 'POST'],
    ['HmacSHA1', 'GET'],
  ] as const) {
    test(`the official client runs a task through its life (${signMethod} over ${reqMethod})`, async () => {
      const tiw = client(APP, signMethod, reqMethod)
      const url = `http://127.0.0.1:9/${signMethod}/${reqMethod}`
      await tiw.SetOnlineRecordCallback({ SdkAppId: APP.sdkAppId, Callback: url })
      await tiw.SetOnlineRecordCallbackKey({ SdkAppId: APP.sdkAppId, CallbackKey: 'key-1' })
      const described = await tiw.DescribeOnlineRecordCallback({ SdkAppId: APP.sdkAppId })
      assert.deepEqual([described.Callback, described.CallbackKey], [url, 'key-1'])
      const { TaskId, RequestId } = await tiw.StartOnlineRecord(
        startRequest({
          Concat: { Enabled: true },
          Whiteboard: { Width: 1280, Height: 720 },
          AutoStopTimeout: 600,
          Extras: ['MIX_STREAM'],
          MixStream: { Enabled: true, ModelId: 1 },
        }),
      )
      assert.match(String(TaskId), /^[a-z0-9]{20}$/)
      assert.match(String(RequestId), /^[0-9a-f-]{36}$/)
      assert.equal(
        (await tiw.DescribeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string }))
          .Status,
        'RECORDING',
      )
      await tiw.PauseOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })
      assert.equal(
        await sdkError(tiw.PauseOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })),
        'UnsupportedOperation.InvalidTaskStatus',
      )
      // Another change of the same body in the same second shares the
      // signature (X-TC-Action is not signed) and would be refused as a
      // replay; the official client signs with its own (real) clock.
      await nextSecond()
      await tiw.ResumeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })
      const running = await tiw.DescribeRunningTasks({
        SdkAppID: APP.sdkAppId,
        TaskType: 'OnlineRecord',
      })
      assert.ok(running.Tasks?.some((t) => t.TaskID === TaskId))
      // Other task types (TIW's transcoding and pushes) are not run here.
      const transcodes = await tiw.DescribeRunningTasks({
        SdkAppID: APP.sdkAppId,
        TaskType: 'TranscodeH5',
      })
      assert.deepEqual([transcodes.Total, transcodes.Tasks], [0, []])
      await nextSecond()
      await tiw.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })
      // Stop answers once the task is STOPPED; the worker pool finishes it.
      const done = await finished(tiw, TaskId as string)
      assert.deepEqual([done.Status, done.FinishReason], ['FINISHED', 'USER_CALL'])
      assert.equal(
        await sdkError(tiw.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })),
        'UnsupportedOperation.TaskHasAlreadyStopped',
      )
    })
  }

  test('the official client: Resume refused (the task records), then Pause of the same task in the same second is applied', async () => {
    const tiw = client(APP)
    const { TaskId } = await tiw.StartOnlineRecord(startRequest())
    const ids = { SdkAppId: APP.sdkAppId, TaskId: TaskId as string }
    // Both in one second of the client's clock: the same body signs the same.
    await nextSecond()
    assert.equal(
      await sdkError(tiw.ResumeOnlineRecord(ids)),
      'UnsupportedOperation.InvalidTaskStatus',
    )
    await tiw.PauseOnlineRecord(ids)
    assert.equal((await tiw.DescribeOnlineRecord(ids)).Status, 'PAUSED')
    await nextSecond()
    await tiw.StopOnlineRecord(ids)
    await finished(tiw, TaskId as string)
  })

  test('mixing and recording-mode refusals through the official client: each its code, nothing started', async () => {
    const tiw = client(OTHER)
    const request = (patch: Record<string, unknown>) => {
      const r = startRequest(patch)
      const sig = genUserSig(OTHER.sdkAppId, OTHER.userSigKey, r.RecordUserId, 600, clock.now())
      return { ...r, SdkAppId: OTHER.sdkAppId, RecordUserSig: sig }
    }
    const start = (patch: Record<string, unknown>) =>
      sdkError(tiw.StartOnlineRecord(request(patch)))
    const custom = (list: unknown[], canvas: Record<string, unknown> = {}) => ({
      Enabled: true,
      Custom: {
        Canvas: { LayoutParams: { Width: 640, Height: 360 }, ...canvas },
        InputStreamList: list,
      },
    })
    const cases: [string, Record<string, unknown>, string][] = [
      [
        'ModelId 3',
        { MixStream: { Enabled: true, ModelId: 3 }, Extras: ['MIX_STREAM'] },
        'RecordParameter',
      ],
      ['no Extras', { MixStream: { Enabled: true, ModelId: 2 } }, 'RecordParameter'],
      [
        'Extras unknown',
        { MixStream: { Enabled: true, ModelId: 2 }, Extras: ['MIX'] },
        'InvalidExtra',
      ],
      [
        'rectangle outside the canvas',
        {
          MixStream: custom([{ LayoutParams: { Width: 320, Height: 200, Y: 200 } }]),
          Extras: ['MIX_STREAM'],
        },
        'RecordParameter',
      ],
      [
        'canvas of 3001',
        {
          MixStream: custom([{ LayoutParams: { Width: 2, Height: 2 } }], {
            LayoutParams: { Width: 3001, Height: 360 },
          }),
          Extras: ['MIX_STREAM'],
        },
        'RecordParameter',
      ],
      [
        'colour not #RRGGBB',
        {
          MixStream: custom([{ LayoutParams: { Width: 2, Height: 2 }, BackgroundColor: '#12345' }]),
          Extras: ['MIX_STREAM'],
        },
        'RecordParameter',
      ],
      ['VIDEO_GENERATION_MODE', { RecordMode: 'VIDEO_GENERATION_MODE' }, 'RecordParameter'],
      [
        `${LIMITS.mixInputs + 1} rectangles`,
        {
          MixStream: custom(
            Array.from({ length: LIMITS.mixInputs + 1 }, () => ({
              LayoutParams: { Width: 16, Height: 16 },
            })),
          ),
          Extras: ['MIX_STREAM'],
        },
        'RecordParameter',
      ],
      [
        'rectangles covering 5 canvases',
        {
          MixStream: custom(
            Array.from({ length: 5 }, () => ({ LayoutParams: { Width: 640, Height: 360 } })),
          ),
          Extras: ['MIX_STREAM'],
        },
        'RecordParameter',
      ],
    ]
    for (const [what, patch, code] of cases) {
      assert.equal(await start(patch), `InvalidParameter.${code}`, what)
    }
    // The probe's layout (1,500 full-canvas 3000x3000 rectangles): refused, naming the list.
    const probe = await tiw
      .StartOnlineRecord(
        request({
          MixStream: custom(
            Array.from({ length: 1500 }, () => ({ LayoutParams: { Width: 3000, Height: 3000 } })),
            { LayoutParams: { Width: 3000, Height: 3000 } },
          ),
          Extras: ['MIX_STREAM'],
        }),
      )
      .then(
        () => undefined,
        (e: { code?: string; message: string }) => e,
      )
    assert.equal(probe?.code, 'InvalidParameter.RecordParameter')
    assert.match(
      probe?.message ?? '',
      new RegExp(`\`MixStream\\.Custom\\.InputStreamList\`.*at most ${LIMITS.mixInputs}`),
    )
    const running = () =>
      tiw.DescribeRunningTasks({ SdkAppID: OTHER.sdkAppId, TaskType: 'OnlineRecord' })
    assert.equal((await running()).Total, 0)
    // The same request made valid starts (Extras spelt as Tencent's CLI example does).
    const { TaskId } = await tiw.StartOnlineRecord(
      request({ MixStream: { Enabled: true, ModelId: 2 }, Extras: ['MixStream'] }),
    )
    assert.equal((await running()).Total, 1)
    await tiw.StopOnlineRecord({ SdkAppId: OTHER.sdkAppId, TaskId: TaskId as string })
    await finished(tiw, TaskId as string, OTHER.sdkAppId)
  })

  test('errors reach the official client with their codes', async () => {
    const tiw = client()
    assert.equal(
      await sdkError(
        client({ ...APP, secretId: 'AKIDnobody' }).DescribeOnlineRecordCallback({
          SdkAppId: APP.sdkAppId,
        }),
      ),
      'AuthFailure.SecretIdNotFound',
    )
    assert.equal(
      await sdkError(
        client({ ...APP, secretKey: 'wrong' }).DescribeOnlineRecordCallback({
          SdkAppId: APP.sdkAppId,
        }),
      ),
      'AuthFailure.SignatureFailure',
    )
    assert.equal(
      await sdkError(tiw.DescribeOnlineRecordCallback({ SdkAppId: OTHER.sdkAppId })),
      'UnauthorizedOperation.SdkAppId',
    )
    assert.equal(
      await sdkError(
        tiw.DescribeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' }),
      ),
      'InvalidParameter.TaskNotFound',
    )
    assert.equal(
      await sdkError(tiw.StartOnlineRecord(startRequest({ RoomId: '12' as unknown as number }))),
      'InvalidParameter.BodyParameterTypeUnmatched',
    )
    assert.equal(
      await sdkError(tiw.StartOnlineRecord(startRequest({ Extras: ['MIX-STREAM'] }))),
      'InvalidParameter.InvalidExtra',
    )
    assert.equal(
      await sdkError(tiw.StartOnlineRecord(startRequest({ AutoStopTimeout: 10 }))),
      'InvalidParameter.RecordParameter',
    )
    assert.equal(
      await sdkError(tiw.SetOnlineRecordCallback({ SdkAppId: APP.sdkAppId, Callback: 'ftp://x' })),
      'InvalidParameter.CallbackAddressFormatError',
    )
    const first = startRequest()
    const { TaskId: running } = await tiw.StartOnlineRecord(first)
    // The RecordUserId names its room, so it can only be in use in the same room.
    assert.equal(await sdkError(tiw.StartOnlineRecord({ ...first })), 'ResourceInUse.RecordUserId')
    const sameRoom = startRequest({
      RoomId: first.RoomId,
      RecordUserId: `tic_record_user_${first.RoomId}_b`,
    })
    sameRoom.RecordUserSig = genUserSig(
      APP.sdkAppId,
      APP.userSigKey,
      sameRoom.RecordUserId as string,
      86_400,
      clock.now(),
    )
    assert.equal(await sdkError(tiw.StartOnlineRecord(sameRoom)), 'ResourceInUse')
    await tiw.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: running as string })
    const limited = client(LIMITED)
    const limitedRequest = () => {
      const r = startRequest({ SdkAppId: LIMITED.sdkAppId })
      r.RecordUserSig = genUserSig(
        LIMITED.sdkAppId,
        LIMITED.userSigKey,
        r.RecordUserId as string,
        86_400,
        clock.now(),
      )
      return r
    }
    await limited.StartOnlineRecord(limitedRequest())
    assert.equal(
      await sdkError(limited.StartOnlineRecord(limitedRequest())),
      'LimitExceeded.TaskConcurrency',
    )
    // A task of another app does not exist for this one.
    const { TaskId } = await client(OTHER).StartOnlineRecord({
      ...startRequest(),
      SdkAppId: OTHER.sdkAppId,
      RecordUserSig: 'bad',
    })
    assert.equal(
      await sdkError(
        tiw.DescribeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string }),
      ),
      'InvalidParameter.TaskNotFound',
    )
    assert.equal(
      await sdkError(
        client(OTHER).DescribeOnlineRecord({ SdkAppId: OTHER.sdkAppId, TaskId: TaskId as string }),
      ),
      'FailedOperation.Record',
    )
  })

  const api = () => apiTestClient(service.url, clock, APP)
  const raw: ReturnType<typeof api>['raw'] = (...args) => api().raw(...args)
  const signedHeaders: ReturnType<typeof api>['signedHeaders'] = (...args) =>
    api().signedHeaders(...args)
  const errorCode: ReturnType<typeof api>['errorCode'] = (r) => api().errorCode(r)

  test('protocol errors: HTTP 200 with the right code, and the trace id echoed', async () => {
    const body = JSON.stringify({ SdkAppId: APP.sdkAppId })
    const ok = await raw(body, signedHeaders(body, { 'x-tc-traceid': 'trace-42' }))
    assert.equal(errorCode(ok), undefined)
    assert.equal(ok.headers.get('x-tc-traceid'), 'trace-42')
    assert.equal(
      errorCode(await raw(body, signedHeaders(body, { 'x-tc-action': 'StartTranscode' }))),
      'InvalidAction',
    )
    assert.equal(
      errorCode(await raw(body, signedHeaders(body, { 'x-tc-version': '2020-01-01' }))),
      'NoSuchVersion',
    )
    assert.equal(
      errorCode(await raw(body, { 'content-type': 'application/json' })),
      'AuthFailure.InvalidAuthorization',
    )
    assert.equal(
      errorCode(
        await raw(body, signedHeaders(body, { authorization: 'TC3-HMAC-SHA256 Credential=x' })),
      ),
      'AuthFailure.InvalidAuthorization',
    )
    assert.equal(
      errorCode(await raw(body, signedHeaders(body, {}, Math.floor(clock.now() / 1000) - 301))),
      'AuthFailure.SignatureExpire',
    )
    assert.equal(
      errorCode(await raw(`${body} `, signedHeaders(body))),
      'AuthFailure.SignatureFailure',
    )
    const notJson = '{"SdkAppId":'
    assert.equal(
      errorCode(await raw(notJson, signedHeaders(notJson))),
      'InvalidParameter.UnmarshalJSONBodyFail',
    )
    const big = JSON.stringify({
      SdkAppId: APP.sdkAppId,
      Callback: `http://x/${'a'.repeat(1024 * 1024)}`,
    })
    assert.equal(errorCode(await raw(big, signedHeaders(big))), 'RequestSizeLimitExceeded')
    assert.equal(errorCode(await raw('', {}, 'DELETE')), 'UnsupportedProtocol')
  })

  test("an app's token bucket: its burst passes at once, then its rate a second; 0 turns it off", async () => {
    const body = JSON.stringify({ SdkAppId: OTHER.sdkAppId })
    const sign = () => signedHeaders(body, {}, Math.floor(clock.now() / 1000), OTHER)
    const burst = async (n: number) => {
      const codes = []
      for (let i = 0; i < n; i++) codes.push(errorCode(await raw(body, sign())))
      return codes
    }
    clock.set(Math.ceil(clock.now() / 1000) * 1000 + 1000) // the start of a second, frozen
    // The default (200 a second, 500 at once): 500 pass, the 501st does not.
    const first = await burst(501)
    assert.deepEqual(first.slice(0, 500), Array(500).fill(undefined))
    assert.equal(first[500], 'RequestLimitExceeded')
    clock.advance(100) // 20 tokens back
    assert.deepEqual(await burst(21), [...Array(20).fill(undefined), 'RequestLimitExceeded'])
    // Set for the app by the operator: 5 a second, 10 at once.
    await service.apps.update(OTHER.sdkAppId, { rateLimit: 5, rateBurst: 10 })
    clock.advance(10_000)
    assert.deepEqual(await burst(11), [...Array(10).fill(undefined), 'RequestLimitExceeded'])
    clock.advance(1000)
    assert.deepEqual(await burst(6), [...Array(5).fill(undefined), 'RequestLimitExceeded'])
    // Another app is not touched by this one's empty bucket.
    const mine = JSON.stringify({ SdkAppId: APP.sdkAppId })
    assert.equal(errorCode(await raw(mine, signedHeaders(mine))), undefined)
    await service.apps.update(OTHER.sdkAppId, { rateLimit: 0 })
    assert.deepEqual(await burst(3), Array(3).fill(undefined))
    await service.apps.update(OTHER.sdkAppId, { rateLimit: null, rateBurst: null })
  })

  test('300 classes starting in the same second all start, on the default limit', async () => {
    await service.apps.upsert({ ...BURST })
    const tiw = apiTestClient(service.url, clock, BURST)
    clock.set(Math.ceil(clock.now() / 1000) * 1000 + 1000) // one second, frozen
    const starts = Array.from({ length: 300 }, (_, i) => {
      const user = `tic_record_user_${90_000 + i}_burst`
      const body = JSON.stringify({
        SdkAppId: BURST.sdkAppId,
        RoomId: 90_000 + i,
        RecordUserId: user,
        RecordUserSig: genUserSig(BURST.sdkAppId, BURST.userSigKey, user, 86_400, clock.now()),
      })
      return tiw.raw(body, tiw.signedHeaders(body, { 'x-tc-action': 'StartOnlineRecord' }))
    })
    const codes = new Map<string, number>()
    for (const r of await Promise.all(starts)) {
      const code = tiw.errorCode(r) ?? 'ok'
      codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    assert.deepEqual([...codes], [['ok', 300]])
    const running = await service.db.query<{ n: number }>(
      "select count(*)::int as n from tasks where sdk_app_id = $1 and status <> 'FINISHED'",
      [BURST.sdkAppId],
    )
    assert.equal(running[0]?.n, 300)
  })

  test('v1 form-encoded POST works as the SDK sends it', async () => {
    const params: Record<string, string> = {
      SdkAppId: String(APP.sdkAppId),
      Action: 'DescribeOnlineRecordCallback',
      Version: '2019-09-19',
      Timestamp: String(Math.floor(clock.now() / 1000)),
      Nonce: '1',
      SecretId: APP.secretId,
      SignatureMethod: 'HmacSHA256',
    }
    params.Signature = signV1(params, APP.secretKey, 'POST', endpoint)
    const r = await raw(new URLSearchParams(params).toString(), {
      'content-type': 'application/x-www-form-urlencoded',
    })
    assert.equal(errorCode(r), undefined)
  })

  test('signed, mutated bodies of every action get an envelope with HTTP 200', async () => {
    const valid: Record<string, Record<string, unknown>> = {
      StartOnlineRecord: startRequest(),
      StopOnlineRecord: { SdkAppId: APP.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' },
      PauseOnlineRecord: { SdkAppId: APP.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' },
      ResumeOnlineRecord: { SdkAppId: APP.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' },
      DescribeOnlineRecord: { SdkAppId: APP.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' },
      SetOnlineRecordCallback: { SdkAppId: APP.sdkAppId, Callback: 'https://example.com/cb' },
      SetOnlineRecordCallbackKey: { SdkAppId: APP.sdkAppId, CallbackKey: 'k' },
      DescribeOnlineRecordCallback: { SdkAppId: APP.sdkAppId },
      DescribeRunningTasks: { SdkAppID: APP.sdkAppId, TaskType: 'OnlineRecord' },
      ExtDescribeCallbacks: { SdkAppId: APP.sdkAppId, State: 'FAILED', Since: 0, Limit: 10 },
      ExtDescribeCallbackAttempts: { SdkAppId: APP.sdkAppId, EventId: 'evt_x' },
      ExtResendCallbacks: { SdkAppId: APP.sdkAppId, EventIds: ['evt_x'] },
    }
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('drop' as const), at: fc.nat() }),
      fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.jsonValue() }),
      fc.record({
        op: fc.constant('add' as const),
        key: fc.string({ maxLength: 20 }),
        value: fc.jsonValue(),
      }),
      fc.record({ op: fc.constant('raw' as const), text: fc.string({ maxLength: 100 }) }),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...Object.keys(valid)),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        async (action, mutations) => {
          const object: Record<string, unknown> = { ...valid[action] }
          let text: string | undefined
          for (const m of mutations) {
            const keys = Object.keys(object)
            if (m.op === 'drop' && keys.length > 0)
              delete object[keys[m.at % keys.length] as string]
            if (m.op === 'set' && keys.length > 0)
              object[keys[m.at % keys.length] as string] = m.value
            if (m.op === 'add') object[m.key] = m.value
            if (m.op === 'raw') text = m.text
          }
          const body = text ?? JSON.stringify(object)
          clock.advance(60) // stays within one rate-limit window only briefly
          const r = await raw(body, signedHeaders(body, { 'x-tc-action': action }))
          assert.equal(r.status, 200)
          assert.ok(r.json.Response.RequestId)
        },
      ),
      { numRuns: 300 },
    )
  })

  test('callback extension actions: an app sees only its own events; bad input changes nothing', async () => {
    const tiw = client(APP)
    const { TaskId } = await tiw.StartOnlineRecord(startRequest())
    await tiw.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })
    await finished(tiw, TaskId as string)
    const mine = (await tiw.request('ExtDescribeCallbacks', {
      SdkAppId: APP.sdkAppId,
      TaskId,
    })) as { Total: number; Events: { EventId: string; Seq: number; EventType: string }[] }
    assert.deepEqual(
      mine.Events.map((e) => [e.Seq, e.EventType]),
      [
        [3, 'OnlineRecordFinished'],
        [2, 'OnlineRecordStopped'],
        [1, 'OnlineRecordStarted'],
      ],
    )
    const id = mine.Events[0]?.EventId as string
    const other = client(OTHER)
    assert.equal(
      (
        (await other.request('ExtDescribeCallbacks', { SdkAppId: OTHER.sdkAppId, TaskId })) as {
          Total: number
        }
      ).Total,
      0,
    )
    for (const [action, params] of [
      ['ExtDescribeCallbackAttempts', { EventId: id }],
      ['ExtResendCallbacks', { EventIds: [id] }],
    ] as const) {
      assert.equal(
        await sdkError(other.request(action, { SdkAppId: OTHER.sdkAppId, ...params })),
        'ResourceNotFound',
      )
    }
    // Another app's SdkAppId with these credentials is refused as for TIW's actions.
    assert.equal(
      await sdkError(tiw.request('ExtDescribeCallbacks', { SdkAppId: OTHER.sdkAppId })),
      'UnauthorizedOperation.SdkAppId',
    )
    const before = (await tiw.request('ExtDescribeCallbackAttempts', {
      SdkAppId: APP.sdkAppId,
      EventId: id,
    })) as { Event: { State: string; NextAttemptTimeMs: number } }
    assert.equal(
      await sdkError(
        tiw.request('ExtResendCallbacks', { SdkAppId: APP.sdkAppId, EventIds: [id, 'evt_none'] }),
      ),
      'ResourceNotFound',
    )
    assert.equal(
      await sdkError(tiw.request('ExtResendCallbacks', { SdkAppId: APP.sdkAppId, Since: -1 })),
      'InvalidParameter',
    )
    const after = (await tiw.request('ExtDescribeCallbackAttempts', {
      SdkAppId: APP.sdkAppId,
      EventId: id,
    })) as { Event: unknown }
    assert.deepEqual(after.Event, before.Event, 'refused resends changed nothing')
  })

  test('malformed requests never get a 5xx and never stop the server', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 200 }),
        fc.dictionary(
          fc.constantFrom(
            'authorization',
            'x-tc-action',
            'x-tc-version',
            'x-tc-timestamp',
            'content-type',
          ),
          fc.string({ maxLength: 80 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
        ),
        fc.constantFrom('POST', 'GET'),
        async (body, headers, method) => {
          const r = await raw(
            body,
            headers,
            method,
            method === 'GET' ? `/?${encodeURIComponent(body)}=1` : '/',
          )
          assert.ok(r.json.Response.Error?.Code, JSON.stringify(r.json))
        },
      ),
      { numRuns: 150 },
    )
    const body = JSON.stringify({ SdkAppId: APP.sdkAppId })
    assert.equal(errorCode(await raw(body, signedHeaders(body))), undefined)
  })
})

describe('TIW API with private callback targets blocked', () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-api-private-'))
  let service: Service
  before(async () => {
    const config = loadConfig({
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_DATA_DIR: dir,
      ONLINE_RECORD_APPS: JSON.stringify([APP]),
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_CALLBACK_BLOCK_PRIVATE: 'true',
    })
    service = await startService(config, { log: () => {} })
  })
  after(async () => {
    await service.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('SetOnlineRecordCallback refuses loopback and private addresses, and keeps the old URL', async () => {
    const tiw = new tencentcloud.tiw.v20190919.Client({
      credential: { secretId: APP.secretId, secretKey: APP.secretKey },
      profile: {
        httpProfile: { endpoint: service.url.replace('http://', ''), protocol: 'http://' },
      },
    })
    await tiw.SetOnlineRecordCallback({
      SdkAppId: APP.sdkAppId,
      Callback: 'https://example.com/cb',
    })
    for (const url of [
      'http://127.0.0.1:8080/cb',
      'http://localhost/cb',
      'http://10.0.0.8/cb',
      'http://[::1]/cb',
      'http://169.254.169.254/latest',
    ]) {
      await assert.rejects(
        tiw.SetOnlineRecordCallback({ SdkAppId: APP.sdkAppId, Callback: url }),
        (e: { code?: string; message?: string }) =>
          e.code === 'InvalidParameter.CallbackAddressFormatError' &&
          /loopback or private/.test(e.message ?? ''),
        url,
      )
    }
    const { Callback } = await tiw.DescribeOnlineRecordCallback({ SdkAppId: APP.sdkAppId })
    assert.equal(Callback, 'https://example.com/cb')
  })
})
