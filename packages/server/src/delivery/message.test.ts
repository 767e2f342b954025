import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import {
  ATTEMPT_HEADER,
  EVENT_TYPES,
  eventSchemas,
  generateWebhookSecret,
  SEQUENCE_HEADER,
  sampleEvents,
} from '@online-record/protocol'
import { Webhook } from 'standardwebhooks'
import { buildCallbackRequest } from './message.ts'

// The reference verifier checks webhook-timestamp against the real clock.
const NOW = Math.floor(Date.now() / 1000) * 1000
const options = { nowMs: NOW, signValiditySeconds: 600, userAgent: 'online-record/test' }

function outboxEvent(type: (typeof EVENT_TYPES)[number], attempt = 1) {
  const sample = sampleEvents[type]
  return {
    eventId: 'evt_0123456789abcdef0123456789abcdef',
    taskId: sample.EventData.TaskId,
    seq: 3,
    sdkAppId: sample.SdkAppId,
    eventType: type,
    timestampS: sample.Timestamp,
    data: JSON.stringify(sample.EventData),
    attempt,
  }
}

describe('callback request of one attempt', () => {
  for (const type of EVENT_TYPES) {
    test(`${type}: the seed's fields, Sign for this attempt, Standard Webhooks headers`, () => {
      const secret = generateWebhookSecret()
      const event = outboxEvent(type)
      const { body, headers } = buildCallbackRequest(
        event,
        { callbackKey: 'Xz4ZgayTr7rMgWQrH', webhookSecret: secret },
        options,
      )
      const parsed = JSON.parse(body)
      const sample = sampleEvents[type]
      // Exactly the seed's envelope, in its order; EventData as the engine wrote it.
      assert.deepEqual(Object.keys(parsed), Object.keys(sample))
      assert.deepEqual(parsed.EventData, sample.EventData)
      assert.equal(parsed.Timestamp, sample.Timestamp)
      assert.equal(parsed.ExpireTime, NOW / 1000 + 600)
      const md5 = createHash('md5').update(`Xz4ZgayTr7rMgWQrH${parsed.ExpireTime}`).digest('hex')
      assert.equal(parsed.Sign, md5)
      assert.ok(eventSchemas.Callback.safeParse(parsed).success)
      // The reference library verifies what we send.
      const verified = new Webhook(secret).verify(body, {
        'webhook-id': headers['webhook-id'] as string,
        'webhook-timestamp': headers['webhook-timestamp'] as string,
        'webhook-signature': headers['webhook-signature'] as string,
      })
      assert.deepEqual(verified, parsed)
      assert.equal(headers['webhook-id'], event.eventId)
      assert.equal(headers['webhook-timestamp'], String(NOW / 1000))
      assert.equal(headers['content-type'], 'application/json')
      assert.equal(headers['user-agent'], 'online-record/test')
      assert.equal(headers[SEQUENCE_HEADER], '3')
      assert.equal(headers[ATTEMPT_HEADER], '1')
    })
  }

  test('no CallbackKey: neither Sign nor ExpireTime', () => {
    const { body } = buildCallbackRequest(
      outboxEvent('OnlineRecordStarted'),
      { callbackKey: '', webhookSecret: generateWebhookSecret() },
      options,
    )
    const parsed = JSON.parse(body)
    assert.deepEqual(Object.keys(parsed), ['EventData', 'EventType', 'SdkAppId', 'Timestamp'])
    assert.ok(eventSchemas.Callback.safeParse(parsed).success)
  })

  test('during a rotation both secrets sign; each verifies alone', () => {
    const [fresh, old] = [generateWebhookSecret(), generateWebhookSecret()]
    const { body, headers } = buildCallbackRequest(
      outboxEvent('OnlineRecordStopped', 2),
      { callbackKey: 'k', webhookSecret: fresh, previousWebhookSecret: old },
      options,
    )
    assert.equal((headers['webhook-signature'] as string).split(' ').length, 2)
    for (const secret of [fresh, old]) {
      assert.doesNotThrow(() => new Webhook(secret).verify(body, headers as Record<string, string>))
    }
    assert.equal(headers[ATTEMPT_HEADER], '2')
  })

  test('a retry carries a later ExpireTime and a new signature over the same id', () => {
    const keys = { callbackKey: 'k', webhookSecret: generateWebhookSecret() }
    const first = buildCallbackRequest(outboxEvent('OnlineRecordStarted'), keys, options)
    const later = buildCallbackRequest(outboxEvent('OnlineRecordStarted', 2), keys, {
      ...options,
      nowMs: NOW + 3_600_000,
    })
    assert.equal(JSON.parse(later.body).ExpireTime - JSON.parse(first.body).ExpireTime, 3600)
    assert.equal(JSON.parse(later.body).Timestamp, JSON.parse(first.body).Timestamp)
    assert.equal(later.headers['webhook-id'], first.headers['webhook-id'])
    assert.notEqual(later.headers['webhook-signature'], first.headers['webhook-signature'])
  })
})
