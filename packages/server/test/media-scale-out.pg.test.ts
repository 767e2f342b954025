// No shared disk: two server processes on one PostgreSQL, each with its own
// data directory, one S3 bucket (s3rver). The publisher records through A;
// the task is paused, resumed and stopped through B; A is killed right after
// the stop and started again. The task is finished (by B, or by A after its
// restart) from what is in the bucket, and every VideoUrl is whole.
// Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { startS3rver } from '../src/media/test-media.ts'
import { download, publish, sleep, suiteServers, waitForStatus } from './media-helpers.ts'
import { startRequest, suiteSchema, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-scale-out-')
let s3: Awaited<ReturnType<typeof startS3rver>>

const schema = suiteSchema('e2e_scale')

before(async () => {
  s3 = await startS3rver(join(servers.root, 's3'), 'classes')
})
after(async () => {
  await s3.close()
})

test('separate data directories, one bucket: a process killed after the stop loses nothing', async () => {
  const env = {
    DATABASE_URL: schema.databaseUrl,
    ONLINE_RECORD_S3_BUCKET: 'classes',
    ONLINE_RECORD_S3_ENDPOINT: s3.endpoint,
    ONLINE_RECORD_S3_ACCESS_KEY_ID: 'S3RVER',
    ONLINE_RECORD_S3_SECRET_ACCESS_KEY: 'S3RVER',
    // A segment a dead process never stored is waited for this long.
    ONLINE_RECORD_SEGMENT_WAIT_S: '60',
  }
  const [a, b] = await Promise.all([servers.start('a', env), servers.start('b', env)])
  const client = tiwClient(b.url)
  const ids = (taskId: string) => ({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  const room = 9801
  const alice = publish({ rtmp: a.rtmp, room, userId: 'alice', seconds: 60 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  await sleep(3000)
  await client.PauseOnlineRecord(ids(taskId))
  await sleep(2000)
  await client.ResumeOnlineRecord(ids(taskId))
  await sleep(3000)
  await client.StopOnlineRecord(ids(taskId))
  await a.kill()
  await alice.exited
  // A comes back on its own directory; whichever process gets there finishes the task.
  const a2 = await servers.start('a', env)
  const done = await waitForStatus(client, taskId, 'FINISHED', 90_000)
  assert.equal(done.FinishReason, 'USER_CALL')
  assert.equal(done.ExceptionCnt, 0, 'nothing was lost: the kill came after the stop')
  assert.equal(done.OmittedDurations.length, 1)
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => v.UserId),
    ['alice'],
  )
  const v = videos[0] as VideoInfo
  assert.ok(v.VideoUrl.startsWith(`${s3.endpoint}/classes/`), v.VideoUrl)
  assert.ok(
    Math.abs(v.VideoPlayTime + v.VideoDuration - done.TotalTime) < 1200,
    `${v.VideoPlayTime} + ${v.VideoDuration} ≈ ${done.TotalTime}`,
  )
  assert.ok(v.VideoDuration > 4500, `${v.VideoDuration} ms: both sides of the pause`)
  const got = await download(v.VideoUrl, servers.root)
  assert.equal(got.bytes, v.VideoSize)
  assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 100)
  // B never had A's files: its own directory holds no segment of the task.
  const bSegments = join(servers.root, 'b', 'media', 'segments')
  assert.deepEqual(existsSync(bSegments) ? readdirSync(bSegments) : [], [])
  for (const s of [a2, b]) assert.equal(await s.stop(), 0)
})
