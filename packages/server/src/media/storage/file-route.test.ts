import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import Fastify from 'fastify'
import { ManualClock } from '../../clock.ts'
import { parseRange, registerFileRoute } from './file-route.ts'
import { LocalStorage } from './local.ts'

test('Range headers: one range, suffix and open ranges, unsatisfiable ones', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 })
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 })
  assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 })
  assert.deepEqual(parseRange('bytes=95-200', 100), { start: 95, end: 99 })
  assert.equal(parseRange(undefined, 100), undefined)
  assert.equal(parseRange('bytes=0-1,5-6', 100), undefined, 'several ranges: the whole file')
  assert.equal(parseRange('items=0-1', 100), undefined)
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable')
  assert.equal(parseRange('bytes=5-4', 100), 'unsatisfiable')
  assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable')
})

const root = mkdtempSync(join(tmpdir(), 'online-record-files-'))
after(() => rmSync(root, { recursive: true, force: true }))

const clock = new ManualClock(Date.UTC(2026, 11, 1))
const key = `abc123/${'0'.repeat(32)}.mp4`
const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
mkdirSync(join(root, 'files', 'abc123'), { recursive: true })
writeFileSync(join(root, 'files', key), body)
writeFileSync(join(root, 'files', 'secret.txt'), 'secret-content')
mkdirSync(join(root, 'segments', 'abc123'), { recursive: true })
writeFileSync(join(root, 'segments', 'abc123', `${'a'.repeat(24)}.mkv`), 'raw')

test('files are served whole, by range and by HEAD; nothing but exact recording names', async () => {
  const api = Fastify()
  registerFileRoute(api, new LocalStorage(root, () => 'http://x'), clock)
  const whole = await api.inject({ url: `/files/${key}` })
  assert.equal(whole.statusCode, 200)
  assert.equal(whole.headers['content-type'], 'video/mp4')
  assert.equal(whole.headers['accept-ranges'], 'bytes')
  assert.deepEqual(whole.rawPayload, body)
  const part = await api.inject({ url: `/files/${key}`, headers: { range: 'bytes=16-31' } })
  assert.equal(part.statusCode, 206)
  assert.equal(part.headers['content-range'], 'bytes 16-31/256')
  assert.deepEqual(part.rawPayload, body.subarray(16, 32))
  const beyond = await api.inject({ url: `/files/${key}`, headers: { range: 'bytes=300-' } })
  assert.equal(beyond.statusCode, 416)
  assert.equal(beyond.headers['content-range'], 'bytes */256')
  const head = await api.inject({ method: 'HEAD', url: `/files/${key}` })
  assert.equal(head.statusCode, 200)
  assert.equal(head.headers['content-length'], '256')
  for (const url of [
    '/files/',
    '/files/abc123',
    '/files/abc123/',
    '/files/secret.txt',
    '/files/../secret.txt',
    '/files/abc123/..%2f..%2fsecret.txt',
    '/files/abc123/%2e%2e/%2e%2e/files/secret.txt',
    '/files/abc123/..%5c..%5csecret.txt',
    `/files/abc123/${'1'.repeat(32)}.mp4`,
    `/files/abc123/${'0'.repeat(31)}.mp4`,
    `/files/abc123/${'0'.repeat(32)}.mp4.bak`,
    `/files/ABC123/${'0'.repeat(32)}.mp4`,
    `/files/segments/abc123/${'a'.repeat(24)}.mkv`,
  ]) {
    const r = await api.inject({ url })
    assert.equal(r.statusCode, 404, url)
    assert.ok(!/secret-content|raw/.test(r.payload), 'nothing leaks')
  }
  await api.close()
})

test('signed URLs: served while the signature holds and before it expires; 403 otherwise', async () => {
  const storage = new LocalStorage(root, () => 'http://files.test', {
    secret: 's3cret',
    ttlSeconds: 60,
  })
  const api = Fastify()
  registerFileRoute(api, storage, clock)
  const url = await storage.url(key, clock.now())
  assert.match(
    url,
    new RegExp(`^http://files\\.test/files/${key}\\?expires=\\d+&signature=[\\w-]{43}$`),
  )
  const path = url.replace('http://files.test', '')
  assert.equal((await api.inject({ url: path })).statusCode, 200)
  assert.equal((await api.inject({ url: `/files/${key}` })).statusCode, 403, 'unsigned')
  const tampered = path.replace(/expires=(\d+)/, (_m, e) => `expires=${Number(e) + 3600}`)
  assert.equal((await api.inject({ url: tampered })).statusCode, 403, 'a later expiry')
  const other = path.replace(key, `abc123/${'1'.repeat(32)}.mp4`)
  assert.equal((await api.inject({ url: other })).statusCode, 403, 'another name')
  clock.advance(61_000)
  const expired = await api.inject({ url: path })
  assert.equal(expired.statusCode, 403)
  assert.equal(expired.payload, 'this link has expired')
  await api.close()
})
