// The classroom scenario with recordings stored in an S3-compatible bucket
// (s3rver): VideoUrls point into the bucket, and nothing is left locally.
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import S3rver from 's3rver'
import { concatScenario } from './media-scenario.ts'
import { type ServerProcess, startServer } from './server-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-media-s3-'))
const servers: ServerProcess[] = []
let s3: S3rver
let endpoint: string

before(async () => {
  s3 = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: join(dir, 's3'),
    configureBuckets: [{ name: 'recordings', configs: [] }],
  })
  const address = (await s3.run()) as AddressInfo
  endpoint = `http://127.0.0.1:${address.port}`
})
after(async () => {
  for (const s of servers) await s.kill()
  await s3.close()
  rmSync(dir, { recursive: true, force: true })
})

test('the classroom scenario with the recordings in an S3 bucket', async () => {
  const server = await startServer({
    ONLINE_RECORD_DATA_DIR: join(dir, 'data'),
    ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
    ONLINE_RECORD_S3_BUCKET: 'recordings',
    ONLINE_RECORD_S3_ENDPOINT: endpoint,
    ONLINE_RECORD_S3_ACCESS_KEY_ID: 'S3RVER',
    ONLINE_RECORD_S3_SECRET_ACCESS_KEY: 'S3RVER',
    ONLINE_RECORD_S3_PREFIX: 'classes/',
  })
  servers.push(server)
  const { taskId } = await concatScenario(server, join(dir, 'data'), 9201, (url) =>
    assert.ok(url.startsWith(`${endpoint}/recordings/classes/`), url),
  )
  // Uploaded and confirmed: the local copies and the raw segments are gone.
  const media = join(dir, 'data', 'media')
  assert.equal(existsSync(join(media, 'segments', taskId)), false)
  assert.deepEqual(existsSync(join(media, 'files')) ? readdirSync(join(media, 'files')) : [], [])
})
