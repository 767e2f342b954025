// The classroom scenario with recordings stored in an S3-compatible bucket
// (s3rver): VideoUrls point into the bucket, and nothing is left locally.
import assert from 'node:assert/strict'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { startS3rver } from '../src/media/test-media.ts'
import { suiteServers } from './media-helpers.ts'
import { concatScenario } from './media-scenario.ts'

const servers = suiteServers('online-record-media-s3-')
const dir = servers.root
let s3: Awaited<ReturnType<typeof startS3rver>>
let endpoint: string

before(async () => {
  s3 = await startS3rver(join(dir, 's3'), 'recordings')
  endpoint = s3.endpoint
})
after(() => s3.close())

test('the classroom scenario with the recordings in an S3 bucket', async () => {
  const server = await servers.start('data', {
    ONLINE_RECORD_S3_BUCKET: 'recordings',
    ONLINE_RECORD_S3_ENDPOINT: endpoint,
    ONLINE_RECORD_S3_ACCESS_KEY_ID: 'S3RVER',
    ONLINE_RECORD_S3_SECRET_ACCESS_KEY: 'S3RVER',
    ONLINE_RECORD_S3_PREFIX: 'classes/',
  })
  const { taskId } = await concatScenario(server, 9201, (url) =>
    assert.ok(url.startsWith(`${endpoint}/recordings/classes/`), url),
  )
  // Uploaded and confirmed: the local copies and the raw segments are gone.
  const media = join(dir, 'data', 'media')
  assert.equal(existsSync(join(media, 'segments', taskId)), false)
  assert.deepEqual(existsSync(join(media, 'files')) ? readdirSync(join(media, 'files')) : [], [])
})
