// Media acceptance with real processes: the classroom scenario with Concat,
// files in the local store served by the API.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import {
  blackSpans,
  download,
  frameCount,
  pauseResumeStop,
  publish,
  sleep,
  suiteServers,
} from './media-helpers.ts'
import { concatScenario } from './media-scenario.ts'
import { startRequest, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-media-')

test('two publishers, Concat, pause, a user leaving and returning: one spliced video each', async () => {
  const server = await servers.start('data')
  await concatScenario(server, 9101, (url) =>
    assert.ok(url.startsWith(`${server.url}/files/`), url),
  )
})

test('a second of media after a resume is kept: the short last segment is in the spliced video', async () => {
  const server = await servers.start('resume')
  const client = tiwClient(server.url)
  const room = 9111
  // A key frame every 200 ms: recording starts again at most that long after the resume.
  const alice = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 30, gop: 3 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  const { done } = await pauseResumeStop(client, taskId, {
    before: 2000,
    paused: 1500,
    after: 1000,
  })
  await alice.stop()
  const [v] = done.VideoInfos as VideoInfo[]
  assert.ok(v)
  assert.ok(
    Math.abs(v.VideoPlayTime + v.VideoDuration - done.TotalTime) <= 300,
    `${v.VideoPlayTime} + ${v.VideoDuration} ≈ TotalTime ${done.TotalTime}`,
  )
  const got = await download(v.VideoUrl, servers.root)
  // Every frame is there: 15 a second over the video's length, the pad included.
  const frames = await frameCount(got.file)
  assert.ok(
    Math.abs(frames - (v.VideoDuration * 15) / 1000) <= 3,
    `${frames} frames in ${v.VideoDuration} ms`,
  )
  // The last second is the publisher's picture, not a pad.
  const black = await blackSpans(got.file)
  const end = v.VideoDuration / 1000
  assert.ok(
    black.every((b) => b.end < end - 0.6),
    `black at the end: ${JSON.stringify(black)} of ${end} s`,
  )
})
