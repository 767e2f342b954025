// Two server processes on one PostgreSQL and one data directory: the task is
// started, paused, resumed and stopped through one; the publisher records
// through the other, which learns of the task and its states from the store.
// Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { type Db, openDb } from '../src/store/db.ts'
import { download, pauseResumeStop, publish, suiteServers } from './media-helpers.ts'
import { startRequest, tiwClient } from './server-process.ts'

const base = process.env.TEST_DATABASE_URL as string
const schema = `e2e_media_${randomBytes(6).toString('hex')}`
const servers = suiteServers('online-record-media-pg-')
let admin: Db

before(async () => {
  admin = await openDb({ databaseUrl: base, poolSize: 1 })
  await admin.exec(`create schema ${schema}`)
})
after(async () => {
  await admin.exec(`drop schema ${schema} cascade`)
  await admin.close()
})

test('a publisher on one process records a task controlled through another', async () => {
  const url = new URL(base)
  url.searchParams.set('options', `-c search_path=${schema}`)
  const env = { DATABASE_URL: url.toString() }
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
