// Verifiers of the protocol package against the bare hash work they cannot avoid.
import { createHash, createHmac, createSecretKey } from 'node:crypto'
import {
  parseTc3Authorization,
  signCallback,
  signTc3,
  verifyCallbackSign,
  verifyTc3,
  verifyWebhook,
  webhookHeaders,
} from '@online-record/protocol'
import type { Comparison } from './run.ts'

const now = () => 1_700_000_000_000

// Callback Sign: md5(key + ExpireTime).
const key = 'Xz4ZgayTr7rMgWQrH'
const expireTime = 1_700_000_600
const body = { Sign: signCallback(key, expireTime), ExpireTime: expireTime }
const signOptions = { keys: key, now }

// TC3: a StartOnlineRecord as the official Node SDK sends it to an IP endpoint.
const payload = JSON.stringify({
  SdkAppId: 1400000001,
  RoomId: 12358,
  RecordUserId: 'tic_record_user_12358_x1',
  RecordUserSig:
    'eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwoYmRoYGhlBTiVhmWhqGRkYGhqYGhsbGxoZGpiYGQKkCpQyc',
  Concat: { Enabled: true },
})
const timestamp = 1_700_000_000
const secretKey = 'Gu5t9xGARNpq86cd98joQYCN3online'
const signed = signTc3({
  secretId: 'AKIDbench',
  secretKey,
  service: '127',
  host: '127.0.0.1',
  timestamp,
  payload,
})
const headers = {
  host: '127.0.0.1:8080',
  'content-type': 'application/json',
  'x-tc-timestamp': String(timestamp),
  authorization: signed.authorization,
}
const request = { method: 'POST', rawQuery: '', headers, body: payload }
const canonical = `POST\n/\n\ncontent-type:application/json\nhost:127.0.0.1\n\ncontent-type;host\n${createHash('sha256').update(payload).digest('hex')}`
// Keys as KeyObjects: on Node 24 a Buffer key costs ~8 µs more per HMAC, and the
// baseline must be the fastest way to do the same hashing.
const hmac = (k: string | Buffer, d: string) =>
  createHmac('sha256', typeof k === 'string' ? k : createSecretKey(k))
    .update(d)
    .digest()

// Standard Webhooks over a typical Finished body.
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
const secretKey32 = createSecretKey(Buffer.from(secret.slice(6), 'base64'))
const eventBody = JSON.stringify({
  EventType: 'OnlineRecordFinished',
  EventData: { VideoInfos: Array(4).fill({ VideoUrl: 'http://example.com/v.mp4' }) },
})
const whHeaders = webhookHeaders(secret, 'evt_01', timestamp, eventBody)

export const comparisons: Comparison[] = [
  {
    name: 'callback Sign',
    target: 0.8,
    baseline: {
      name: 'md5 hex of key+ExpireTime',
      fn: () =>
        createHash('md5')
          .update(key + String(expireTime))
          .digest('hex'),
    },
    subject: { name: 'verifyCallbackSign', fn: () => verifyCallbackSign(body, signOptions) },
  },
  {
    name: 'TC3-HMAC-SHA256',
    target: 0.8,
    baseline: {
      name: '2 sha256 + 4 HMAC-SHA256',
      fn: () => {
        createHash('sha256').update(payload).digest('hex')
        const hashed = createHash('sha256').update(canonical).digest('hex')
        const kSigning = hmac(hmac(hmac(`TC3${secretKey}`, '2023-11-14'), '127'), 'tc3_request')
        return createHmac('sha256', createSecretKey(kSigning))
          .update(`TC3-HMAC-SHA256\n${timestamp}\n2023-11-14/127/tc3_request\n${hashed}`)
          .digest('hex')
      },
    },
    subject: {
      name: 'parseTc3Authorization + verifyTc3',
      fn: () =>
        verifyTc3(request, parseTc3Authorization(headers.authorization), secretKey, { now }),
    },
  },
  {
    name: 'Standard Webhooks',
    // One HMAC over a short message is so cheap (~2 µs) that the fixed work of
    // reading three headers and comparing the signature weighs more than in
    // the two above: the margin is small (docs/benchmarks.md).
    target: 0.8,
    baseline: {
      name: 'HMAC-SHA256 base64 of id.ts.body',
      fn: () =>
        createHmac('sha256', secretKey32)
          .update(`evt_01.${timestamp}.`)
          .update(eventBody)
          .digest('base64'),
    },
    subject: {
      name: 'verifyWebhook',
      fn: () => verifyWebhook(eventBody, whHeaders, { secrets: secret, now }),
    },
  },
]
