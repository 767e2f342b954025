// The mix stage on real files: solid-colour publishers with distinct tones,
// recorded as the recording process writes segments (Matroska), a pause, a
// late joiner and a student who leaves and returns; the mixed video is read
// back pixel by pixel and tone by tone.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import { Apps } from '../../apps/apps.ts'
import { ManualClock } from '../../clock.ts'
import { pgliteFactory } from '../../store/test-db.ts'
import { Manifest } from '../capture/manifest.ts'
import { type MediaTools, resolveMediaTools, runTool } from '../ffmpeg/ffmpeg-tools.ts'
import type { MediaInfo } from '../ffmpeg/probe.ts'
import { probe } from '../ffmpeg/probe.ts'
import { LocalStorage } from '../storage/local.ts'
import { segmentKey } from '../storage/object-storage.ts'
import { assertColours, assertTones, CONCAT_REQUEST, testSourceArgs } from '../test-media.ts'
import { budgetFor, decoding, estimateMs, NO_WORK } from './budget.ts'
import { type MixInput, MixSlots, mixGraph, mixUnsupported, mixWork } from './mix.ts'
import { assignStreams, layoutOf, TEMPLATE_BACKGROUND } from './mix-layout.ts'
import { PostProcessor } from './post-process.ts'
import { NotReady } from './segments.ts'

const tools = resolveMediaTools()
const clock = new ManualClock(Date.UTC(2026, 11, 2))
const dir = mkdtempSync(join(tmpdir(), 'online-record-mix-'))
let handle: Awaited<ReturnType<typeof pgliteFactory.open>>
after(async () => {
  await handle?.dispose()
  rmSync(dir, { recursive: true, force: true })
})
before(async () => {
  handle = await pgliteFactory.open(clock)
  await new Apps(handle.db, clock).create({ sdkAppId: 1 })
})

const RED = '#FF0000'
const GREEN = '#00FF00'
const BLUE = '#0000FF'
const YELLOW = '#FFFF00'

/**
 * The class, in wall-clock ms from the start (a pause from 6 s to 8 s, stop
 * at 12 s: the replay timeline is 10 s, the pause at 6 s on it):
 *   teacher  red   440 Hz  0–6, 8–12
 *   studentA green 660 Hz  3–6, 8–12   (joins 3 s late)
 *   studentB blue  880 Hz  0–2, 4–6, 8–12 (away from 2 s to 4 s)
 */
const CLASS = [
  {
    user: 'teacher',
    color: 'red',
    frequency: 440,
    spans: [
      [0, 6000],
      [8000, 12000],
    ],
  },
  {
    user: 'studentA',
    color: 'lime',
    frequency: 660,
    spans: [
      [3000, 6000],
      [8000, 12000],
    ],
  },
  {
    user: 'studentB',
    color: 'blue',
    frequency: 880,
    spans: [
      [0, 2000],
      [4000, 6000],
      [8000, 12000],
    ],
  },
] as const

let tasks = 0

/** The class recorded as segments of a new task; returns its post-processor and finish spec. */
async function recordedClass(
  request: Partial<StartOnlineRecordRequest>,
  options: { tools?: MediaTools; mix?: ConstructorParameters<typeof PostProcessor>[0]['mix'] } = {},
) {
  const taskId = `mixtask${++tasks}`
  const media = join(dir, 'media')
  mkdirSync(join(media, 'segments', taskId), { recursive: true })
  await handle.db.query(
    `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status, request,
       created_at_ms, last_activity_ms) values ($1, 1, 1, '1', 'rec', 'STOPPED', '{}', 0, 0)`,
    [taskId],
  )
  const t0 = clock.now()
  const manifest = new Manifest(handle.db, clock, 'me')
  let n = 0
  for (const p of CLASS) {
    for (const [from, to] of p.spans) {
      const id = Buffer.from(`${taskId}-${++n}`).toString('hex').padEnd(24, '0').slice(-24)
      const key = segmentKey(taskId, id)
      await runTool(tools.ffmpeg, [
        ...testSourceArgs({
          seconds: (to - from) / 1000,
          color: p.color,
          frequency: p.frequency,
          preset: 'ultrafast',
        }),
        ...['-f', 'matroska', '-y', join(media, key)],
      ])
      await manifest.openSegment({
        segmentId: id,
        taskId,
        streamId: p.user,
        userId: p.user,
        videoType: 0,
        file: key,
        startMs: t0 + from,
      })
      await manifest.closeSegment(id, t0 + to, to === 6000 ? 'pause' : 'leave')
      await manifest.markStored(id, key)
    }
  }
  const logs: string[] = []
  const post = new PostProcessor({
    manifest,
    tools: options.tools ?? tools,
    storage: new LocalStorage(media, () => 'http://files.test'),
    mediaDir: media,
    log: (_level, message) => logs.push(message),
    urlPolicy: { blockPrivate: false },
    lostAfterMs: 0,
    now: () => clock.now(),
    ...(options.mix ? { mix: options.mix } : {}),
  })
  const spec = {
    taskId,
    sdkAppId: 1,
    request: { ...CONCAT_REQUEST, Extras: ['MIX_STREAM' as const], ...request },
    recordStartMs: t0,
    recordStopMs: t0 + 12_000,
    pauses: [{ pauseMs: t0 + 6000, resumeMs: t0 + 8000 }],
  }
  return {
    post,
    spec,
    logs,
    file: (videoId: string) => join(media, 'files', taskId, `${videoId}.mp4`),
  }
}

async function mixed(request: Partial<StartOnlineRecordRequest>) {
  const { post, spec, logs, file } = await recordedClass(request)
  const result = await post.finish(spec)
  const mix = result.videoInfos.find((v) => v.VideoType === 3)
  assert.ok(mix, `no mixed video: ${logs.join('\n')}`)
  return { result, mix, file: file(mix.VideoId), logs }
}

const colours = (file: string, seconds: number, expected: [number, number, string][]) =>
  assertColours(tools, file, seconds, expected)
const tones = (file: string, from: number, to: number, present: Record<number, boolean>) =>
  assertTones(tools, file, from, to, present)

test('layouts: the templates, TeacherId first, named slots before the next-stream slots', () => {
  const two = layoutOf({ Enabled: true, ModelId: 2, TeacherId: 'teacher' })
  assert.deepEqual([two.width, two.height, two.background, two.id], [1624, 1000, '#34363B', 2])
  assert.deepEqual(
    two.slots.map((s) => [s.rect.x, s.rect.y, s.rect.width, s.rect.height, s.z, s.source.kind]),
    [
      [8, 8, 1280, 960, 1, 'board'],
      [8, 8, 1280, 960, 2, 'substream'],
      [1296, 8, 320, 240, 3, 'user'],
      [1296, 256, 320, 240, 3, 'next'],
      [1296, 504, 320, 240, 3, 'next'],
      [1296, 752, 320, 240, 3, 'next'],
    ],
  )
  const one = layoutOf({ Enabled: true, ModelId: 1 })
  assert.deepEqual([one.width, one.height], [1320, 1224])
  assert.deepEqual(
    one.slots.slice(2).map((s) => [s.rect.x, s.rect.y, s.source.kind]),
    [8, 336, 664, 992].map((x) => [x, 976, 'next']),
  )
  const streams = [
    { streamId: 'studentB', videoType: 0, firstAt: 0 },
    { streamId: 'teacher', videoType: 0, firstAt: 500 },
    { streamId: 'tic_substream_teacher', videoType: 1, firstAt: 100 },
    { streamId: 'studentA', videoType: 0, firstAt: 3000 },
  ]
  assert.deepEqual(
    [...assignStreams(two, streams)].sort((a, b) => a[0] - b[0]),
    [
      [1, 'tic_substream_teacher'],
      [2, 'teacher'],
      [3, 'studentB'],
      [4, 'studentA'],
    ],
  )
  // Without TeacherId the windows go in order of appearance; a screen share never takes a window.
  assert.deepEqual(
    [...assignStreams(one, streams)].sort((a, b) => a[0] - b[0]).map(([, s]) => s),
    ['tic_substream_teacher', 'studentB', 'teacher', 'studentA'],
  )
  // Custom: a named slot later in the list is served before an empty-id slot before it.
  const custom = layoutOf({
    Enabled: true,
    Custom: {
      Canvas: { LayoutParams: { Width: 640, Height: 360 } },
      InputStreamList: [
        { LayoutParams: { Width: 100, Height: 100 } },
        { LayoutParams: { Width: 100, Height: 100 }, InputStreamId: 'stud' },
        { LayoutParams: { Width: 100, Height: 100 }, InputStreamId: 'tic_substream' },
      ],
    },
  })
  assert.equal(custom.background, '#000000')
  assert.deepEqual(
    [...assignStreams(custom, streams)].sort((a, b) => a[0] - b[0]),
    [
      [0, 'teacher'],
      [1, 'studentB'],
      [2, 'tic_substream_teacher'],
    ],
  )
})

test('the graph: each part shifted to its place, overlaid in z order; audio delayed and summed without normalising', () => {
  const layout = layoutOf({
    Enabled: true,
    Custom: {
      Canvas: { LayoutParams: { Width: 640, Height: 360 }, BackgroundColor: '#102030' },
      InputStreamList: [
        { LayoutParams: { Width: 321, Height: 181, ZOrder: 2 }, FillMode: 1 },
        { LayoutParams: { Width: 320, Height: 180, X: 10, ZOrder: 1 }, BackgroundColor: '#FFFF00' },
      ],
    },
  })
  const { graph, video, audio } = mixGraph(
    layout,
    [
      { path: 'a', at: 0, hasVideo: true, hasAudio: true, slot: 0 },
      { path: 'b', at: 2500, hasVideo: true, hasAudio: false, slot: 1 },
      { path: 'c', at: 4000, hasVideo: false, hasAudio: true, slot: undefined },
    ],
    { fps: 15, totalMs: 6000, audio: true },
  )
  const chains = graph.split(';')
  assert.equal(chains[0], 'color=c=0x102030:s=640x360:r=15:d=6.000,format=yuv420p[c0]')
  // Slot 1 (ZOrder 1) is drawn first: its background, then its stream; slot 0 on top.
  assert.match(
    chains[1] as string,
    /^\[c0\]drawbox=x=10:y=0:w=320:h=180:color=0xFFFF00:t=fill\[c1\]$/,
  )
  assert.match(
    chains[2] as string,
    /^\[1:v:0\]fps=15,setpts=PTS-STARTPTS\+2\.500\/TB,scale=320:180:force_original_aspect_ratio=decrease/,
  )
  assert.match(
    chains[3] as string,
    /^\[c1\]\[v1\]overlay=x=10:y=0:eof_action=pass:repeatlast=0\[c2\]$/,
  )
  // An odd slot is made even; fill crops.
  assert.match(
    chains[4] as string,
    /scale=320:180:force_original_aspect_ratio=increase:flags=bilinear,crop=320:180/,
  )
  assert.equal(video, '[c3]')
  assert.ok(
    chains.includes(
      '[0:a:0]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,asetpts=PTS-STARTPTS,adelay=delays=0:all=1[a0]',
    ),
  )
  assert.ok(chains.some((c) => c.includes('adelay=delays=4000:all=1[a2]')))
  assert.equal(chains.at(-1), '[a0][a2]amix=inputs=2:duration=longest:normalize=0,apad[aout]')
  assert.equal(audio, '[aout]')
  assert.equal(
    mixGraph(layout, [{ path: 'a', at: 0, hasVideo: true, hasAudio: true, slot: 0 }], {
      fps: 15,
      totalMs: 1000,
      audio: false,
    }).audio,
    undefined,
  )
})

test('ModelId 2 with TeacherId: teacher in the first window, a late joiner only after joining, an absent student gone, the pause cut; tones only while their publisher was there', async (t) => {
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  const { result, mix, file } = await mixed({
    MixStream: { Enabled: true, ModelId: 2, TeacherId: 'teacher' },
  })
  assert.equal(result.totalTimeMs, 10_000)
  assert.equal(mix.UserId, 'tic_mixstream_1_2')
  assert.deepEqual(
    [mix.Width, mix.Height, mix.VideoPlayTime, mix.VideoFormat],
    [1624, 1000, 0, 'mp4'],
  )
  assert.ok(Math.abs(mix.VideoDuration - 10_000) <= 200, `${mix.VideoDuration}`)
  const info = await probe(tools.ffprobe, file)
  assert.equal(info.video?.codec, 'h264')
  assert.equal(info.audio?.codec, 'aac')
  // Window centres: teacher, then the students in order of appearance (B at 0 s, A at 3 s).
  const win = (i: number): [number, number] => [1296 + 160, ([8, 256, 504, 752][i] as number) + 120]
  const at = (i: number, color: string): [number, number, string] => [...win(i), color]
  const board: [number, number, string] = [648, 488, TEMPLATE_BACKGROUND]
  await colours(file, 1, [
    at(0, RED),
    at(1, BLUE),
    at(2, TEMPLATE_BACKGROUND),
    at(3, TEMPLATE_BACKGROUND),
    board,
  ])
  await colours(file, 3.5, [at(0, RED), at(1, TEMPLATE_BACKGROUND), at(2, GREEN)])
  await colours(file, 5, [at(0, RED), at(1, BLUE), at(2, GREEN), at(3, TEMPLATE_BACKGROUND)])
  await colours(file, 8, [at(0, RED), at(1, BLUE), at(2, GREEN), board])
  await tones(file, 0.4, 1.6, { 440: true, 660: false, 880: true })
  await tones(file, 2.3, 2.9, { 440: true, 660: false, 880: false })
  await tones(file, 3.3, 3.9, { 440: true, 660: true, 880: false })
  await tones(file, 7, 9, { 440: true, 660: true, 880: true })
})

test('ModelId 1 and MixStream.DisableAudio: a row of windows under the board, no audio track; an mp3 only of videos with audio', async (t) => {
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  const { result, mix, file } = await mixed({
    MixStream: { Enabled: true, ModelId: 1, DisableAudio: true },
    AudioFileNeeded: true,
  })
  assert.equal(mix.UserId, 'tic_mixstream_1_1')
  assert.deepEqual([mix.Width, mix.Height], [1320, 1224])
  assert.equal((await probe(tools.ffprobe, file)).audio, undefined)
  // Every camera has its mp3; the silent mix has none.
  assert.equal(result.videoInfos.filter((v) => v.VideoType === 4).length, 3)
  const win = (i: number, color: string): [number, number, string] => [
    ([8, 336, 664, 992][i] as number) + 160,
    1096,
    color,
  ]
  // Teacher and B both appear at 0 s: the tie goes by user id.
  await colours(file, 1, [
    win(0, BLUE),
    win(1, RED),
    win(2, TEMPLATE_BACKGROUND),
    win(3, TEMPLATE_BACKGROUND),
    [660, 488, TEMPLATE_BACKGROUND],
  ])
  await colours(file, 8, [win(0, BLUE), win(1, RED), win(2, GREEN), win(3, TEMPLATE_BACKGROUND)])
})

test('Custom: fit letterboxes on the slot background, fill crops, ZOrder over list order, a prefix id, an empty-id slot', async (t) => {
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  const { mix, file } = await mixed({
    MixStream: {
      Enabled: true,
      Custom: {
        Canvas: { LayoutParams: { Width: 640, Height: 360 }, BackgroundColor: '#202020' },
        InputStreamList: [
          // Listed first, drawn last.
          {
            LayoutParams: { X: 200, Y: 60, Width: 160, Height: 120, ZOrder: 5 },
            InputStreamId: 'studentA',
            FillMode: 1,
          },
          // A prefix of "teacher"; 4:3 in a 320x120 slot: letterboxed on yellow.
          {
            LayoutParams: { X: 0, Y: 0, Width: 320, Height: 120, ZOrder: 1 },
            InputStreamId: 'teach',
            BackgroundColor: YELLOW,
            FillMode: 0,
          },
          // The next stream not placed: studentB, filled (cropped) to the whole slot.
          { LayoutParams: { X: 320, Y: 0, Width: 320, Height: 120 }, FillMode: 1 },
        ],
      },
    },
  })
  assert.equal(mix.UserId, 'tic_mixstream_1_101')
  assert.deepEqual([mix.Width, mix.Height], [640, 360])
  // Before A joins, the yellow band of the teacher's slot shows where A's slot will be.
  await colours(file, 1, [
    [20, 60, YELLOW],
    [120, 60, RED],
    [280, 100, YELLOW],
    [340, 30, BLUE],
    [600, 300, '#202020'],
  ])
  await colours(file, 8, [
    [20, 60, YELLOW],
    [120, 60, RED],
    [280, 100, GREEN],
    [340, 30, BLUE],
    [250, 150, GREEN],
  ])
})

test('a mix that fails is tried again, then reported as a problem; the other videos are kept', async (t) => {
  // A frame rate ffmpeg refuses makes every try fail for real.
  const { post, spec, logs } = await recordedClass(
    { MixStream: { Enabled: true, ModelId: 2 } },
    { mix: { fps: 0, attempts: 2 } },
  )
  const result = await post.finish(spec)
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  assert.equal(result.videoInfos.length, 3)
  assert.ok(result.videoInfos.every((v) => v.VideoType === 0))
  assert.equal(result.exceptionCnt, 1)
  assert.equal(
    logs.filter((l) => /mixing failed \(try \d of 2\)/.test(l)).length,
    2,
    logs.join('\n'),
  )
  assert.ok(logs.some((l) => /the mixed video could not be made/.test(l)))
})

test("a mix's estimate: the canvas and the rectangles that show something, every frame; every input read whole", () => {
  const layout = layoutOf({ Enabled: true, ModelId: 2 })
  const camera = { width: 1280, height: 720, fps: '30/1', codec: 'h264' }
  const part = (slot: number | undefined): MixInput => ({
    path: 'p',
    at: 0,
    hasVideo: true,
    hasAudio: true,
    slot,
    decoding: decoding({
      durationMs: 60_000,
      video: camera,
      audio: { codec: 'aac', sampleRate: 48_000, channels: 1, extradata: '' },
    } as unknown as MediaInfo),
  })
  // A minute of two cameras in windows 2 and 3 at 15 fps: 900 frames of the
  // 1624x1000 canvas and two 320x240 windows; each camera 1800 frames of 720p.
  const work = mixWork(layout, [part(2), part(3)], { fps: 15, totalMs: 60_000, audio: true })
  assert.equal(Math.round(work.madeMpx), Math.round((900 * (1624 * 1000 + 2 * 320 * 240)) / 1e6))
  assert.equal(Math.round(work.decodedMpx), Math.round((2 * 1800 * 1280 * 720) / 1e6))
  assert.deepEqual([work.audioS, work.inputs], [180, 2])
  // Twice as long: twice the estimate (and the budget), less the fixed start-up.
  const longer = mixWork(layout, [part(2), part(3)], { fps: 15, totalMs: 120_000, audio: true })
  assert.ok(Math.abs(longer.madeMpx - 2 * work.madeMpx) < 1e-6)
  const budget = budgetFor(work, { factor: 8, minCpuMs: 30_000 })
  assert.equal(budget.estimateMs, estimateMs(work))
  assert.equal(budget.cpuMs, 8 * budget.estimateMs)
  assert.ok((budget.wallMs ?? 0) > (budget.cpuMs ?? 0), 'the wall-clock backstop is the looser one')
  // A short run gets the floor.
  assert.equal(budgetFor(NO_WORK, { factor: 8, minCpuMs: 30_000 }).cpuMs, 30_000)
})

test('a mix over its CPU budget is killed at once, not tried again, and counted; the camera videos are kept', async (t) => {
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  // The mix alone gets a budget far below its work; the other runs keep the default.
  const { post, spec, logs } = await recordedClass(
    { MixStream: { Enabled: true, ModelId: 2 } },
    { mix: { budget: { factor: 0.001, minCpuMs: 0 } } },
  )
  const result = await post.finish(spec)
  assert.deepEqual(
    result.videoInfos.map((v) => `${v.UserId}/${v.VideoType}`),
    ['studentB/0', 'teacher/0', 'studentA/0'],
    logs.join('\n'),
  )
  assert.equal(result.exceptionCnt, 1)
  assert.equal(logs.filter((l) => /mixing failed/.test(l)).length, 1, 'one try only')
  assert.ok(
    logs.some((l) => /mixing \d+ part\(s\).*estimate \d+ Mpx made.*budget/.test(l)),
    logs.join('\n'),
  )
  const [row] = await handle.db.query<{ problems: { streamId: string; message: string }[] }>(
    'select problems from tasks where task_id = $1',
    [spec.taskId],
  )
  assert.equal(row?.problems.length, 1)
  assert.equal(row?.problems[0]?.streamId, 'tic_mixstream_1_2')
  assert.match(
    row?.problems[0]?.message ?? '',
    /the mixed video could not be made: ffmpeg went over its CPU budget \(\d+\.\d s used, 0\.\d s allowed\)/,
  )
})

test("mix slots: one app holds at most its share, so another app's mix finds a slot", () => {
  const slots = new MixSlots(2)
  assert.equal(slots.perApp, 1)
  assert.equal(slots.take(1), true)
  assert.equal(slots.take(1), false, "app 1's share is taken")
  assert.equal(slots.take(2), true)
  assert.equal(slots.take(3), false, 'all slots are busy')
  slots.release(1)
  assert.equal(slots.take(3), true)
  // One slot: it is every app's share.
  const one = new MixSlots(1)
  assert.equal(one.take(1), true)
  assert.equal(one.take(2), false)
})

test('every mix slot busy: the task goes back to the queue (NotReady) and is mixed when one is free', async (t) => {
  if (await mixUnsupported(tools)) return t.diagnostic('covered by the old-ffmpeg test below')
  const { post, spec } = await recordedClass(
    { MixStream: { Enabled: true, ModelId: 2 } },
    { mix: { concurrency: 1, waitMs: 1234 } },
  )
  // Another task's mix holds the one slot.
  assert.equal(post.mixSlots.take(2), true)
  const waited = await post.finish(spec).then(
    () => undefined,
    (e: unknown) => e,
  )
  assert.ok(waited instanceof NotReady, `${waited}`)
  assert.equal(waited.retryMs, 1234)
  post.mixSlots.release(2)
  const result = await post.finish(spec)
  assert.ok(result.videoInfos.some((v) => v.VideoType === 3))
})

test('an ffmpeg older than 5.1 (the npm static build): no mixed video, a problem says why, the other videos are kept', async () => {
  const require = createRequire(import.meta.url)
  const ffmpeg = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path
  const old: MediaTools = { ...tools, ffmpeg, source: { ...tools.source, ffmpeg: 'npm' } }
  const why = await mixUnsupported(old)
  assert.match(why ?? '', /needs ffmpeg 5\.1 or later/)
  const { post, spec, logs } = await recordedClass(
    { MixStream: { Enabled: true, ModelId: 2 } },
    { tools: old },
  )
  const result = await post.finish(spec)
  assert.equal(result.videoInfos.length, 3)
  assert.equal(result.exceptionCnt, 1)
  assert.ok(logs.some((l) => /no mixed video: the mixed video needs ffmpeg 5\.1/.test(l)))
})
