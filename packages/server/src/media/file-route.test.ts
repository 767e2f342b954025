import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import Fastify from 'fastify'
import { parseRange, registerFileRoute } from './file-route.ts'

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

test('files are served whole, by range and by HEAD; nothing outside the key shape', async () => {
  const key = `abc123/${'0'.repeat(32)}.mp4`
  const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  mkdirSync(join(root, 'abc123'))
  writeFileSync(join(root, key), body)
  writeFileSync(join(root, 'secret.txt'), 'no')
  const api = Fastify()
  registerFileRoute(api, root)
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
    '/files/secret.txt',
    '/files/../secret.txt',
    `/files/abc123/${'1'.repeat(32)}.mp4`,
  ]) {
    assert.equal((await api.inject({ url })).statusCode, 404, url)
  }
  await api.close()
})
