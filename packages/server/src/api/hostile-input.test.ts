// Hostile input through the real server over HTTP: keys that would reach
// Object.prototype, NUL and lone surrogates, deep nesting, oversized heads,
// deflate bombs in UserSigs, and a signature replayed under another action.
// After each case the prototype is intact and another app is served normally.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { deflateSync } from 'node:zlib'
import { ACTION_NAMES, signV1 } from '@online-record/protocol'
import fc from 'fast-check'
import { genUserSig } from '../apps/usersig.ts'
import { ManualClock } from '../clock.ts'
import { loadConfig } from '../config.ts'
import { type Service, startService } from '../service.ts'
import { apiTestClient, type Credentials } from './test-api.ts'

const A = {
  sdkAppId: 1400000011,
  secretId: 'AKIDhostile00000000000011',
  secretKey: 'hostile-test-secret-key-00000011',
  userSigKey: 'a'.repeat(64),
}
const B = {
  sdkAppId: 1400000012,
  secretId: 'AKIDhostile00000000000012',
  secretKey: 'hostile-test-secret-key-00000012',
  userSigKey: 'b'.repeat(64),
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join()

describe('hostile input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-hostile-'))
  const clock = new ManualClock(Date.now())
  const pristine = prototypeKeys()
  let service: Service
  let api: ReturnType<typeof apiTestClient>
  let room = 7000

  before(async () => {
    delete process.env.http_proxy
    delete process.env.HTTP_PROXY
    const config = loadConfig({
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_DATA_DIR: dir,
      ONLINE_RECORD_APPS: JSON.stringify([A, B]),
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_TIMER_INTERVAL_MS: '60000',
      ONLINE_RECORD_RATE_LIMIT: '100000',
    })
    service = await startService(config, { clock, log: () => {} })
    api = apiTestClient(service.url, clock, A)
  })
  after(async () => {
    await service.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A signed GET with `query` (already encoded) of `action` by `app`. */
  const get = (query: string, action: string, app: Credentials = A) =>
    api.raw(
      '',
      api.signedHeaders('', { 'x-tc-action': action }, undefined, app, { query }),
      'GET',
      `/?${query}`,
    )
  const post = (body: unknown, action: string, app: Credentials = A) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    return api.raw(text, api.signedHeaders(text, { 'x-tc-action': action }, undefined, app))
  }
  /** The other app is served as usual, and nothing reached Object.prototype. */
  const unaffected = async () => {
    assert.equal(prototypeKeys(), pristine, 'Object.prototype is unchanged')
    assert.equal(({} as Record<string, unknown>).pwned, undefined)
    const r = await post({ SdkAppId: B.sdkAppId }, 'DescribeOnlineRecordCallback', B)
    assert.equal(api.errorCode(r), undefined, JSON.stringify(r.json))
  }
  const startRequest = (patch: Record<string, unknown> = {}) => {
    const roomId = ++room
    const user = `tic_record_user_${roomId}_h`
    return {
      SdkAppId: A.sdkAppId,
      RoomId: roomId,
      RecordUserId: user,
      RecordUserSig: genUserSig(A.sdkAppId, A.userSigKey, user, 86_400, clock.now()),
      ...patch,
    }
  }

  test('flattened keys cannot reach Object.prototype (GET, v1 form)', async () => {
    for (const key of ['__proto__.pwned', 'constructor.prototype.pwned', 'prototype.pwned']) {
      const r = await get(
        `SdkAppId=${A.sdkAppId}&${encodeURIComponent(key)}=1`,
        'DescribeOnlineRecordCallback',
      )
      assert.equal(api.errorCode(r), 'UnknownParameter', key)
      await unaffected()
    }
    // The pad image of another app's task is not the attacker's URL.
    const image = `__proto__.Image=${encodeURIComponent('http://attacker.example/pad.png')}`
    assert.equal(
      api.errorCode(await get(`SdkAppId=${A.sdkAppId}&${image}`, 'DescribeOnlineRecordCallback')),
      'UnknownParameter',
    )
    assert.equal(({} as Record<string, unknown>).Image, undefined)
    // v1: every parameter travels in the form, signature included.
    const params: Record<string, string> = {
      SdkAppId: String(A.sdkAppId),
      Action: 'DescribeOnlineRecordCallback',
      Version: '2019-09-19',
      Timestamp: String(Math.floor(clock.now() / 1000)),
      Nonce: '7',
      SecretId: A.secretId,
      SignatureMethod: 'HmacSHA256',
      '__proto__.pwned': '1',
    }
    params.Signature = signV1(params, A.secretKey, 'POST', api.endpoint)
    const v1 = await api.raw(new URLSearchParams(params).toString(), {
      'content-type': 'application/x-www-form-urlencoded',
    })
    assert.equal(api.errorCode(v1), 'UnknownParameter')
    await unaffected()
    // JSON: an own "__proto__" key is an unknown parameter like any other.
    assert.equal(
      api.errorCode(
        await post(
          `{"SdkAppId":${A.sdkAppId},"__proto__":{"pwned":1}}`,
          'DescribeOnlineRecordCallback',
        ),
      ),
      'UnknownParameter',
    )
    await unaffected()
  })

  test('deep nesting gets a parameter error, not a stack overflow', async () => {
    const deep = Array.from({ length: 5000 }, () => 'a').join('.')
    assert.equal(
      api.errorCode(await get(`SdkAppId=${A.sdkAppId}&${deep}=1`, 'DescribeOnlineRecordCallback')),
      'InvalidParameter',
    )
    const nested = `{"SdkAppId":${A.sdkAppId},"Callback":${'['.repeat(5000)}${']'.repeat(5000)}}`
    assert.equal(api.errorCode(await post(nested, 'SetOnlineRecordCallback')), 'InvalidParameter')
    await unaffected()
  })

  test('NUL and lone surrogates get their parameter error and change nothing', async () => {
    const described = async () =>
      (await post({ SdkAppId: A.sdkAppId }, 'DescribeOnlineRecordCallback')).json.Response
    const callbackBefore = await described()
    const cases: [string, Record<string, unknown>, string][] = [
      ['StopOnlineRecord', { SdkAppId: A.sdkAppId, TaskId: 'a\u0000b' }, 'InvalidParameter'],
      ['DescribeOnlineRecord', { SdkAppId: A.sdkAppId, TaskId: '\ud800' }, 'InvalidParameter'],
      [
        'StartOnlineRecord',
        startRequest({ GroupId: 'g\u0000' }),
        'InvalidParameter.RecordParameter',
      ],
      [
        'StartOnlineRecord',
        startRequest({ RecordUserSig: 'x\u0000' }),
        'InvalidParameter.RecordParameter',
      ],
      [
        'StartOnlineRecord',
        startRequest({ ExtraData: '\udc00x' }),
        'InvalidParameter.RecordParameter',
      ],
      [
        'SetOnlineRecordCallbackKey',
        { SdkAppId: A.sdkAppId, CallbackKey: 'k\u0000' },
        'InvalidParameter',
      ],
      [
        'SetOnlineRecordCallback',
        { SdkAppId: A.sdkAppId, Callback: 'http://example.com/\u0000' },
        'InvalidParameter.CallbackAddressFormatError',
      ],
      [
        'ExtDescribeCallbackAttempts',
        { SdkAppId: A.sdkAppId, EventId: 'evt_\u0000' },
        'InvalidParameter',
      ],
    ]
    for (const [action, body, code] of cases) {
      const r = await post(body, action)
      assert.equal(api.errorCode(r), code, `${action} ${JSON.stringify(body)}`)
    }
    // A key with NUL, and a SecretId with NUL on the v1 path.
    assert.equal(
      api.errorCode(
        await post(`{"SdkAppId":${A.sdkAppId},"Task\\u0000Id":"x"}`, 'DescribeOnlineRecord'),
      ),
      'UnknownParameter',
    )
    const v1 = await api.raw(
      `Action=DescribeOnlineRecordCallback&Version=2019-09-19&SecretId=AKID%00x&Signature=x&Timestamp=${Math.floor(clock.now() / 1000)}`,
      { 'content-type': 'application/x-www-form-urlencoded' },
    )
    assert.equal(api.errorCode(v1), 'AuthFailure.SecretIdNotFound')
    assert.deepEqual(
      { ...(await described()), RequestId: '' },
      { ...callbackBefore, RequestId: '' },
    )
    const running = await post(
      { SdkAppID: A.sdkAppId, TaskType: 'OnlineRecord' },
      'DescribeRunningTasks',
    )
    assert.equal(running.json.Response.Total, 0, 'no task was started')
    await unaffected()
  })

  test('a request head over 16 KB gets the envelope', async () => {
    const r = await api.raw('', { 'x-filler': 'a'.repeat(20_000) }, 'GET', '/')
    assert.equal(api.errorCode(r), 'RequestSizeLimitExceeded')
    const long = await api.raw('', {}, 'GET', `/?${'a'.repeat(20_000)}=1`)
    assert.equal(api.errorCode(long), 'RequestSizeLimitExceeded')
    await unaffected()
  })

  test('a signature replayed with another X-TC-Action is refused; the same action is not', async () => {
    const started = await post(startRequest(), 'StartOnlineRecord')
    const taskId = started.json.Response.TaskId as string
    const body = JSON.stringify({ SdkAppId: A.sdkAppId, TaskId: taskId })
    const pause = api.signedHeaders(body, { 'x-tc-action': 'PauseOnlineRecord' })
    assert.equal(api.errorCode(await api.raw(body, pause)), undefined)
    // Captured and sent again as a Stop within the window: refused.
    const swapped = { ...pause, 'x-tc-action': 'StopOnlineRecord' }
    assert.equal(api.errorCode(await api.raw(body, swapped)), 'AuthFailure.SignatureFailure')
    // A read of the same body in the same second shares the signature and
    // is served: it changes nothing.
    const status = await post(body, 'DescribeOnlineRecord')
    assert.equal(status.json.Response.Status, 'PAUSED', 'the task was not stopped')
    // The identical request again is the same action: answered on its merits.
    assert.equal(
      api.errorCode(await api.raw(body, pause)),
      'UnsupportedOperation.InvalidTaskStatus',
    )
    // Another change of the same body must wait for the next second.
    assert.equal(
      api.errorCode(await post(body, 'ResumeOnlineRecord')),
      'AuthFailure.SignatureFailure',
    )
    clock.advance(1000)
    assert.equal(api.errorCode(await post(body, 'ResumeOnlineRecord')), undefined)
  })

  test('a refused change or a read holds no signature: Resume refused, then Pause of the same body in the same second is applied; as Stop it is still refused', async () => {
    const started = await post(startRequest(), 'StartOnlineRecord')
    const taskId = started.json.Response.TaskId as string
    clock.set(Math.ceil(clock.now() / 1000) * 1000) // the start of a second, frozen
    const body = JSON.stringify({ SdkAppId: A.sdkAppId, TaskId: taskId })
    // The same body, signed in the same second: one signature for all of them.
    const signed = (action: string) => api.signedHeaders(body, { 'x-tc-action': action })
    assert.equal(
      signed('PauseOnlineRecord').authorization,
      signed('StopOnlineRecord').authorization,
    )
    // A read first, then a change refused on its merits: neither holds the signature.
    assert.equal(api.errorCode(await api.raw(body, signed('DescribeOnlineRecord'))), undefined)
    assert.equal(
      api.errorCode(await api.raw(body, signed('ResumeOnlineRecord'))),
      'UnsupportedOperation.InvalidTaskStatus',
    )
    assert.equal(api.errorCode(await api.raw(body, signed('PauseOnlineRecord'))), undefined)
    const paused = await api.raw(body, signed('DescribeOnlineRecord'))
    assert.equal(paused.json.Response.Status, 'PAUSED')
    // The applied Pause's signature, replayed as another change: refused, saying why.
    for (const action of ['StopOnlineRecord', 'ResumeOnlineRecord']) {
      const r = await api.raw(body, signed(action))
      assert.equal(api.errorCode(r), 'AuthFailure.SignatureFailure', action)
      assert.match(
        r.json.Response.Error?.Message ?? '',
        /already applied a change \(PauseOnlineRecord\).*next second/,
      )
    }
    const still = await api.raw(body, signed('DescribeOnlineRecord'))
    assert.equal(still.json.Response.Status, 'PAUSED', 'the task was neither stopped nor resumed')
    clock.advance(1000)
    await unaffected()
  })

  test('a RecordUserSig that inflates past the cap is refused even when its signature is valid', async () => {
    // A genuine TLS-sig-api-v2 document whose userbuf inflates to 1 MB from
    // a kilobyte or two: before the cap it was inflated whole and accepted.
    const r = startRequest()
    const user = r.RecordUserId
    const time = Math.floor(clock.now() / 1000)
    const userbuf = 'A'.repeat(1024 * 1024)
    const { createHmac } = await import('node:crypto')
    const content = `TLS.identifier:${user}\nTLS.sdkappid:${A.sdkAppId}\nTLS.time:${time}\nTLS.expire:86400\nTLS.userbuf:${userbuf}\n`
    const doc = {
      'TLS.ver': '2.0',
      'TLS.identifier': user,
      'TLS.sdkappid': A.sdkAppId,
      'TLS.time': time,
      'TLS.expire': 86_400,
      'TLS.userbuf': userbuf,
      'TLS.sig': createHmac('sha256', A.userSigKey).update(content).digest('base64'),
    }
    const bomb = deflateSync(JSON.stringify(doc), { level: 9 })
      .toString('base64')
      .replace(/\+/g, '*')
      .replace(/\//g, '-')
      .replace(/=/g, '_')
    assert.ok(bomb.length < 4096, `${bomb.length} characters`)
    const started = await post({ ...r, RecordUserSig: bomb }, 'StartOnlineRecord')
    const taskId = started.json.Response.TaskId as string
    const described = await post({ SdkAppId: A.sdkAppId, TaskId: taskId }, 'DescribeOnlineRecord')
    assert.equal(api.errorCode(described), 'FailedOperation.Record')
    assert.match(described.json.Response.Error?.Message ?? '', /not a TLS-sig-api-v2 signature/)
    // Longer than any real UserSig: refused by the schema before any work.
    const long = await post(
      { ...startRequest(), RecordUserSig: 'x'.repeat(951_000) },
      'StartOnlineRecord',
    )
    assert.equal(api.errorCode(long), 'InvalidParameter.RecordParameter')
    await unaffected()
  })

  test('fuzz: hostile keys and strings on every action, flattened and JSON', async () => {
    const hostileKey = fc.constantFrom(
      '__proto__',
      'constructor',
      'prototype',
      '__defineGetter__',
      'toString',
      'hasOwnProperty',
      'a\u0000b',
      '\ud800',
      '0',
    )
    const hostileString = fc.oneof(
      fc.constantFrom('\u0000', 'a\u0000', '\ud800', '\udfff', 'x\ud83d', '', '__proto__'),
      fc.string({ maxLength: 30, unit: 'binary' }),
    )
    const path = fc.array(
      fc.oneof(hostileKey, fc.constantFrom('Concat', 'Image', 'LayoutParams', '1')),
      {
        minLength: 1,
        maxLength: 12,
      },
    )
    const task = { SdkAppId: A.sdkAppId, TaskId: 'aaaaaaaaaaaaaaaaaaaa' }
    const valid: Record<string, () => Record<string, unknown>> = {
      StartOnlineRecord: () => startRequest(),
      StopOnlineRecord: () => task,
      PauseOnlineRecord: () => task,
      ResumeOnlineRecord: () => task,
      DescribeOnlineRecord: () => task,
      SetOnlineRecordCallback: () => ({ SdkAppId: A.sdkAppId, Callback: 'https://example.com/cb' }),
      SetOnlineRecordCallbackKey: () => ({ SdkAppId: A.sdkAppId, CallbackKey: 'k' }),
      DescribeOnlineRecordCallback: () => ({ SdkAppId: A.sdkAppId }),
      DescribeRunningTasks: () => ({ SdkAppID: A.sdkAppId, TaskType: 'OnlineRecord' }),
      ExtDescribeCallbacks: () => ({ SdkAppId: A.sdkAppId, Limit: 10 }),
      ExtDescribeCallbackAttempts: () => ({ SdkAppId: A.sdkAppId, EventId: 'evt_x' }),
      ExtResendCallbacks: () => ({ SdkAppId: A.sdkAppId, EventIds: ['evt_x'] }),
    }
    const base = (action: string) => (valid[action] as () => Record<string, unknown>)()
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ACTION_NAMES),
        path,
        hostileString,
        fc.boolean(),
        async (action, keys, value, flattened) => {
          clock.advance(10)
          let r: Awaited<ReturnType<typeof post>>
          if (flattened) {
            const q = new URLSearchParams(
              Object.entries(base(action)).map(([k, v]): [string, string] => [k, String(v)]),
            )
            q.append(keys.join('.'), value)
            r = await get(q.toString(), action)
          } else {
            // The same path as nested JSON objects, keys and all.
            let nested: unknown = value
            for (const key of [...keys].reverse()) nested = { [key]: nested }
            const body = `${JSON.stringify(base(action)).slice(0, -1)},${JSON.stringify(keys[0])}:${JSON.stringify((nested as Record<string, unknown>)[keys[0] as string])}}`
            r = await post(body, action)
          }
          assert.equal(r.status, 200)
          assert.notEqual(r.json.Response.Error?.Code, 'InternalError', JSON.stringify(r.json))
          await unaffected()
        },
      ),
      { numRuns: 250 },
    )
  })
})
