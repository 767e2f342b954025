import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { generateWebhookSecret, signCallback, webhookHeaders } from '@online-record/protocol'
import { ReceiverError } from './receiver-error.ts'
import { verify } from './verify.ts'

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(
    readFileSync(new URL(`../../protocol/fixtures/events/${name}.json`, import.meta.url), 'utf8'),
  )
const NOW = 1_700_000_000
const now = () => NOW * 1000
const KEY = 'Xz4ZgayTr7rMgWQrH'
const SECRET = generateWebhookSecret()

function signed(name: string, patch: Record<string, unknown> = {}): string {
  const body: Record<string, unknown> = {
    ...fixture(name),
    ...patch,
    ExpireTime: NOW + 600,
    Timestamp: NOW,
  }
  body.Sign = signCallback(KEY, body.ExpireTime as number)
  return JSON.stringify(body)
}
const code = (fn: () => unknown): [string, number] => {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof ReceiverError, `expected a ReceiverError, got ${error}`)
    return [error.code, error.status]
  }
  assert.fail('expected a ReceiverError')
}

describe('verify', () => {
  test('a callback with a valid Sign yields its typed event', () => {
    const result = verify(signed('OnlineRecordFinished.success'), {}, { callbackKeys: KEY, now })
    assert.equal(result.verifiedBy, 'sign')
    assert.equal(result.id, undefined)
    assert.equal(result.event.EventType, 'OnlineRecordFinished')
    if (result.event.EventType === 'OnlineRecordFinished') {
      assert.equal(result.event.EventData.VideoInfos.length, 4)
    }
  })

  test('Standard Webhooks headers are preferred and give the event id', () => {
    const body = signed('OnlineRecordStarted')
    const headers = webhookHeaders(SECRET, 'evt_42', NOW, body)
    const result = verify(new TextEncoder().encode(body), headers, {
      callbackKeys: KEY,
      webhookSecrets: SECRET,
      now,
    })
    assert.deepEqual([result.verifiedBy, result.id], ['webhook-signature', 'evt_42'])
  })

  test('refusals carry a stable code and status', () => {
    const body = signed('OnlineRecordStopped')
    const headers = webhookHeaders(SECRET, 'evt_1', NOW, body)
    const tampered = body.replace('"RoomId":1253', '"RoomId":1254')
    assert.deepEqual(
      code(() => verify(tampered, headers, { webhookSecrets: SECRET, now })),
      ['BAD_SIGNATURE', 401],
    )
    assert.deepEqual(
      code(() => verify(body, headers, { webhookSecrets: generateWebhookSecret(), now })),
      ['BAD_SIGNATURE', 401],
    )
    const badSign = body.replace(/"Sign":"[0-9a-f]+"/, `"Sign":"${'0'.repeat(32)}"`)
    assert.deepEqual(
      code(() => verify(badSign, {}, { callbackKeys: KEY, now })),
      ['BAD_SIGNATURE', 401],
    )
    assert.deepEqual(
      code(() => verify(body, {}, { callbackKeys: KEY, now: () => (NOW + 901) * 1000 })),
      ['EXPIRED', 401],
    )
    assert.deepEqual(
      code(() =>
        verify(
          body,
          {},
          { webhookSecrets: SECRET, callbackKeys: KEY, requireBodySignature: true, now },
        ),
      ),
      ['MISSING_SIGNATURE', 401],
    )
    assert.deepEqual(
      code(() => verify(JSON.parse(body), {}, { callbackKeys: KEY, now })),
      ['RAW_BODY_REQUIRED', 500],
    )
    assert.deepEqual(
      code(() =>
        verify(
          signed('OnlineRecordStarted', { EventType: 'OnlineRecordPaused' }),
          {},
          { callbackKeys: KEY, now },
        ),
      ),
      ['UNKNOWN_EVENT', 400],
    )
    assert.deepEqual(
      code(() =>
        verify(signed('OnlineRecordStarted', { EventData: {} }), {}, { callbackKeys: KEY, now }),
      ),
      ['INVALID_PAYLOAD', 400],
    )
    assert.deepEqual(
      code(() =>
        verify('not json', webhookHeaders(SECRET, 'e', NOW, 'not json'), {
          webhookSecrets: SECRET,
          now,
        }),
      ),
      ['INVALID_PAYLOAD', 400],
    )
  })

  test('the RAW_BODY_REQUIRED message says how to fix it', () => {
    try {
      verify({} as unknown as string, {}, { callbackKeys: KEY })
      assert.fail('expected a refusal')
    } catch (error) {
      assert.match((error as Error).message, /raw request body/)
    }
  })
})
