import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { signCallback, verifyCallbackSign } from './callback-sign.ts'
import { VerificationError } from './verification-error.ts'

const at = (seconds: number) => () => seconds * 1000
const code = (fn: () => unknown): string => {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof VerificationError, `expected a VerificationError, got ${error}`)
    return error.code
  }
  assert.fail('expected a VerificationError')
}

describe('callback Sign', () => {
  test('reproduces the spec vector', () => {
    assert.equal(signCallback('Xz4ZgayTr7rMgWQrH', 1588040109), 'a2dabb362a9b811c0e26953a6276a41c')
  })

  test('is md5(key + ExpireTime) as an independent computation gives it', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 64 }), fc.nat(), (key, expire) => {
        const expected = createHash('md5').update(`${key}${expire}`).digest('hex')
        assert.equal(signCallback(key, expire), expected)
      }),
    )
  })

  test('sign then verify round-trips before ExpireTime', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.nat(2 ** 40),
        fc.nat(10_000),
        (key, expire, early) => {
          const body = { Sign: signCallback(key, expire), ExpireTime: expire }
          assert.equal(verifyCallbackSign(body, { keys: key, now: at(expire - early) }), key)
        },
      ),
    )
  })

  test('any change to the key, the ExpireTime or the Sign fails', () => {
    const hex = fc.constantFrom(...'0123456789abcdef')
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.nat(2 ** 40),
        fc.integer({ min: 1, max: 1000 }),
        fc.nat(31),
        hex,
        (key, otherKey, expire, delta, position, digit) => {
          fc.pre(key !== otherKey)
          const sign = signCallback(key, expire)
          const now = at(expire - 2000)
          assert.equal(
            code(() =>
              verifyCallbackSign({ Sign: sign, ExpireTime: expire }, { keys: otherKey, now }),
            ),
            'BAD_SIGNATURE',
          )
          assert.equal(
            code(() =>
              verifyCallbackSign({ Sign: sign, ExpireTime: expire + delta }, { keys: key, now }),
            ),
            'BAD_SIGNATURE',
          )
          fc.pre(sign[position] !== digit)
          const tampered = sign.slice(0, position) + digit + sign.slice(position + 1)
          assert.equal(
            code(() =>
              verifyCallbackSign({ Sign: tampered, ExpireTime: expire }, { keys: key, now }),
            ),
            'BAD_SIGNATURE',
          )
        },
      ),
    )
  })

  test('an ExpireTime in the past fails, within tolerance it passes', () => {
    fc.assert(
      fc.property(fc.nat(2 ** 40), fc.integer({ min: 1, max: 100_000 }), (expire, late) => {
        const body = { Sign: signCallback('k', expire), ExpireTime: expire }
        assert.equal(
          code(() => verifyCallbackSign(body, { keys: 'k', now: at(expire + late) })),
          'EXPIRED',
        )
        assert.equal(
          verifyCallbackSign(body, { keys: 'k', now: at(expire + late), toleranceSeconds: late }),
          'k',
        )
      }),
    )
  })

  test('accepts any of several keys during a rotation and says which matched', () => {
    const body = { Sign: signCallback('new', 2000), ExpireTime: 2000 }
    assert.equal(verifyCallbackSign(body, { keys: ['old', 'new'], now: at(1000) }), 'new')
  })

  test('a body without Sign/ExpireTime or with wrong types is refused with a code', () => {
    assert.equal(
      code(() => verifyCallbackSign({}, { keys: 'k' })),
      'MISSING_SIGNATURE',
    )
    assert.equal(
      code(() => verifyCallbackSign({ Sign: 'x' }, { keys: 'k' })),
      'MISSING_SIGNATURE',
    )
    assert.equal(
      code(() => verifyCallbackSign({ Sign: 1, ExpireTime: 1 }, { keys: 'k' })),
      'MALFORMED_SIGNATURE',
    )
    assert.equal(
      code(() => verifyCallbackSign({ Sign: 'x', ExpireTime: '1' }, { keys: 'k' })),
      'MALFORMED_SIGNATURE',
    )
    assert.equal(
      code(() => verifyCallbackSign({ Sign: 'x', ExpireTime: 1.5 }, { keys: 'k' })),
      'MALFORMED_SIGNATURE',
    )
  })
})
