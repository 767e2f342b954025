// Post-processing on real files: segments made with ffmpeg as the recording
// process writes them (Matroska), a real manifest on PGlite and the local store.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { Apps } from '../../apps/apps.ts'
import { ManualClock } from '../../clock.ts'
import { type JobLease, LeaseLost } from '../../engine/ports.ts'
import type { Db } from '../../store/db.ts'
import { pgliteFactory } from '../../store/test-db.ts'
import { Manifest } from '../capture/manifest.ts'
import { resolveMediaTools, runTool } from '../ffmpeg/ffmpeg-tools.ts'
import { parseProbe, probe } from '../ffmpeg/probe.ts'
import { LocalStorage } from '../storage/local.ts'
import { segmentKey } from '../storage/object-storage.ts'
import { CONCAT_REQUEST, testSourceArgs } from '../test-media.ts'
import { extractMp3 } from './audio.ts'
import { DEFAULT_BUDGET_SETTINGS } from './budget.ts'
import { PostProcessor, videoIdOf } from './post-process.ts'
import { NotReady } from './segments.ts'
import { padEncoderCandidates, remuxPart, splice, spliceItems } from './splice.ts'

const tools = resolveMediaTools()
const clock = new ManualClock(Date.UTC(2026, 10, 25))
const dir = mkdtempSync(join(tmpdir(), 'online-record-post-'))
let handle: Awaited<ReturnType<typeof pgliteFactory.open>>
after(async () => {
  await handle?.dispose()
  rmSync(dir, { recursive: true, force: true })
})
before(async () => {
  handle = await pgliteFactory.open(clock)
  await new Apps(handle.db, clock).create({ sdkAppId: 1 })
})

const part = (at: number, durationMs: number) =>
  ({ at, info: { durationMs } }) as unknown as Parameters<typeof spliceItems>[0][number]

test('splice items: gaps against what the output holds so far; tiny gaps are not padded', () => {
  const items = spliceItems([part(100, 1000), part(1600, 1000), part(2620, 500)])
  assert.deepEqual(
    items.map((i) => ('gapMs' in i ? `gap ${i.gapMs}` : `part ${i.part.at}`)),
    ['part 100', 'gap 500', 'part 1600', 'part 2620'],
  )
  // A part longer than its slot shortens the next gap instead of shifting the rest.
  const long = spliceItems([part(0, 1300), part(2000, 100)])
  assert.deepEqual(
    long.map((i) => ('gapMs' in i ? i.gapMs : 'p')),
    ['p', 700, 'p'],
  )
})

test('pad encoder candidates follow the stream: profile, level, pixel format; none for other codecs', () => {
  const v = parseProbe(
    JSON.stringify({
      streams: [
        {
          codec_type: 'video',
          codec_name: 'h264',
          profile: 'Constrained Baseline',
          level: 31,
          pix_fmt: 'yuv420p',
          r_frame_rate: '30/1',
        },
      ],
    }),
  ).video
  assert.ok(v)
  const [first] = padEncoderCandidates(v)
  assert.deepEqual(first, [
    '-preset',
    'veryfast',
    '-tune',
    'zerolatency',
    '-profile:v',
    'baseline',
    '-level:v',
    '3.1',
    '-pix_fmt',
    'yuv420p',
  ])
  assert.deepEqual(padEncoderCandidates({ ...v, codec: 'hevc' }), [])
  assert.match(videoIdOf('key', 'alice'), /^[0-9a-f]{32}$/)
  assert.equal(videoIdOf('key', 'alice'), videoIdOf('key', 'alice'))
  assert.notEqual(videoIdOf('key', 'alice'), videoIdOf('key', 'alice.mp3'))
  assert.notEqual(videoIdOf('key', 'alice'), videoIdOf('another task key', 'alice'))
})

/** A segment as the recording process writes it: Matroska, H.264 (and AAC). */
async function segment(file: string, seconds: number, size: string, audio: boolean) {
  await runTool(tools.ffmpeg, [
    ...testSourceArgs({ seconds, size, audio, preset: 'ultrafast' }),
    '-f',
    'matroska',
    '-y',
    file,
  ])
}

async function task(db: Db, taskId: string): Promise<void> {
  await db.query(
    `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status, request,
       created_at_ms, last_activity_ms) values ($1, 1, 1, '1', 'rec', 'STOPPED', '{}', 0, 0)`,
    [taskId],
  )
}

/** A 24-hex segment id for `name`, as the recorder makes them. */
const segmentId = (taskId: string, name: string) =>
  Buffer.from(`${taskId}${name}`).toString('hex').padEnd(24, '0').slice(0, 24)

/**
 * Task `taskId`: segment a (320x240 with audio) at t0, a pause 2–3 s, segment
 * b (640x360 without audio) at t0 + 3.5 s, so 500 ms of absence between them.
 */
async function twoSegments(taskId: string, sameSize = false, blockPrivate = false) {
  const media = join(dir, 'media')
  mkdirSync(join(media, 'segments', taskId), { recursive: true })
  await task(handle.db, taskId)
  const t0 = clock.now()
  const manifest = new Manifest(handle.db, clock, 'me')
  for (const [id, startMs, size, audio] of [
    ['a', t0, '320x240', true],
    ['b', t0 + 3500, sameSize ? '320x240' : '640x360', sameSize],
  ] as const) {
    const key = segmentKey(taskId, segmentId(taskId, id))
    await segment(join(media, key), 2, size, audio)
    await manifest.openSegment({
      segmentId: segmentId(taskId, id),
      taskId,
      streamId: 'alice',
      userId: 'alice',
      videoType: 0,
      file: key,
      startMs,
    })
    await manifest.closeSegment(segmentId(taskId, id), startMs + 2000, 'pause')
    await manifest.markStored(segmentId(taskId, id), key)
  }
  const logs: string[] = []
  const storage = new LocalStorage(media, () => 'http://files.test')
  const post = new PostProcessor({
    manifest,
    tools,
    storage,
    mediaDir: media,
    log: (_level, message) => logs.push(message),
    urlPolicy: { blockPrivate },
    lostAfterMs: 0,
    now: () => clock.now(),
  })
  const timeline = {
    recordStartMs: t0,
    recordStopMs: t0 + 6000,
    pauses: [{ pauseMs: t0 + 2000, resumeMs: t0 + 3000 }],
  }
  return { media, t0, logs, storage, post, timeline, manifest }
}

test('Concat over segments that differ (size, audio): re-encoded alike, the pause cut, the gap padded; a re-run is idempotent', async () => {
  const taskId = 'posttask1'
  const { media, t0, logs, post, timeline } = await twoSegments(taskId)
  const spec = {
    taskId,
    sdkAppId: 1,
    request: { ...CONCAT_REQUEST, AudioFileNeeded: true },
    ...timeline,
  }
  const result = await post.finish(spec)
  assert.equal(result.totalTimeMs, 5000)
  assert.deepEqual(result.omittedDurations, [
    { VideoTime: 2000, PauseTime: t0 + 2000, ResumeTime: t0 + 3000 },
  ])
  assert.ok(
    logs.some((l) => /re-encoded/.test(l)),
    logs.join('\n'),
  )
  const [video, mp3] = result.videoInfos
  assert.equal(video?.VideoType, 0)
  assert.equal(mp3?.VideoType, 4)
  assert.equal(mp3?.VideoFormat, 'mp3')
  // 2 s, a 500 ms absence (b starts 2500 ms into the replay timeline), 2 s.
  assert.ok(Math.abs((video?.VideoDuration ?? 0) - 4500) <= 150, `${video?.VideoDuration}`)
  assert.deepEqual([video?.Width, video?.Height, video?.VideoPlayTime], [320, 240, 0])
  const stored = join(media, 'files', taskId, `${video?.VideoId}.mp4`)
  const info = await probe(tools.ffprobe, stored)
  assert.equal(info.durationMs, video?.VideoDuration)
  assert.ok(info.audio, 'silence was added to the segment without audio')
  assert.equal(existsSync(join(media, 'segments', taskId)), false, 'raw segments removed')
  // After a crash before FINISHED, post-processing runs again: same result, nothing rebuilt.
  logs.length = 0
  assert.deepEqual(await post.finish(spec), result)
  assert.ok(!logs.some((l) => /spliced/.test(l)), logs.join('\n'))
  // Retention: outputs older than the cut-off leave the store, once.
  clock.advance(1000)
  assert.equal(await post.expire(clock.now() - 2000), 0, 'not old enough')
  assert.equal(await post.expire(clock.now()), 2)
  assert.equal(existsSync(stored), false)
  assert.equal(await post.expire(clock.now()), 0)
})

test('the pad is Concat.Image, fitted to the picture; joined by stream copy when the segments match', async () => {
  const image = join(dir, 'red.png')
  const red = '-loglevel error -f lavfi -i color=c=red:s=64x32 -frames:v 1 -y'.split(' ')
  await runTool(tools.ffmpeg, [...red, image])
  const server = createServer((_req, res) => res.end(readFileSync(image)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  try {
    const taskId = 'posttask2'
    const { media, logs, post, timeline } = await twoSegments(taskId, true)
    const result = await post.finish({
      taskId,
      sdkAppId: 1,
      request: {
        ...CONCAT_REQUEST,
        Concat: { Enabled: true, Image: `http://127.0.0.1:${port}/pad.png` },
      },
      ...timeline,
    })
    assert.ok(
      logs.some((l) => /by stream copy/.test(l)),
      logs.join('\n'),
    )
    const video = result.videoInfos[0]
    const file = join(media, 'files', taskId, `${video?.VideoId}.mp4`)
    // The middle of the 500 ms absence (2.0–2.5 s of the video), averaged to one pixel.
    const pixel = await runTool(
      tools.ffmpeg,
      [
        '-loglevel',
        'error',
        '-ss',
        '2.25',
        '-i',
        file,
        '-frames:v',
        '1',
        '-vf',
        'scale=1:1',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        '-',
      ],
      { encoding: 'latin1' },
    )
    const [r, g, b] = Buffer.from(pixel, 'latin1')
    assert.ok(
      (r ?? 0) > 80 && (g ?? 255) < 60 && (b ?? 255) < 60,
      `rgb ${r} ${g} ${b}: red, letterboxed in black`,
    )
  } finally {
    server.close()
  }
})

test('a Concat.Image on a private address is not fetched when private targets are blocked', async () => {
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url ?? '')
    res.end('not an image')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  try {
    const taskId = 'posttask3'
    const { logs, post, timeline } = await twoSegments(taskId, true, true)
    const result = await post.finish({
      taskId,
      sdkAppId: 1,
      request: {
        ...CONCAT_REQUEST,
        Concat: { Enabled: true, Image: `http://127.0.0.1:${port}/pad.png` },
      },
      ...timeline,
    })
    assert.equal(result.videoInfos.length, 1)
    assert.deepEqual(hits, [])
    assert.ok(
      logs.some((l) => /loopback or private address/.test(l)),
      logs.join('\n'),
    )
  } finally {
    server.close()
  }
})

/** A Matroska file of `seconds` of testsrc and a tone in the codecs given. */
async function encoded(name: string, seconds: number, video: string[], audio: string[]) {
  const file = join(dir, name)
  await runTool(tools.ffmpeg, [
    ...['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15'],
    ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds)],
    ...video,
    ...audio,
    '-f',
    'matroska',
    file,
  ])
  return { path: file, info: await probe(tools.ffprobe, file) }
}
const H264 = [
  ...['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency'],
  ...['-g', '15', '-pix_fmt', 'yuv420p'],
]
const OPUS = ['-c:a', 'libopus', '-ac', '2']
const run = { tools, budget: DEFAULT_BUDGET_SETTINGS, signal: new AbortController().signal }
const stageOptions = (prefix: string) => ({
  ...run,
  work: dir,
  prefix,
  padImage: undefined,
  log: () => {},
})

test('splice stage: H.264 with Opus (as browsers send) keeps its video and gets AAC audio', async () => {
  const a = await encoded('opus-a.mkv', 2, H264, OPUS)
  const b = await encoded('opus-b.mkv', 2, H264, OPUS)
  const items = spliceItems([
    { ...a, at: 0 },
    { ...b, at: 3000 },
  ])
  const out = join(dir, 'opus-spliced.mp4')
  assert.equal(await splice(items, out, stageOptions('opus')), 'audio')
  const info = await probe(tools.ffprobe, out)
  assert.deepEqual([info.video?.codec, info.audio?.codec], ['h264', 'aac'])
  assert.ok(Math.abs(info.durationMs - 5000) <= 150, `${info.durationMs} ms`)
})

test('one part alone: VP8 and Opus become H.264 and AAC; H.264 and AAC are copied', async () => {
  const vp8 = await encoded('vp8.mkv', 2, ['-c:v', 'libvpx', '-deadline', 'realtime'], OPUS)
  const out = join(dir, 'vp8.mp4')
  await remuxPart({ ...vp8, at: 0 }, out, stageOptions('vp8'))
  const info = await probe(tools.ffprobe, out)
  assert.deepEqual([info.video?.codec, info.audio?.codec], ['h264', 'aac'])
  assert.ok(Math.abs(info.durationMs - 2000) <= 100, `${info.durationMs} ms`)
  const copied = await encoded('h264-aac.mkv', 2, H264, ['-c:a', 'aac'])
  const out2 = join(dir, 'h264-aac.mp4')
  await remuxPart({ ...copied, at: 0 }, out2, stageOptions('copy'))
  const info2 = await probe(tools.ffprobe, out2)
  assert.equal(info2.video?.extradata, copied.info.video?.extradata, 'the same SPS/PPS: copied')
})

test('audio stage: an mp3 of a video', async () => {
  const video = await encoded('for-mp3.mkv', 2, H264, ['-c:a', 'aac'])
  const mp3 = join(dir, 'audio.mp3')
  await extractMp3(run, video.path, mp3, video.info.durationMs)
  const info = await probe(tools.ffprobe, mp3)
  assert.deepEqual([info.audio?.codec, info.video], ['mp3', undefined])
  assert.ok(Math.abs(info.durationMs - 2000) <= 100)
})

test('segments: a cut one is repaired, an unreadable one is lost and counted, an unstored one is waited for', async () => {
  const taskId = 'posttask4'
  const { media, post, timeline, manifest, logs } = await twoSegments(taskId, true)
  const spec = { taskId, sdkAppId: 1, request: CONCAT_REQUEST, ...timeline }
  const [a, b] = await manifest.segments(taskId)
  // a: cut by a killed writer (its end reason says so); b: garbage.
  await handle.db.query(`update media_segments set end_reason = 'fault' where segment_id = $1`, [
    a?.segmentId,
  ])
  writeFileSync(join(media, b?.file as string), 'not a media file')
  // c: closed by a live process (this one) but not stored yet: not ready.
  const c = segmentId(taskId, 'c')
  await manifest.openSegment({
    segmentId: c,
    taskId,
    streamId: 'bob',
    userId: 'bob',
    videoType: 0,
    file: segmentKey(taskId, c),
    startMs: timeline.recordStartMs,
  })
  await manifest.closeSegment(c, timeline.recordStartMs + 1000, 'leave')
  await assert.rejects(post.finish(spec), NotReady)
  // Its process died without storing it: lost (no other process can come back here).
  await handle.db.query(`update media_segments set instance_id = 'gone' where segment_id = $1`, [c])
  clock.advance(6000) // past the stop
  const result = await post.finish(spec)
  assert.equal(result.exceptionCnt, 2, 'b and c are lost, a is repaired')
  assert.deepEqual(
    result.videoInfos.map((v) => v.UserId),
    ['alice'],
  )
  assert.ok(Math.abs((result.videoInfos[0]?.VideoDuration ?? 0) - 2000) <= 150)
  assert.ok(
    logs.some((l) => /repaired/.test(l)),
    logs.join('\n'),
  )
  const [row] = await handle.db.query<{ problems: { streamId: string; lostMs: number }[] }>(
    'select problems from tasks where task_id = $1',
    [taskId],
  )
  assert.deepEqual(row?.problems.map((p) => [p.streamId, p.lostMs]).sort(), [
    ['alice', 2000],
    ['bob', 1000],
  ])
})

test('a run whose job was taken over stores nothing: the check before the first output stops it, and its segments stay', async () => {
  const taskId = 'leasetask'
  const { media, post, timeline, manifest } = await twoSegments(taskId)
  const spec = { taskId, sdkAppId: 1, request: CONCAT_REQUEST, ...timeline }
  // The store says the job is another attempt's when the first output is about to be kept.
  const lost = new AbortController()
  let checks = 0
  const lease: JobLease = {
    signal: lost.signal,
    attempts: 1,
    hold: async () => {
      checks++
      lost.abort(new LeaseLost(taskId, 'another process took the job over'))
      throw lost.signal.reason
    },
  }
  await assert.rejects(
    post.finish(spec, () => {}, lease),
    LeaseLost,
  )
  assert.equal(checks, 1)
  assert.equal((await manifest.outputs(taskId)).size, 0)
  assert.equal(existsSync(join(media, 'files', taskId)), false, 'no recording stored')
  assert.equal((await manifest.segments(taskId)).length, 2, 'the segments are left to the new run')
  // The new run (its lease held) makes the video from them.
  const result = await post.finish(spec)
  assert.deepEqual(
    result.videoInfos.map((v) => v.UserId),
    ['alice'],
  )
})
