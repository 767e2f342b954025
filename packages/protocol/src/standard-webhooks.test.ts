import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { Webhook } from 'standardwebhooks'
import {
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
  webhookHeaders,
} from './standard-webhooks.ts'
import { VerificationError } from './verification-error.ts'

const code = (fn: () => unknown): string => {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof VerificationError, `expected a VerificationError, got ${error}`)
    return error.code
  }
  assert.fail('expected a VerificationError')
}
const secret = fc
  .uint8Array({ minLength: 16, maxLength: 48 })
  .map((b) => `whsec_${Buffer.from(b).toString('base64')}`)
const eventId = fc.stringMatching(/^evt_[0-9a-z]{1,26}$/)
const timestamp = fc.integer({ min: 1_600_000_000, max: 2_000_000_000 })
const body = fc.json()

describe('Standard Webhooks', () => {
  test('sign then verify round-trips, with string or byte bodies', () => {
    fc.assert(
      fc.property(secret, eventId, timestamp, body, (s, id, ts, payload) => {
        const headers = webhookHeaders(s, id, ts, payload)
        const now = () => ts * 1000
        assert.deepEqual(verifyWebhook(payload, headers, { secrets: s, now }), {
          id,
          timestamp: ts,
        })
        const bytes = new TextEncoder().encode(payload)
        assert.deepEqual(verifyWebhook(bytes, headers, { secrets: s, now }), { id, timestamp: ts })
      }),
    )
  })

  test('changing one byte of the body fails', () => {
    fc.assert(
      fc.property(
        secret,
        eventId,
        timestamp,
        body,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (s, id, ts, payload, at, flip) => {
          const bytes = new TextEncoder().encode(payload)
          const i = at % bytes.length
          const tampered = bytes.slice()
          tampered[i] = (tampered[i] as number) ^ flip
          const headers = webhookHeaders(s, id, ts, bytes)
          assert.equal(
            code(() => verifyWebhook(tampered, headers, { secrets: s, now: () => ts * 1000 })),
            'BAD_SIGNATURE',
          )
        },
      ),
    )
  })

  test('a different id, timestamp or secret fails', () => {
    fc.assert(
      fc.property(secret, secret, eventId, timestamp, body, (s, other, id, ts, payload) => {
        fc.pre(s !== other)
        const headers = webhookHeaders(s, id, ts, payload)
        const now = () => ts * 1000
        assert.equal(
          code(() => verifyWebhook(payload, headers, { secrets: other, now })),
          'BAD_SIGNATURE',
        )
        assert.equal(
          code(() =>
            verifyWebhook(payload, { ...headers, 'webhook-id': `${id}x` }, { secrets: s, now }),
          ),
          'BAD_SIGNATURE',
        )
        const moved = { ...headers, 'webhook-timestamp': String(ts + 1) }
        assert.equal(
          code(() => verifyWebhook(payload, moved, { secrets: s, now })),
          'BAD_SIGNATURE',
        )
      }),
    )
  })

  test('timestamps outside the tolerance fail in both directions', () => {
    const s = generateWebhookSecret()
    const headers = webhookHeaders(s, 'evt_1', 1_700_000_000, '{}')
    const at = (seconds: number) => () => seconds * 1000
    assert.equal(
      code(() => verifyWebhook('{}', headers, { secrets: s, now: at(1_700_000_301) })),
      'EXPIRED',
    )
    assert.equal(
      code(() => verifyWebhook('{}', headers, { secrets: s, now: at(1_699_999_699) })),
      'TIMESTAMP_IN_FUTURE',
    )
    assert.ok(verifyWebhook('{}', headers, { secrets: s, now: at(1_700_000_300) }))
    assert.ok(
      verifyWebhook('{}', headers, { secrets: s, now: at(1_700_000_900), toleranceSeconds: 900 }),
    )
  })

  test('rotation: several signatures in the header, several secrets accepted', () => {
    const [oldSecret, newSecret] = [generateWebhookSecret(), generateWebhookSecret()]
    const headers = webhookHeaders([oldSecret, newSecret], 'evt_2', 1_700_000_000, 'x')
    assert.equal(headers['webhook-signature'].split(' ').length, 2)
    const now = () => 1_700_000_000_000
    assert.ok(verifyWebhook('x', headers, { secrets: oldSecret, now }))
    assert.ok(verifyWebhook('x', headers, { secrets: newSecret, now }))
    const single = webhookHeaders(newSecret, 'evt_2', 1_700_000_000, 'x')
    assert.ok(verifyWebhook('x', single, { secrets: [oldSecret, newSecret], now }))
  })

  test('missing or malformed headers are refused with a code, header names are case-insensitive', () => {
    const s = generateWebhookSecret()
    const h = webhookHeaders(s, 'evt_3', 1_700_000_000, 'x')
    const now = () => 1_700_000_000_000
    assert.equal(
      code(() => verifyWebhook('x', {}, { secrets: s, now })),
      'MISSING_SIGNATURE',
    )
    assert.equal(
      code(() => verifyWebhook('x', { ...h, 'webhook-timestamp': 'soon' }, { secrets: s, now })),
      'MALFORMED_SIGNATURE',
    )
    assert.equal(
      code(() => verifyWebhook('x', { ...h, 'webhook-signature': 'v2,abc' }, { secrets: s, now })),
      'MALFORMED_SIGNATURE',
    )
    const upper = {
      'Webhook-Id': h['webhook-id'],
      'WEBHOOK-TIMESTAMP': h['webhook-timestamp'],
      'Webhook-Signature': h['webhook-signature'],
    }
    assert.ok(verifyWebhook('x', upper, { secrets: s, now }))
    assert.ok(verifyWebhook('x', new Headers(upper), { secrets: s, now }))
  })

  test('interoperates with the reference standardwebhooks library both ways', () => {
    fc.assert(
      fc.property(secret, eventId, body, (s, id, payload) => {
        const now = new Date()
        const ts = Math.floor(now.getTime() / 1000)
        const reference = new Webhook(s)
        // ours signs, the reference verifies
        reference.verify(payload, { ...webhookHeaders(s, id, ts, payload) })
        // the reference signs, ours verifies
        const signature = reference.sign(id, now, payload)
        assert.equal(signature, signWebhook(s, id, ts, payload))
        const headers = {
          'webhook-id': id,
          'webhook-timestamp': String(ts),
          'webhook-signature': signature,
        }
        assert.deepEqual(verifyWebhook(payload, headers, { secrets: s }), { id, timestamp: ts })
      }),
      { numRuns: 50 },
    )
  })

  test('generated secrets are whsec_ with 24 random bytes', () => {
    const a = generateWebhookSecret()
    assert.match(a, /^whsec_[A-Za-z0-9+/]{32}$/)
    assert.notEqual(a, generateWebhookSecret())
  })
})
