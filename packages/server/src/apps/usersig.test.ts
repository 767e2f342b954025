import assert from 'node:assert/strict'
import { test } from 'node:test'
import { deflateSync } from 'node:zlib'
import fc from 'fast-check'
import TLSSigAPIv2 from 'tls-sig-api-v2'
import { genUserSig, MAX_USERSIG_CHARS, verifyUserSig } from './usersig.ts'

const KEY = '5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e'

test('accepts what the official tls-sig-api-v2 library generates', () => {
  const sig = new TLSSigAPIv2.Api(1400000000, KEY).genUserSig('xiaojun', 3600)
  assert.deepEqual(verifyUserSig(sig, 1400000000, KEY, 'xiaojun', Date.now()).ok, true)
  assert.equal(
    (verifyUserSig(sig, 1400000000, KEY, 'xiaojun', Date.now() + 3_601_000) as { code: string })
      .code,
    'EXPIRED',
  )
})

test('round-trips, and each wrong part is named', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 32 }),
      fc.string({ minLength: 1, maxLength: 32 }),
      fc.integer({ min: 1, max: 10 ** 7 }),
      (app, user, expire) => {
        const now = 1_800_000_000_000
        const sig = genUserSig(app, KEY, user, expire, now)
        assert.equal(verifyUserSig(sig, app, KEY, user, now).ok, true)
        const code = (c: ReturnType<typeof verifyUserSig>) => (c.ok ? 'ok' : c.code)
        assert.equal(code(verifyUserSig(sig, app, KEY, `${user}x`, now)), 'WRONG_USER')
        assert.equal(code(verifyUserSig(sig, app + 1, KEY, user, now)), 'WRONG_APP')
        assert.equal(code(verifyUserSig(sig, app, `${KEY}0`, user, now)), 'BAD_SIGNATURE')
        assert.equal(code(verifyUserSig(sig, app, KEY, user, now + expire * 1000)), 'EXPIRED')
        assert.equal(code(verifyUserSig(`x${sig}`, app, KEY, user, now)), 'MALFORMED')
      },
    ),
    { numRuns: 50 },
  )
})

test('a deflate bomb is refused before it is inflated, and what a sig inflates to is capped', () => {
  // 245 KB of base64 that would inflate to about 180 MB: refused by its length alone.
  const bomb = deflateSync(Buffer.alloc(180 * 1024 * 1024), { level: 9 }).toString('base64')
  assert.ok(bomb.length > MAX_USERSIG_CHARS)
  const long = verifyUserSig(bomb, 1400000000, KEY, 'u', Date.now())
  assert.deepEqual([long.ok, !long.ok && long.code], [false, 'MALFORMED'])
  // Under the length cap, but inflating past MAX_USERSIG_INFLATED_BYTES.
  const small = deflateSync(Buffer.alloc(2 * 1024 * 1024), { level: 9 }).toString('base64')
  assert.ok(small.length <= MAX_USERSIG_CHARS)
  const capped = verifyUserSig(small, 1400000000, KEY, 'u', Date.now())
  assert.deepEqual([capped.ok, !capped.ok && capped.code], [false, 'MALFORMED'])
})
