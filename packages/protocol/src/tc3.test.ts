import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import tencentcloud from 'tencentcloud-sdk-nodejs'
import { sha256Hex } from '#crypto'
import { ApiError } from './errors.ts'
import { parseTc3Authorization, signTc3, signV1, tc3Date, verifyTc3, verifyV1 } from './tc3.ts'

const apiCode = (fn: () => unknown): string => {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected an ApiError, got ${error}`)
    return error.code
  }
  assert.fail('expected an ApiError')
}

describe('TC3-HMAC-SHA256', () => {
  // Spec §6.2, the official vector.
  const vector = {
    secretId: 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******',
    secretKey: 'Gu5t9xGARNpq86cd98joQYCN3*******',
    service: 'cvm',
    host: 'cvm.tencentcloudapi.com',
    contentType: 'application/json; charset=utf-8',
    timestamp: 1551113065,
    payload:
      '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}',
  }

  test('reproduces the official vector', () => {
    assert.equal(
      sha256Hex(vector.payload),
      '35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064',
    )
    const canonical = `POST\n/\n\ncontent-type:${vector.contentType}\nhost:${vector.host}\n\ncontent-type;host\n${sha256Hex(vector.payload)}`
    assert.equal(
      sha256Hex(canonical),
      '5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031',
    )
    const signed = signTc3(vector)
    assert.equal(
      signed.signature,
      '2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c',
    )
    assert.equal(
      signed.authorization,
      'TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c',
    )
    const headers = {
      host: vector.host,
      'content-type': vector.contentType,
      'x-tc-timestamp': String(vector.timestamp),
    }
    const auth = parseTc3Authorization(signed.authorization)
    verifyTc3(
      { method: 'POST', rawQuery: '', headers, body: vector.payload },
      auth,
      vector.secretKey,
      {
        now: () => (vector.timestamp + 10) * 1000,
      },
    )
  })

  const host = fc.oneof(
    fc.constantFrom('tiw.tencentcloudapi.com', '127.0.0.1', 'localhost', '[::1]'),
    fc.domain(),
  )
  const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined })
  const service = fc.oneof(
    fc.constant('tiw'),
    fc.constant('127'),
    fc.stringMatching(/^[a-z]{1,8}(:\d{1,5})?$/),
  )
  const timestamp = fc.integer({ min: 1_500_000_000, max: 2_100_000_000 })
  const key = fc.string({ minLength: 1, maxLength: 40 })
  const payload = fc.oneof(fc.json(), fc.uint8Array({ maxLength: 200 }))

  test('sign then verify round-trips, signed host with or without the port that is sent', () => {
    fc.assert(
      fc.property(
        host,
        port,
        service,
        timestamp,
        key,
        payload,
        fc.boolean(),
        (h, p, svc, ts, secretKey, body, signPort) => {
          const sent = p === undefined ? h : `${h}:${p}`
          const signed = signTc3({
            secretId: 'AKID',
            secretKey,
            service: svc,
            host: signPort ? sent : h,
            timestamp: ts,
            payload: body,
          })
          const headers = {
            host: sent,
            'content-type': 'application/json',
            'x-tc-timestamp': String(ts),
          }
          const auth = parseTc3Authorization(signed.authorization)
          assert.equal(auth.service, svc)
          assert.equal(auth.date, tc3Date(ts))
          verifyTc3({ method: 'POST', rawQuery: '', headers, body }, auth, secretKey, {
            now: () => ts * 1000,
          })
        },
      ),
    )
  })

  test('any change to body, key, host, timestamp or query fails; skew over 300 s expires', () => {
    fc.assert(
      fc.property(
        timestamp,
        key,
        fc.json(),
        fc.integer({ min: 301, max: 100_000 }),
        (ts, secretKey, body, skew) => {
          const signed = signTc3({
            secretId: 'AKID',
            secretKey,
            service: 'tiw',
            host: 'h.example',
            timestamp: ts,
            payload: body,
            method: 'GET',
            query: 'A=1',
          })
          const auth = parseTc3Authorization(signed.authorization)
          const headers = {
            host: 'h.example',
            'content-type': signed.contentType,
            'x-tc-timestamp': String(ts),
          }
          const req = { method: 'GET', rawQuery: 'A=1', headers, body }
          const now = () => ts * 1000
          verifyTc3(req, auth, secretKey, { now })
          assert.equal(
            apiCode(() => verifyTc3({ ...req, body: `${body} ` }, auth, secretKey, { now })),
            'AuthFailure.SignatureFailure',
          )
          assert.equal(
            apiCode(() => verifyTc3(req, auth, `${secretKey}x`, { now })),
            'AuthFailure.SignatureFailure',
          )
          assert.equal(
            apiCode(() => verifyTc3({ ...req, rawQuery: 'A=2' }, auth, secretKey, { now })),
            'AuthFailure.SignatureFailure',
          )
          assert.equal(
            apiCode(() =>
              verifyTc3({ ...req, headers: { ...headers, host: 'g.example' } }, auth, secretKey, {
                now,
              }),
            ),
            'AuthFailure.SignatureFailure',
          )
          const moved = { ...headers, 'x-tc-timestamp': String(ts + 1) }
          assert.equal(
            apiCode(() => verifyTc3({ ...req, headers: moved }, auth, secretKey, { now })),
            'AuthFailure.SignatureFailure',
          )
          assert.equal(
            apiCode(() => verifyTc3(req, auth, secretKey, { now: () => (ts + skew) * 1000 })),
            'AuthFailure.SignatureExpire',
          )
          assert.equal(
            apiCode(() => verifyTc3(req, auth, secretKey, { now: () => (ts - skew) * 1000 })),
            'AuthFailure.SignatureExpire',
          )
        },
      ),
    )
  })

  test('a service outside the allow-list fails', () => {
    const signed = signTc3({
      secretId: 'A',
      secretKey: 'k',
      service: 'cvm',
      host: 'h',
      timestamp: 1_700_000_000,
      payload: '{}',
    })
    const headers = {
      host: 'h',
      'content-type': 'application/json',
      'x-tc-timestamp': '1700000000',
    }
    const run = () =>
      verifyTc3(
        { method: 'POST', rawQuery: '', headers, body: '{}' },
        parseTc3Authorization(signed.authorization),
        'k',
        {
          now: () => 1_700_000_000_000,
          services: ['tiw'],
        },
      )
    assert.equal(apiCode(run), 'AuthFailure.SignatureFailure')
  })

  test('malformed Authorization headers are InvalidAuthorization', () => {
    const good =
      'TC3-HMAC-SHA256 Credential=AKID/2024-01-02/tiw/tc3_request, SignedHeaders=content-type;host, Signature=' +
      'a'.repeat(64)
    assert.equal(parseTc3Authorization(good).secretId, 'AKID')
    for (const bad of [
      '',
      'Bearer x',
      'TC3-HMAC-SHA256',
      good.replace(
        'Credential=AKID/2024-01-02/tiw/tc3_request',
        'Credential=AKID/2024-01-02/tc3_request',
      ),
      good.replace('/tc3_request', '/tc4_request'),
      good.replace('2024-01-02', '20240102'),
      good.replace('content-type;host', 'host'),
      good.replace('content-type;host', 'Content-Type;host'),
      good.replace('a'.repeat(64), 'xyz'),
      good.replace(', Signature=', ', Sig='),
    ]) {
      assert.equal(
        apiCode(() => parseTc3Authorization(bad)),
        'AuthFailure.InvalidAuthorization',
        bad,
      )
    }
  })

  test('missing or malformed X-TC-Timestamp is refused', () => {
    const auth = parseTc3Authorization(
      signTc3({
        secretId: 'A',
        secretKey: 'k',
        service: 'tiw',
        host: 'h',
        timestamp: 1_700_000_000,
        payload: '',
      }).authorization,
    )
    const req = (ts?: string) => ({
      method: 'POST',
      rawQuery: '',
      body: '',
      headers: {
        host: 'h',
        'content-type': 'application/json',
        ...(ts === undefined ? {} : { 'x-tc-timestamp': ts }),
      },
    })
    assert.equal(
      apiCode(() => verifyTc3(req(), auth, 'k')),
      'MissingParameter',
    )
    assert.equal(
      apiCode(() => verifyTc3(req('1.5e9'), auth, 'k')),
      'InvalidParameter',
    )
  })
})

describe('requests from the official tencentcloud-sdk-nodejs client verify', () => {
  interface Captured {
    method: string
    url: string
    headers: IncomingHttpHeaders
    body: Buffer
  }
  const captured: Captured[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      captured.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ Response: { RequestId: 'r-1', TaskId: 't' } }))
    })
  })
  let endpoint = ''
  const secretId = 'AKIDonlinerecordtest0000000000000000'
  const secretKey = 'online-record-test-secret-key-000'
  const request = {
    SdkAppId: 1400000001,
    RoomId: 12358,
    RecordUserId: 'tic_record_user_12358_x1',
    RecordUserSig: 'eJy-sig',
    Concat: { Enabled: true, Image: 'https://example.com/pad.png' },
    Whiteboard: { Width: 1280, Height: 960, InitParam: '{"ratio":"16:9"}' },
    Extras: ['MIX_STREAM'],
    MixStream: { Enabled: true, ModelId: 1 },
    TRTCRoomIdStr: '房间-12358',
  }

  before(async () => {
    delete process.env.http_proxy
    delete process.env.HTTP_PROXY
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => server.close())

  const client = (
    signMethod: 'TC3-HMAC-SHA256' | 'HmacSHA256' | 'HmacSHA1',
    reqMethod: 'POST' | 'GET',
  ) =>
    new tencentcloud.tiw.v20190919.Client({
      credential: { secretId, secretKey },
      region: 'ap-guangzhou',
      profile: { signMethod, httpProfile: { endpoint, protocol: 'http://', reqMethod } },
    })

  for (const reqMethod of ['POST', 'GET'] as const) {
    test(`TC3 over ${reqMethod} with an IP endpoint (service "127", host signed without port)`, async () => {
      captured.length = 0
      const tiw = client('TC3-HMAC-SHA256', reqMethod)
      await tiw.StartOnlineRecord(request)
      await tiw.DescribeOnlineRecord({ SdkAppId: 1400000001, TaskId: 'abc' })
      assert.equal(captured.length, 2)
      for (const c of captured) {
        const auth = parseTc3Authorization(String(c.headers.authorization))
        assert.equal(auth.service, '127')
        assert.equal(auth.secretId, secretId)
        const rawQuery = c.url.includes('?') ? c.url.slice(c.url.indexOf('?') + 1) : ''
        verifyTc3({ method: c.method, rawQuery, headers: c.headers, body: c.body }, auth, secretKey)
        assert.equal(
          apiCode(() =>
            verifyTc3(
              { method: c.method, rawQuery, headers: c.headers, body: c.body },
              auth,
              'wrong',
            ),
          ),
          'AuthFailure.SignatureFailure',
        )
      }
    })
  }

  for (const [signMethod, reqMethod] of [
    ['HmacSHA256', 'POST'],
    ['HmacSHA1', 'GET'],
  ] as const) {
    test(`legacy v1 ${signMethod} over ${reqMethod} (host signed with port)`, async () => {
      captured.length = 0
      await client(signMethod, reqMethod).StartOnlineRecord(request)
      const c = captured[0] as Captured
      const form =
        reqMethod === 'GET' ? c.url.slice(c.url.indexOf('?') + 1) : c.body.toString('utf8')
      const params = Object.fromEntries(new URLSearchParams(form))
      assert.equal(params.SignatureMethod, signMethod)
      verifyV1(params, secretKey, { method: c.method, host: String(c.headers.host) })
      assert.equal(
        apiCode(() =>
          verifyV1({ ...params, RoomId: '1' }, secretKey, {
            method: c.method,
            host: String(c.headers.host),
          }),
        ),
        'AuthFailure.SignatureFailure',
      )
      assert.equal(signV1(params, secretKey, c.method, String(c.headers.host)), params.Signature)
    })
  }
})
