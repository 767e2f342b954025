// Media faults with real processes: a recording process killed mid-stream, the
// whole server killed and restarted, and idle auto-stop once publishers leave.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import {
  blackSpans,
  download,
  gone,
  publish,
  segmentWriters,
  sleep,
  suiteServers,
  taskEvents,
  waitForStatus,
} from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-media-faults-')
const root = servers.root
const server = servers.start

/** The one video of `userId`, downloaded and checked against its VideoInfo. */
async function onlyVideo(
  videos: VideoInfo[],
  userId: string,
): Promise<{ v: VideoInfo; file: string }> {
  const mine = videos.filter((v) => v.UserId === userId)
  assert.equal(mine.length, 1, JSON.stringify(videos))
  const v = mine[0] as VideoInfo
  const got = await download(v.VideoUrl, root)
  assert.equal(got.bytes, v.VideoSize)
  assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 100)
  return { v, file: got.file }
}

test('a killed recording process is restarted: ExceptionCnt 1, the video spans the fault', async () => {
  const s = await server('fault')
  const client = tiwClient(s.url)
  const room = 9401
  const alice = publish({ rtmp: s.rtmp, room, userId: 'alice', seconds: 30 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  await sleep(3000)
  const writers = segmentWriters(s.child.pid as number)
  assert.equal(writers.length, 1, 'one recording process for the one stream')
  process.kill(writers[0] as number, 'SIGKILL')
  await sleep(3000)
  const during = await client.DescribeOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  assert.equal(during.ExceptionCnt, 1, 'counted while recording')
  const restarted = segmentWriters(s.child.pid as number)
  assert.equal(restarted.length, 1)
  assert.notEqual(restarted[0], writers[0])
  await client.StopOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  const done = await waitForStatus(client, taskId, 'FINISHED')
  await alice.stop()
  assert.equal(done.ExceptionCnt, 1)
  assert.equal(done.FinishReason, 'USER_CALL')
  const { v, file } = await onlyVideo(done.VideoInfos as VideoInfo[], 'alice')
  // Before and after the fault: from the first key frame to the stop, what
  // the killed process had not flushed (under a GOP and a restart) padded.
  assert.ok(v.VideoPlayTime < 1500, `starts at ${v.VideoPlayTime}`)
  assert.ok(
    Math.abs(v.VideoPlayTime + v.VideoDuration - done.TotalTime) < 1200,
    `${v.VideoPlayTime} + ${v.VideoDuration} ≈ ${done.TotalTime}`,
  )
  assert.ok(v.VideoDuration > 4500, `${v.VideoDuration} ms covers both sides`)
  const black = await blackSpans(file)
  assert.ok(
    black.every((b) => b.end - b.start < 2.5),
    JSON.stringify(black),
  )
  assert.equal(await s.stop(), 0)
  const events = await taskEvents(join(root, 'fault'), taskId)
  const finished = events.find((e) => e.eventType === 'OnlineRecordFinished')
  assert.equal(finished?.eventData.ExceptionCnt, 1, 'and in the Finished callback')
})

test('the server killed while recording: after the restart the task records on, one exception', async () => {
  const first = await server('restart')
  const room = 9501
  const alice1 = publish({ rtmp: first.rtmp, room, userId: 'alice', seconds: 30 })
  await sleep(1000)
  const { TaskId } = await tiwClient(first.url).StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  await sleep(3000)
  const writers = segmentWriters(first.child.pid as number)
  assert.equal(writers.length, 1)
  await first.kill()
  await alice1.exited // the publisher's connection dropped with the server
  // The recording process died with the server (it is tied to it).
  const deadline = Date.now() + 5000
  while (!writers.every(gone)) {
    assert.ok(Date.now() < deadline, `recording process ${writers} outlived the server`)
    await sleep(20)
  }

  const second = await server('restart')
  const client = tiwClient(second.url)
  const alice2 = publish({ rtmp: second.rtmp, room, userId: 'alice', seconds: 30 })
  // Long enough for 2 s of media even when a loaded machine takes seconds to reconnect.
  await sleep(5000)
  const during = await client.DescribeOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  assert.equal(during.Status, 'RECORDING')
  assert.equal(during.ExceptionCnt, 1, 'the crash cut the recording once')
  await client.StopOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  const done = await waitForStatus(client, taskId, 'FINISHED')
  await alice2.stop()
  assert.equal(done.ExceptionCnt, 1)
  const { v, file } = await onlyVideo(done.VideoInfos as VideoInfo[], 'alice')
  assert.ok(
    Math.abs(v.VideoPlayTime + v.VideoDuration - done.TotalTime) < 1200,
    `${v.VideoPlayTime} + ${v.VideoDuration} ≈ ${done.TotalTime}`,
  )
  // The time the server was down is padded; media on both sides is kept.
  const black = (await blackSpans(file)).filter((b) => b.end - b.start >= 1)
  assert.equal(black.length, 1, JSON.stringify(black))
  const gap = black[0] as { start: number; end: number }
  assert.ok(gap.start > 2, `media before the crash: ${gap.start} s`)
  assert.ok(v.VideoDuration / 1000 - gap.end > 2, `media after the restart: ${gap.end} s`)
})

test('idle: publishers leave and the task stops with AUTO after AutoStopTimeout', async () => {
  const s = await server('idle', { ONLINE_RECORD_MIN_AUTO_STOP_TIMEOUT_S: '1' })
  const client = tiwClient(s.url)
  const room = 9601
  const { TaskId } = await client.StartOnlineRecord({ ...startRequest(room), AutoStopTimeout: 2 })
  const taskId = TaskId as string
  // Media for longer than AutoStopTimeout: the activity keeps the task going.
  const bob = publish({ rtmp: s.rtmp, room, userId: 'bob', seconds: 4.5 })
  assert.equal(await bob.exited, 0)
  const done = await waitForStatus(client, taskId, 'FINISHED', 20_000)
  assert.equal(done.FinishReason, 'AUTO')
  const { v } = await onlyVideo(done.VideoInfos as VideoInfo[], 'bob')
  assert.ok(v.VideoDuration > 3500, `recorded while media flowed: ${v.VideoDuration} ms`)
  assert.ok(
    done.TotalTime - (v.VideoPlayTime + v.VideoDuration) >= 1500,
    'then idle for the timeout',
  )
})
