import assert from 'node:assert/strict'
import type { LookupAddress } from 'node:dns'
import { describe, test } from 'node:test'
import { callbackUrlProblem, isPrivateAddress, publicOnlyLookup } from './url-policy.ts'

describe('callback URL policy', () => {
  test('private, loopback and link-local addresses are recognised', () => {
    for (const a of [
      '127.0.0.1',
      '127.9.9.9',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
    ]) {
      assert.equal(isPrivateAddress(a), true, a)
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '1.1.1.1', '2606:4700::1111', 'example.com']) {
      assert.equal(isPrivateAddress(a), false, a)
    }
  })

  test('http(s) only, no credentials; private hosts only when blocking', () => {
    assert.equal(callbackUrlProblem('https://api.example.com/cb', true), undefined)
    assert.equal(callbackUrlProblem('http://127.0.0.1:9/cb', false), undefined)
    assert.match(callbackUrlProblem('ftp://example.com', false) ?? '', /http or https/)
    assert.match(callbackUrlProblem('not a url', false) ?? '', /not a URL/)
    assert.match(callbackUrlProblem('https://u:p@example.com', false) ?? '', /credentials/)
    for (const url of [
      'http://127.0.0.1/cb',
      'http://localhost:8080/cb',
      'http://api.localhost/cb',
      'http://[::1]/cb',
      'http://10.0.0.5/cb',
      'http://169.254.169.254/latest/meta-data',
    ]) {
      assert.match(callbackUrlProblem(url, true) ?? '', /loopback or private/, url)
    }
  })

  test('a name resolving to a private address is refused when connecting', async () => {
    const result = await new Promise<{ error: Error | null; address: unknown }>((resolve) =>
      publicOnlyLookup('localhost', { all: true }, (error, address) => resolve({ error, address })),
    )
    assert.match(result.error?.message ?? '', /localhost resolves to .*loopback or private/)
    assert.deepEqual(result.address as LookupAddress[], [])
  })
})
