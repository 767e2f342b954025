// Two server processes on one PostgreSQL and one data directory: the task is
// started, paused, resumed and stopped through one; the publisher records
// through the other, which learns of the task and its states from the store.
// Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { download, pauseResumeStop, publish, suiteServers } from './media-helpers.ts'
import { startRequest, suiteSchema, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-media-pg-')
const schema = suiteSchema('e2e_media')

test('a publisher on one process records a task controlled through another', async () => {
  const env = { DATABASE_URL: schema.databaseUrl }
  const [control, media] = await Promise.all([
    servers.start('shared', env),
    servers.start('shared', env),
  ])
  const client = tiwClient(control.url)
  const room = 9701
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  const alice = publish({ rtmp: media.rtmp, room, userId: 'alice', seconds: 30 })
  const { pausedAt, done } = await pauseResumeStop(client, taskId, {
    before: 3000,
    paused: 2000,
    after: 3000,
  })
  await alice.stop()
  const videos = done.VideoInfos as VideoInfo[]
  assert.equal(videos.length, 1, JSON.stringify(videos))
  const v = videos[0] as VideoInfo
  assert.equal(v.UserId, 'alice')
  // The pause reached the other process within its poll: the spliced video
  // is the recording without the 2 s pause.
  assert.equal(done.OmittedDurations.length, 1)
  assert.ok(Math.abs((done.OmittedDurations[0]?.PauseTime ?? 0) - pausedAt) < 1000)
  assert.ok(
    Math.abs(v.VideoPlayTime + v.VideoDuration - done.TotalTime) < 1500,
    `${v.VideoPlayTime} + ${v.VideoDuration} ≈ ${done.TotalTime}`,
  )
  assert.ok(v.VideoDuration > 4000 && v.VideoDuration < 7000, `${v.VideoDuration}`)
  const got = await download(v.VideoUrl, servers.root)
  assert.equal(got.bytes, v.VideoSize)
  for (const s of [control, media]) assert.equal(await s.stop(), 0)
})
