// The classroom scenario of the media acceptance: two publishers in a room,
// a task with Concat started through the official client, a pause, one
// publisher leaving and coming back, a stop; then every check on the result.
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { VideoInfo } from '@online-record/protocol'
import { assertSeedCallback, TestReceiver } from '../src/delivery/test-receiver.ts'
import { blackSpans, download, publish, sleep, waitForStatus } from './media-helpers.ts'
import { type ServerProcess, startRequest, TEST_APP, tiwClient } from './server-process.ts'

export interface FinishedData {
  TotalTime: number
  RecordStartTime: number
  RecordStopTime: number
  ExceptionCnt: number
  OmittedDurations: { VideoTime: number; PauseTime: number; ResumeTime: number }[]
  VideoInfos: VideoInfo[]
  FinishReason: string
}

const CALLBACK_KEY = 'media-scenario-key'

export interface ScenarioResult {
  taskId: string
  videos: VideoInfo[]
}

/**
 * Runs the scenario on a started server, stops the server, and checks the
 * callbacks a real receiver got, the files and the figures. `expectUrl` checks where the
 * VideoUrls point.
 */
export async function concatScenario(
  server: ServerProcess,
  room: number,
  expectUrl: (url: string) => void,
): Promise<ScenarioResult> {
  const client = tiwClient(server.url)
  // The app backend: a real receiver of the signed callbacks.
  const receiver = await TestReceiver.start()
  await client.SetOnlineRecordCallback({ SdkAppId: TEST_APP.sdkAppId, Callback: receiver.url })
  await client.SetOnlineRecordCallbackKey({
    SdkAppId: TEST_APP.sdkAppId,
    CallbackKey: CALLBACK_KEY,
  })
  const alice = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 30 })
  const bob1 = publish({ rtmp: server.rtmp, room, userId: 'bob', seconds: 30, frequency: 660 })
  // Both publish before the task starts: their codec headers are kept and
  // recording starts at their next key frame.
  await sleep(1500)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: taskId }
  await waitForStatus(client, taskId, 'RECORDING')
  await sleep(2000)
  const pausedAt = Date.now()
  await client.PauseOnlineRecord(ids)
  await sleep(1500)
  const resumedAt = Date.now()
  await client.ResumeOnlineRecord(ids)
  await sleep(1500)
  // Bob leaves (a clean unpublish) and comes back 3 s later.
  assert.equal(await bob1.stop(), 0)
  await sleep(3000)
  const bob2 = publish({ rtmp: server.rtmp, room, userId: 'bob', seconds: 30, frequency: 660 })
  await sleep(3000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, taskId, 'FINISHED')
  await Promise.all([alice.stop(), bob2.stop()])
  assert.deepEqual(done.Interrupts, [], 'a clean leave is not an interruption')
  const finished = done as unknown as FinishedData
  assert.equal(finished.FinishReason, 'USER_CALL')
  assert.equal(finished.ExceptionCnt, 0)

  // One pause, listed once, at its place on the replay timeline.
  assert.equal(finished.OmittedDurations.length, 1)
  const omitted = finished.OmittedDurations[0] as (typeof finished.OmittedDurations)[number]
  assert.ok(Math.abs(omitted.PauseTime - pausedAt) < 1000, 'PauseTime is the pause, Unix ms')
  assert.ok(Math.abs(omitted.ResumeTime - resumedAt) < 1000, 'ResumeTime is the resume, Unix ms')
  const pausedMs = omitted.ResumeTime - omitted.PauseTime
  assert.ok(Math.abs(omitted.VideoTime - 2000) < 800, `VideoTime ${omitted.VideoTime}`)
  // TotalTime is the recording time without the pause.
  const recorded = (finished.RecordStopTime - finished.RecordStartTime) * 1000
  assert.ok(
    Math.abs(finished.TotalTime + pausedMs - recorded) <= 1000,
    `TotalTime ${finished.TotalTime} + pause ${pausedMs} ≈ ${recorded}`,
  )

  // One video per user, each covering the replay timeline from its first
  // key frame to the stop: durations add up to TotalTime.
  const videos = finished.VideoInfos
  assert.deepEqual(videos.map((v) => [v.UserId, v.VideoType, v.VideoFormat]).sort(), [
    ['alice', 0, 'mp4'],
    ['bob', 0, 'mp4'],
  ])
  const dir = mkdtempSync(join(tmpdir(), 'online-record-dl-'))
  for (const v of videos) {
    assert.match(v.VideoId, /^[0-9a-f]{32}$/)
    expectUrl(v.VideoUrl)
    assert.ok(v.VideoPlayTime >= 0 && v.VideoPlayTime < 1500, `VideoPlayTime ${v.VideoPlayTime}`)
    assert.ok(
      Math.abs(v.VideoPlayTime + v.VideoDuration - finished.TotalTime) < 1200,
      `${v.UserId}: ${v.VideoPlayTime} + ${v.VideoDuration} ≈ TotalTime ${finished.TotalTime}`,
    )
    assert.deepEqual([v.Width, v.Height], [320, 240])
    const got = await download(v.VideoUrl, dir)
    assert.equal(got.bytes, v.VideoSize, `${v.UserId}: size`)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 100, `${v.UserId}: duration`)
  }
  // Bob's absence (about 3 s, while recording) is padded with black. Shorter
  // black stretches (up to a GOP and the publisher's start-up) are the wait
  // for the first key frame after the resume, in both videos.
  const bob = videos.find((v) => v.UserId === 'bob') as VideoInfo
  const alice2 = videos.find((v) => v.UserId === 'alice') as VideoInfo
  const long = (spans: { start: number; end: number }[]) =>
    spans.filter((s) => s.end - s.start >= 2)
  const bobBlack = await blackSpans(join(dir, bob.VideoUrl.split('/').pop() as string))
  assert.equal(long(bobBlack).length, 1, JSON.stringify(bobBlack))
  const gap = long(bobBlack)[0] as { start: number; end: number }
  assert.ok(gap.end - gap.start > 2.5 && gap.end - gap.start < 4.5, JSON.stringify(gap))
  // The absence sits after 2 s of recording, the pause, and 1.5 s more.
  const gapAt = bob.VideoPlayTime / 1000 + gap.start
  assert.ok(gapAt > 3 && gapAt < 4.8, `the absence starts at ${gapAt} s of the timeline`)
  const aliceBlack = await blackSpans(join(dir, alice2.VideoUrl.split('/').pop() as string))
  assert.deepEqual(long(aliceBlack), [], JSON.stringify(aliceBlack))

  const mine = () => receiver.received.filter((r) => r.taskId === taskId)
  await receiver.waitFor(() => mine().length >= 3, 15_000, 'Started, Stopped and Finished')
  assert.equal(await server.stop(), 0)
  await receiver.close()
  assert.deepEqual(
    mine().map((r) => [r.seq, r.json.EventType]),
    [
      [1, 'OnlineRecordStarted'],
      [2, 'OnlineRecordStopped'],
      [3, 'OnlineRecordFinished'],
    ],
  )
  for (const r of mine()) assertSeedCallback(r, CALLBACK_KEY)
  const callback = (mine()[2] as (typeof receiver.received)[number]).json
    .EventData as unknown as FinishedData
  for (const field of ['VideoInfos', 'OmittedDurations', 'TotalTime', 'ExceptionCnt'] as const) {
    assert.deepEqual(
      callback[field],
      finished[field],
      `the callback and Describe agree on ${field}`,
    )
  }
  return { taskId, videos }
}
