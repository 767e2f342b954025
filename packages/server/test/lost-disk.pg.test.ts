// A recording process that dies with its disk: two server processes on one
// PostgreSQL and one S3 bucket; the publisher records through A, the task is
// controlled through B; A is killed right after the stop and its data
// directory is gone (a container replaced), and A comes back on a new one.
// The task must still finish, within the wait for a dead process's segments,
// with every part that reached the bucket, the lost part counted
// (ExceptionCnt) and the reason in its problems. Runs when TEST_DATABASE_URL
// is set.
import assert from 'node:assert/strict'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { startS3rver } from '../src/media/test-media.ts'
import { download, publish, sleep, suiteServers, waitForStatus } from './media-helpers.ts'
import { startRequest, suiteSchema, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-lost-disk-')
let s3: Awaited<ReturnType<typeof startS3rver>>
const schema = suiteSchema('e2e_lost_disk')

before(async () => {
  s3 = await startS3rver(join(servers.root, 's3'), 'classes')
})
after(async () => {
  await s3.close()
})

test('a recording process killed with its disk right after the stop: the task finishes with what was stored, the loss counted and said', async () => {
  const env = {
    DATABASE_URL: schema.databaseUrl,
    ONLINE_RECORD_S3_BUCKET: 'classes',
    ONLINE_RECORD_S3_ENDPOINT: s3.endpoint,
    ONLINE_RECORD_S3_ACCESS_KEY_ID: 'S3RVER',
    ONLINE_RECORD_S3_SECRET_ACCESS_KEY: 'S3RVER',
    ONLINE_RECORD_SEGMENT_WAIT_S: '20',
  }
  const [a, b] = await Promise.all([servers.start('a', env), servers.start('b', env)])
  const client = tiwClient(b.url)
  const room = 9811
  const alice = publish({ rtmp: a.rtmp, room, userId: 'alice', seconds: 60 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await sleep(3000)
  // The first part closes and is stored at the pause.
  await client.PauseOnlineRecord(ids)
  await sleep(2000)
  await client.ResumeOnlineRecord(ids)
  await sleep(3000)
  await client.StopOnlineRecord(ids)
  await a.kill()
  await alice.exited
  const stoppedAt = Date.now()
  // Its container is replaced: the directory and what was in it are gone.
  rmSync(join(servers.root, 'a'), { recursive: true, force: true })
  const a2 = await servers.start('a-new', env)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 90_000)
  const tookMs = Date.now() - stoppedAt
  console.log(
    `ℹ finished ${tookMs} ms after the stop (segments of a dead process are waited for 20 s)`,
  )
  assert.ok(done.ExceptionCnt >= 1, `ExceptionCnt ${done.ExceptionCnt}`)
  const token = readFileSync(join(servers.root, 'b', 'admin-token'), 'utf8').trim()
  const task = (await (
    await fetch(`${b.url}/admin/v1/tasks/${ids.TaskId}`, {
      headers: { authorization: `Bearer ${token}` },
    })
  ).json()) as { task: { problems: { message: string }[] } }
  assert.ok(
    task.task.problems.some((p) => /lost|cut/.test(p.message)),
    JSON.stringify(task.task.problems),
  )
  // What reached the bucket before the kill is in the video.
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => v.UserId),
    ['alice'],
  )
  const v = videos[0] as VideoInfo
  const got = await download(v.VideoUrl, servers.root)
  assert.ok(got.durationMs >= 2000, `${got.durationMs} ms: the part before the pause at least`)
  for (const s of [a2, b]) assert.equal(await s.stop(), 0)
})
