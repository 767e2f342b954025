// Media acceptance with real processes, Concat disabled: one file per
// continuous segment at its place on the replay timeline; a sub-stream; an mp3
// per video; the recording user and a publisher with a wrong UserSig appear
// nowhere.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { genUserSig } from '../src/apps/usersig.ts'
import {
  download,
  pauseResumeStop,
  publish,
  suiteServers,
  taskEvents,
  waitForStatus,
} from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-media-seg-')
const dir = join(servers.root, 'data')

test('Concat disabled: a file per segment with its VideoPlayTime; sub-stream, mp3, refused publishers', async () => {
  const server = await servers.start('data')
  const room = 9301
  const client = tiwClient(server.url)
  const request = startRequest(room)
  const { TaskId } = await client.StartOnlineRecord({ ...request, AudioFileNeeded: true })
  const startedAt = Date.now()
  const taskId = TaskId as string
  const _ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: taskId }
  await waitForStatus(client, taskId, 'RECORDING')

  const publishedAt = Date.now() - startedAt
  const carol = publish({ rtmp: server.rtmp, room, userId: 'carol', seconds: 30 })
  const screen = publish({ rtmp: server.rtmp, room, userId: 'carol', seconds: 30, aux: true })
  // The recording user's own id, correctly signed: never a recorded stream.
  const recorder = publish({ rtmp: server.rtmp, room, userId: request.RecordUserId, seconds: 30 })
  // A UserSig signed with another key: refused at publish.
  const mallory = publish({
    rtmp: server.rtmp,
    room,
    userId: 'mallory',
    seconds: 30,
    userSig: genUserSig(TEST_APP.sdkAppId, 'd'.repeat(64), 'mallory', 3600),
  })
  // So is a UserSig for someone else.
  const zed = publish({
    rtmp: server.rtmp,
    room,
    userId: 'zed',
    seconds: 30,
    userSig: genUserSig(TEST_APP.sdkAppId, TEST_APP.userSigKey, 'carol', 3600),
  })
  assert.notEqual(await mallory.exited, 0, 'a wrong UserSig is refused')
  assert.notEqual(await zed.exited, 0, "another user's UserSig is refused")
  const { pausedAt, done } = await pauseResumeStop(client, taskId, {
    before: 3000,
    paused: 1500,
    after: 3000,
  })
  // Where the pause falls on the replay timeline, as the client sees it.
  const pauseAt = pausedAt - startedAt
  await Promise.all([carol.stop(), screen.stop(), recorder.stop()])

  assert.deepEqual(done.OmittedDurations, [], 'nothing is cut without Concat')
  const videos = done.VideoInfos as VideoInfo[]
  const of = (userId: string, type: number) =>
    videos.filter((v) => v.UserId === userId && v.VideoType === type)
  // Two segments (before and after the pause) per stream, each with its mp3.
  assert.deepEqual(
    [...new Set(videos.map((v) => `${v.UserId}/${v.VideoType}/${v.VideoFormat}`))].sort(),
    ['carol/0/mp4', 'carol/4/mp3', 'tic_substream_carol/1/mp4', 'tic_substream_carol/4/mp3'],
  )
  assert.equal(videos.length, 8, JSON.stringify(videos))
  for (const [userId, type] of [
    ['carol', 0],
    ['tic_substream_carol', 1],
  ] as const) {
    const [first, second] = of(userId, type) as [VideoInfo, VideoInfo]
    // Its first key frame is its first frame, sent once ffmpeg is up (a
    // second or more on a loaded machine): not the task's start.
    assert.ok(
      first.VideoPlayTime >= publishedAt - 1000 && first.VideoPlayTime < publishedAt + 5000,
      `${userId} starts at its first key frame: ${first.VideoPlayTime} ms, published at ${publishedAt} ms`,
    )
    // The first segment ends at the pause; the second starts at the first key
    // frame after the resume, at the same place on the replay timeline.
    assert.ok(
      Math.abs(first.VideoPlayTime + first.VideoDuration - pauseAt) < 800,
      `${userId}: ${first.VideoPlayTime} + ${first.VideoDuration} ≈ ${pauseAt}`,
    )
    assert.ok(
      second.VideoPlayTime >= pauseAt - 500 && second.VideoPlayTime < pauseAt + 1500,
      `${userId}: second segment at ${second.VideoPlayTime}`,
    )
    assert.ok(
      Math.abs(second.VideoPlayTime + second.VideoDuration - done.TotalTime) < 1200,
      `${userId}: the second segment ends at TotalTime ${done.TotalTime}`,
    )
    const mp3s = of(userId, 4)
    assert.deepEqual(
      mp3s.map((m) => m.VideoPlayTime),
      [first.VideoPlayTime, second.VideoPlayTime],
    )
    for (const m of mp3s) assert.deepEqual([m.Width, m.Height], [0, 0])
  }
  const dl = mkdtempSync(join(tmpdir(), 'online-record-dl-'))
  for (const v of videos) {
    const got = await download(v.VideoUrl, dl)
    assert.equal(got.bytes, v.VideoSize, `${v.UserId} ${v.VideoFormat}: size`)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 100, `${v.UserId}: duration`)
    if (v.VideoFormat === 'mp4') assert.deepEqual([got.width, got.height], [320, 240])
  }
  // A Range request gets the bytes asked for.
  const part = await fetch((videos[0] as VideoInfo).VideoUrl, { headers: { range: 'bytes=10-19' } })
  assert.equal(part.status, 206)
  assert.equal(
    part.headers.get('content-range'),
    `bytes 10-19/${(videos[0] as VideoInfo).VideoSize}`,
  )
  assert.equal((await part.arrayBuffer()).byteLength, 10)
  rmSync(dl, { recursive: true, force: true })

  assert.equal(await server.stop(), 0)
  const events = await taskEvents(dir, taskId)
  const text = JSON.stringify(events.map((e) => e.eventData))
  for (const absent of ['mallory', 'zed']) assert.ok(!text.includes(absent), `${absent} appears`)
  assert.ok(!videos.some((v) => v.UserId === request.RecordUserId), 'the recording user appears')
})
