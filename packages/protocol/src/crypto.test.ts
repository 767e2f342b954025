// The Node and the portable (pure JS) hash back-ends must agree bit for bit,
// since the package picks one per runtime.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import * as node from './crypto/node.ts'
import * as portable from './crypto/portable.ts'

const data = fc.oneof(fc.string({ unit: 'grapheme' }), fc.uint8Array({ maxLength: 300 }))

test('md5, sha256 and HMACs agree between back-ends', () => {
  fc.assert(
    fc.property(data, data, data, (key, a, b) => {
      assert.equal(portable.md5Hex(a), node.md5Hex(a))
      assert.equal(portable.sha256Hex(a), node.sha256Hex(a))
      assert.deepEqual([...portable.hmacSha256(key, a)], [...node.hmacSha256(key, a)])
      assert.equal(portable.hmacSha256Hex(key, a), node.hmacSha256Hex(key, a))
      assert.equal(portable.hmacSha256Base64(key, a, b), node.hmacSha256Base64(key, a, b))
      assert.equal(portable.hmacSha1Base64(key, a), node.hmacSha1Base64(key, a))
    }),
  )
})

test('base64 conversions agree between back-ends', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
      const text = node.bytesToBase64(bytes)
      assert.equal(portable.bytesToBase64(bytes), text)
      assert.deepEqual([...portable.base64ToBytes(text)], [...bytes])
      assert.deepEqual([...node.base64ToBytes(text)], [...bytes])
    }),
  )
})
