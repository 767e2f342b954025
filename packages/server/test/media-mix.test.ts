// The mixed video end to end: real ffmpeg publishers over RTMP with solid
// colours and distinct tones, a task started, paused, resumed and stopped
// through the official client with MixStream ModelId 2, TeacherId and
// RecordControl; the mixed video is downloaded and read pixel by pixel and
// tone by tone, beside the per-stream files RecordControl says to make.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { probe } from '../src/media/ffmpeg/probe.ts'
import { mixUnsupported } from '../src/media/post/mix.ts'
import { TEMPLATE_BACKGROUND } from '../src/media/post/mix-layout.ts'
import { assertColours, assertTones } from '../src/media/test-media.ts'
import {
  blackSpans,
  download,
  gone,
  mixers,
  publish,
  sleep,
  suiteServers,
  taskEvents,
  tools,
  waitForStatus,
} from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-mix-')

test('a class mixed with ModelId 2: teacher first, a late joiner, a student away and back, a muted and an unrecorded one, a pause cut', async (t) => {
  if (await mixUnsupported(tools)) {
    return t.diagnostic('this ffmpeg cannot mix: the refusal is tested in mix.test.ts')
  }
  const server = await servers.start('data')
  const client = tiwClient(server.url)
  const room = 9301
  const rtmp = server.rtmp
  const user = (userId: string, color: string, frequency: number, seconds = 60) =>
    publish({ rtmp, room, userId, color, frequency, seconds })
  const teacher = user('teacher', 'red', 440)
  let studentB = user('studentB', 'blue', 880)
  const hiddenD = user('hiddenD', 'magenta', 1300)
  await sleep(1500)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
    MixStream: { Enabled: true, ModelId: 2, TeacherId: 'teacher' },
    Extras: ['MIX_STREAM'],
    RecordControl: {
      Enabled: true,
      StreamControls: [
        { StreamId: 'muted', DisableAudio: true },
        { StreamId: 'hidden', DisableRecord: true },
      ],
    },
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  const started = Date.now()
  const until = (ms: number) => sleep(Math.max(0, started + ms - Date.now()))
  // C joins at 2 s; B leaves at 4 s and is back at 7 s; A joins at 10 s;
  // paused from 13 s to 16 s; stop at 21 s.
  await until(2000)
  const mutedC = user('mutedC', 'yellow', 1000)
  await until(4000)
  await studentB.stop()
  await until(7000)
  studentB = user('studentB', 'blue', 880)
  await until(10_000)
  const studentA = user('studentA', 'lime', 660)
  await until(13_000)
  await client.PauseOnlineRecord(ids)
  await until(16_000)
  await client.ResumeOnlineRecord(ids)
  await until(21_000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 180_000)
  await Promise.all([teacher, studentB, mutedC, hiddenD, studentA].map((p) => p.stop()))

  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => `${v.UserId}/${v.VideoType}`).sort(),
    ['mutedC/0', 'studentA/0', 'studentB/0', 'teacher/0', `tic_mixstream_${room}_2/3`],
    'hiddenD is not recorded (DisableRecord), in its own file or in the mix',
  )
  assert.equal(done.OmittedDurations.length, 1)
  const mix = videos.find((v) => v.VideoType === 3) as VideoInfo
  assert.deepEqual([mix.VideoPlayTime, mix.Width, mix.Height], [0, 1624, 1000])
  const file = await download(mix.VideoUrl, servers.root)
  assert.ok(
    Math.abs(file.durationMs - done.TotalTime) <= 200,
    `mixed video ${file.durationMs} ms, TotalTime ${done.TotalTime}`,
  )
  for (const v of videos.filter((v) => v.VideoType === 0)) {
    const got = await download(v.VideoUrl, servers.root)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 300, `${v.UserId}`)
    const info = await probe(tools.ffprobe, got.file)
    assert.equal(
      info.audio === undefined,
      v.UserId === 'mutedC',
      `${v.UserId}: audio as RecordControl says`,
    )
  }

  // Where things happened on the replay timeline, from the recordings
  // themselves (a loaded machine shifts them by a second or more): when C
  // and A first appear, and B's absence (the pad in B's spliced video).
  const at = (user: string) =>
    (videos.find((v) => v.UserId === user) as VideoInfo).VideoPlayTime / 1000
  const b = videos.find((v) => v.UserId === 'studentB') as VideoInfo
  const [away] = (await blackSpans((await download(b.VideoUrl, servers.root)).file)).filter(
    (s) => s.end - s.start > 1.5,
  )
  assert.ok(away, "B's absence is padded in B's video")
  const gone = { from: b.VideoPlayTime / 1000 + away.start, to: b.VideoPlayTime / 1000 + away.end }
  const [tC, tA, end] = [at('mutedC'), at('studentA'), done.TotalTime / 1000]
  const pausedAt = (done.OmittedDurations[0]?.VideoTime ?? 0) / 1000
  assert.ok(
    tC > 1 && tC < gone.from && gone.to < tA && tA < pausedAt - 1 && pausedAt < end - 3,
    JSON.stringify({ tC, gone, tA, end }),
  )

  // Windows: teacher (TeacherId), then in order of appearance: studentB, mutedC, studentA.
  const win = (i: number, color: string): [number, number, string] => [
    1456,
    ([8, 256, 504, 752][i] as number) + 120,
    color,
  ]
  const check = (seconds: number, expected: [number, number, string][]) =>
    assertColours(tools, file.file, seconds, expected)
  const board: [number, number, string] = [648, 488, TEMPLATE_BACKGROUND]
  const slot = TEMPLATE_BACKGROUND
  await check(tC - 0.4, [win(0, '#FF0000'), win(1, '#0000FF'), win(2, slot), win(3, slot), board])
  await check((gone.from + gone.to) / 2, [
    win(0, '#FF0000'),
    win(1, slot),
    win(2, '#FFFF00'),
    win(3, slot),
  ])
  await check((gone.to + tA) / 2, [
    win(0, '#FF0000'),
    win(1, '#0000FF'),
    win(2, '#FFFF00'),
    win(3, slot),
  ])
  await check(end - 1, [win(0, '#FF0000'), win(1, '#0000FF'), win(2, '#FFFF00'), win(3, '#00FF00')])
  const tones = (from: number, to: number, present: Record<number, boolean>) =>
    assertTones(tools, file.file, from, to, present)
  // The muted and the unrecorded users' tones are never in the mix.
  await tones(0.3, gone.from - 0.3, { 440: true, 880: true, 660: false, 1000: false, 1300: false })
  await tones(gone.from + 0.3, gone.to - 0.3, { 440: true, 880: false, 660: false })
  // Between A's join and the pause: after a resume each stream waits for its next key frame.
  await tones(tA + 0.4, pausedAt - 0.3, {
    440: true,
    880: true,
    660: true,
    1000: false,
    1300: false,
  })

  // The Finished callback lists the mixed video as Describe does.
  await server.kill()
  const events = await taskEvents(join(servers.root, 'data'), ids.TaskId)
  const finished = events.find((e) => e.eventType === 'OnlineRecordFinished')
  const listed = (finished?.eventData.VideoInfos as VideoInfo[] | undefined) ?? []
  assert.ok(listed.some((v) => v.VideoType === 3 && v.UserId === mix.UserId))
})

test('the server killed with -9 while mixing: no mix process is left, and after the restart the task finishes with one mixed video', async (t) => {
  if (await mixUnsupported(tools)) {
    return t.diagnostic('this ffmpeg cannot mix: the refusal is tested in mix.test.ts')
  }
  // A heavy layout on one encoder thread: the mix runs for seconds.
  const env = { ONLINE_RECORD_MIX_THREADS: '1' }
  const first = await servers.start('killed', env)
  const room = 9311
  const teacher = publish({ rtmp: first.rtmp, room, userId: 'teacher', color: 'red', seconds: 60 })
  await sleep(1500)
  const { TaskId } = await tiwClient(first.url).StartOnlineRecord({
    ...startRequest(room),
    MixStream: {
      Enabled: true,
      Custom: {
        Canvas: { LayoutParams: { Width: 3000, Height: 3000 } },
        InputStreamList: [
          { LayoutParams: { Width: 3000, Height: 3000 }, InputStreamId: 'teacher' },
        ],
      },
    },
    Extras: ['MIX_STREAM'],
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await sleep(8000)
  await tiwClient(first.url).StopOnlineRecord(ids)
  const serverPid = first.child.pid as number
  const deadline = Date.now() + 120_000
  let pids = mixers(serverPid)
  while (pids.length === 0) {
    assert.ok(Date.now() < deadline, `no mix began:\n${first.output()}`)
    await sleep(50)
    pids = mixers(serverPid)
  }
  await first.kill()
  await teacher.kill()
  // The mix dies with the server: the restart never finds it still writing.
  const killed = Date.now() + 5000
  while (!pids.every(gone)) {
    assert.ok(Date.now() < killed, `mix process(es) ${pids.join(', ')} outlived the server`)
    await sleep(20)
  }

  const second = await servers.start('killed', env)
  const done = await waitForStatus(tiwClient(second.url), ids.TaskId, 'FINISHED', 300_000)
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(videos.map((v) => `${v.UserId}/${v.VideoType}`).sort(), [
    'teacher/0',
    `tic_mixstream_${room}_101/3`,
  ])
  const mix = videos.find((v) => v.VideoType === 3) as VideoInfo
  const file = await download(mix.VideoUrl, servers.root)
  assert.deepEqual([file.width, file.height], [3000, 3000])
  assert.ok(
    Math.abs(file.durationMs - done.TotalTime) <= 300,
    `mixed video ${file.durationMs} ms, TotalTime ${done.TotalTime}`,
  )
  t.diagnostic(`mix killed with the server (pid ${pids.join(', ')}); made again after the restart`)
})
