// Post-processing on real files: segments made with ffmpeg the way the
// recorder writes them, a real manifest on PGlite and the local store.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { ManualClock } from '../clock.ts'
import { pgliteFactory } from '../store/test-db.ts'
import { resolveMediaTools, runTool } from './ffmpeg-tools.ts'
import { Manifest } from './manifest.ts'
import { PostProcessor, padEncoderCandidates, spliceItems, videoIdOf } from './post-process.ts'
import { parseProbe, probe } from './probe.ts'
import { SEGMENT_FFMPEG_ARGS } from './segment-writer.ts'
import { LocalStorage } from './storage.ts'
import { CONCAT_REQUEST, testSourceArgs } from './test-media.ts'

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
  assert.match(videoIdOf('t', 'alice'), /^[0-9a-f]{32}$/)
  assert.equal(videoIdOf('t', 'alice'), videoIdOf('t', 'alice'))
  assert.notEqual(videoIdOf('t', 'alice'), videoIdOf('t', 'alice.mp3'))
})

/** A segment as the recorder writes it: FLV through the segment ffmpeg into fragmented MP4. */
async function segment(file: string, seconds: number, size: string, audio: boolean) {
  const flv = `${file}.flv`
  await runTool(tools.ffmpeg, [
    ...testSourceArgs({ seconds, size, audio, preset: 'ultrafast' }),
    '-y',
    flv,
  ])
  const args = SEGMENT_FFMPEG_ARGS.map((a) => (a === 'pipe:0' ? flv : a))
  await runTool(tools.ffmpeg, [...args, file])
  rmSync(flv)
}

/**
 * Task `taskId`: segment a (320x240 with audio) at t0, a pause 2–3 s, segment
 * b (640x360 without audio) at t0 + 3.5 s, so 500 ms of absence between them.
 */
async function twoSegments(taskId: string, sameSize = false, blockPrivate = false) {
  const media = join(dir, 'media')
  mkdirSync(join(media, 'segments', taskId), { recursive: true })
  const t0 = clock.now()
  await segment(join(media, 'segments', taskId, 'a.mp4'), 2, '320x240', true)
  await segment(
    join(media, 'segments', taskId, 'b.mp4'),
    2,
    sameSize ? '320x240' : '640x360',
    sameSize,
  )
  const manifest = new Manifest(handle.db, clock, 'me')
  for (const [id, startMs] of [
    ['a', t0],
    ['b', t0 + 3500],
  ] as const) {
    await manifest.openSegment({
      segmentId: `${taskId}${id}`,
      taskId,
      streamId: 'alice',
      userId: 'alice',
      videoType: 0,
      file: join('segments', taskId, `${id}.mp4`),
      startMs,
    })
    await manifest.closeSegment(`${taskId}${id}`, startMs + 2000, 'pause')
  }
  const logs: string[] = []
  const storage = new LocalStorage(join(media, 'files'), () => 'http://files.test')
  const post = new PostProcessor({
    manifest,
    tools,
    storage,
    mediaDir: media,
    log: (_level, message) => logs.push(message),
    settle: async () => {},
    urlPolicy: { blockPrivate },
  })
  const timeline = {
    recordStartMs: t0,
    recordStopMs: t0 + 6000,
    pauses: [{ pauseMs: t0 + 2000, resumeMs: t0 + 3000 }],
  }
  return { media, t0, logs, storage, post, timeline }
}

test('Concat over segments that differ (size, audio): re-encoded alike, the pause cut, the gap padded; a re-run is idempotent', async () => {
  const taskId = 'posttask1'
  const { media, t0, logs, storage, post, timeline } = await twoSegments(taskId)
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
  assert.equal(await post.expire(clock.now() - 2000, storage), 0, 'not old enough')
  assert.equal(await post.expire(clock.now(), storage), 2)
  assert.equal(existsSync(stored), false)
  assert.equal(await post.expire(clock.now(), storage), 0)
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
