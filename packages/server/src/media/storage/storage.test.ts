import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { startS3rver } from '../test-media.ts'
import { LocalStorage } from './local.ts'
import { withRetry } from './object-storage.ts'
import { type S3Settings, S3Storage } from './s3.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-storage-'))
let s3: Awaited<ReturnType<typeof startS3rver>>
let endpoint: string
before(async () => {
  s3 = await startS3rver(join(dir, 's3'), 'media')
  endpoint = s3.endpoint
})
after(async () => {
  await s3.close()
  rmSync(dir, { recursive: true, force: true })
})

const key = `task1/${'a'.repeat(32)}.mp4`
const file = (name: string, bytes = 3 * 1024 * 1024 + 17) => {
  const path = join(dir, name)
  writeFileSync(path, Buffer.alloc(bytes, name.charCodeAt(0)))
  return path
}
const settings = (over: Partial<S3Settings> = {}): S3Settings => ({
  bucket: 'media',
  endpoint,
  region: 'us-east-1',
  accessKeyId: 'S3RVER',
  secretAccessKey: 'S3RVER',
  prefix: 'rec/',
  publicUrl: undefined,
  forcePathStyle: true,
  ...over,
})

test('local: a put moves the file under its key; the URL uses the base read at call time', async () => {
  let base = 'http://a'
  const storage = new LocalStorage(dir, () => base)
  const source = file('local')
  await storage.put(key, source)
  assert.equal(existsSync(source), false)
  assert.equal(readFileSync(join(dir, 'files', key)).length, 3 * 1024 * 1024 + 17)
  base = 'http://b:8080'
  assert.equal(await storage.url(key, 0), `http://b:8080/files/${key}`)
  assert.equal(await storage.fetch(key), join(dir, 'files', key))
  await assert.rejects(storage.put('../x.mp4', file('x')), /bad storage key/)
  await storage.delete(key)
  assert.equal(existsSync(join(dir, 'files', key)), false)
  // A segment is stored where the recorder wrote it: nothing moves.
  const segment = `segments/task1/${'b'.repeat(24)}.mkv`
  mkdirSync(join(dir, 'segments', 'task1'), { recursive: true })
  writeFileSync(join(dir, segment), 'raw')
  await storage.put(segment, join(dir, segment))
  assert.equal(await storage.fetch(segment), join(dir, segment))
  await storage.delete(segment)
  assert.equal(existsSync(join(dir, 'segments', 'task1')), false, 'its directory goes with it')
})

test('S3: the object is stored byte for byte, then the local copy goes; delete removes it', async () => {
  const storage = new S3Storage(settings())
  const source = file('upload')
  const original = readFileSync(source)
  await storage.put(key, source, 'video/mp4')
  assert.equal(existsSync(source), false, 'removed once confirmed')
  const url = await storage.url(key, 0)
  assert.equal(url, `${endpoint}/media/rec/${key}`)
  const fetched = await storage.fetch(key, join(dir, 'fetched'))
  assert.ok(readFileSync(fetched).equals(original), 'fetched back whole')
  const got = Buffer.from(await (await fetch(url)).arrayBuffer())
  // Without WHEN_REQUIRED checksums, the aws-chunked framing would be stored.
  assert.ok(got.equals(original), 'identical bytes')
  await storage.delete(key)
  assert.equal((await fetch(url)).status, 404)
  storage.close()
})

test('S3: a store that cannot be reached is retried, then fails, and the file stays', async () => {
  const storage = new S3Storage(settings({ endpoint: 'http://127.0.0.1:1', bucket: 'none' }), {
    retry: { attempts: 2, baseDelayMs: 10 },
  })
  const source = file('kept', 100)
  await assert.rejects(storage.put(key, source, 'video/mp4'))
  assert.equal(existsSync(source), true, 'never deleted before an upload is confirmed')
  assert.equal(
    await new S3Storage(settings({ publicUrl: 'https://cdn.example.com' })).url(key, 0),
    `https://cdn.example.com/rec/${key}`,
  )
  storage.close()
})

test('withRetry: backs off, gives the last error, calls onRetry between attempts', async () => {
  const retried: number[] = []
  let calls = 0
  const value = await withRetry(
    async () => {
      if (++calls < 3) throw new Error(`no ${calls}`)
      return 'ok'
    },
    { attempts: 3, baseDelayMs: 1 },
    (_e, attempt) => retried.push(attempt),
  )
  assert.equal(value, 'ok')
  assert.deepEqual(retried, [1, 2])
  await assert.rejects(
    withRetry(async () => Promise.reject(new Error('always')), { attempts: 2, baseDelayMs: 1 }),
    /always/,
  )
})

test('S3 presigned: VideoUrls are GETs signed for their lifetime', async () => {
  const storage = new S3Storage(settings({ presignTtlSeconds: 600 }))
  const source = file('presigned', 1000)
  await storage.put(key, source, 'video/mp4')
  const url = await storage.url(key, 0)
  assert.match(url, /X-Amz-Expires=600/)
  assert.match(url, /X-Amz-Signature=[0-9a-f]{64}/)
  const got = await fetch(url)
  assert.equal(got.status, 200)
  assert.equal((await got.arrayBuffer()).byteLength, 1000)
  // (s3rver does not check signatures, so a forged one is not tried here.)
  await storage.delete(key)
  storage.close()
})
