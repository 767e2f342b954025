// The recording pipe with real ffmpeg: access units of each codec an ingest
// may deliver, written as Matroska by the writer, through a recording process
// and into a segment file that decodes whole; and what a killed process leaves.
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { resolveMediaTools, runTool } from '../ffmpeg/ffmpeg-tools.ts'
import { probe } from '../ffmpeg/probe.ts'
import {
  mergeSources,
  type ReadSource,
  readAdts,
  readAnnexB,
  readIvf,
  readOggOpus,
} from '../test-media.ts'
import { MatroskaWriter, vint } from './matroska.ts'
import { SegmentWriter } from './segment-writer.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-segments-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const lavfi = (graph: string) => ['-f', 'lavfi', '-i', graph]
async function encode(name: string, args: string[]): Promise<Buffer> {
  const file = join(dir, name)
  await runTool(tools.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', ...args, file])
  return readFileSync(file)
}
const h264 = async (seconds: number, size = '320x240') =>
  readAnnexB(
    await encode(`v-${size}-${seconds}.h264`, [
      ...lavfi(`testsrc=size=${size}:rate=15`),
      '-t',
      String(seconds),
      ...['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '15'],
      ...['-pix_fmt', 'yuv420p', '-x264-params', 'aud=1', '-f', 'h264'],
    ]),
    15,
  )
const aac = async (seconds: number) =>
  readAdts(
    await encode(`a-${seconds}.aac`, [
      ...lavfi('sine=frequency=440:sample_rate=48000'),
      ...['-t', String(seconds), '-c:a', 'aac', '-f', 'adts'],
    ]),
  )
const vp8 = async (seconds: number) =>
  readIvf(
    await encode(`v-${seconds}.ivf`, [
      ...lavfi('testsrc=size=320x240:rate=15'),
      ...['-t', String(seconds), '-c:v', 'libvpx', '-deadline', 'realtime', '-g', '15'],
      ...['-b:v', '300k', '-f', 'ivf'],
    ]),
    15,
  )
const opus = async (seconds: number) =>
  readOggOpus(
    await encode(`a-${seconds}.ogg`, [
      ...lavfi('sine=frequency=660:sample_rate=48000'),
      ...['-t', String(seconds), '-ac', '2', '-c:a', 'libopus', '-f', 'ogg'],
    ]),
  )

/** Decodes a file whole; returns frames per stream and ffmpeg's error output. */
async function decode(file: string): Promise<{ video: number; audio: number }> {
  const out = await runTool(tools.ffprobe, [
    ...['-v', 'error', '-count_packets', '-show_entries', 'stream=codec_type,nb_read_packets'],
    ...['-of', 'json', file],
  ])
  const streams = (
    JSON.parse(out) as { streams: { codec_type: string; nb_read_packets: string }[] }
  ).streams
  const count = (t: string) => Number(streams.find((s) => s.codec_type === t)?.nb_read_packets ?? 0)
  // Decoding errors are what ffmpeg prints at -v error.
  await runTool(tools.ffmpeg, ['-v', 'error', '-xerror', '-i', file, '-f', 'null', '-'])
  return { video: count('video'), audio: count('audio') }
}

function writeMatroska(file: string, source: ReadSource): void {
  const mkv = new MatroskaWriter(source.tracks)
  const parts = [mkv.header()]
  for (const u of source.units) parts.push(...mkv.block(u.type, u.pts, u.key, u.data))
  writeFileSync(file, Buffer.concat(parts))
}

test('EBML sizes: the shortest length, never the reserved all-ones value', () => {
  assert.deepEqual([...vint(0)], [0x80])
  assert.deepEqual([...vint(126)], [0xfe])
  assert.deepEqual([...vint(127)], [0x40, 0x7f])
  assert.deepEqual([...vint(16_382)], [0x7f, 0xfe])
  assert.deepEqual([...vint(16_383)], [0x20, 0x3f, 0xff])
})

for (const [name, make] of [
  ['H.264 + AAC', async () => mergeSources(await h264(3), await aac(3))],
  ['VP8 + Opus', async () => mergeSources(await vp8(3), await opus(3))],
  ['H.264 + Opus', async () => mergeSources(await h264(3), await opus(3))],
  ['AAC alone', async () => aac(3)],
] as const) {
  test(`${name}: the Matroska stream, and the segment a recording process makes of it, decode whole`, async () => {
    const source = await make()
    const direct = join(dir, `${name.replace(/\W+/g, '-')}.mkv`)
    writeMatroska(direct, source)
    const expected = {
      video: source.units.filter((u) => u.type === 'video').length,
      audio: source.units.filter((u) => u.type === 'audio').length,
    }
    assert.deepEqual(await decode(direct), expected)

    const segment = join(dir, `${name.replace(/\W+/g, '-')}-segment.mkv`)
    const first = source.units.find(
      (u) => u.key && u.type === (source.tracks.video ? 'video' : 'audio'),
    )
    assert.ok(first)
    let faults = 0
    const writer = new SegmentWriter({
      ffmpeg: tools.ffmpeg,
      file: segment,
      tracks: source.tracks,
      first,
      onFault: () => faults++,
      onFull: () => {},
      onDrain: () => {},
    })
    for (const u of source.units) if (u !== first) writer.write(u)
    await writer.close()
    assert.equal(faults, 0)
    const info = await probe(tools.ffprobe, segment)
    assert.ok(Math.abs(info.durationMs - 3000) <= 120, `${info.durationMs} ms`)
    if (source.tracks.video) assert.deepEqual([info.video?.width, info.video?.height], [320, 240])
    // Units before the first key frame have nothing to start from and are left out.
    const decoded = await decode(segment)
    assert.equal(decoded.video, expected.video, JSON.stringify({ decoded, expected }))
    assert.ok(decoded.audio <= expected.audio)
    assert.ok(decoded.audio >= expected.audio - 2, `${decoded.audio} of ${expected.audio} audio`)
  })
}

for (const [size, seconds, killAt] of [
  ['320x240', 6, 4000],
  // A fresh 4K segment: its file exists and gets clusters at once, however large the first key frame.
  ['3840x2160', 3, 2500],
] as const) {
  test(`a recording process killed mid-segment (${size}) leaves what it wrote, all but about its last second`, async () => {
    const source = mergeSources(await h264(seconds, size), await aac(seconds))
    const segment = join(dir, `killed-${size}.mkv`)
    let fault = ''
    const writer = new SegmentWriter({
      ffmpeg: tools.ffmpeg,
      file: segment,
      tracks: source.tracks,
      first: source.units[0] as (typeof source.units)[number],
      onFault: (m) => {
        fault = m
      },
      onFull: () => {},
      onDrain: () => {},
    })
    // Some seconds of media, then a kill, as a live stream would be cut.
    for (const u of source.units.slice(1)) if (u.dts < killAt) writer.write(u)
    await new Promise((r) => setTimeout(r, 500))
    process.kill(writer.pid as number, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 300))
    await writer.close()
    assert.match(fault, /recording process ended \(SIGKILL\)/)
    // A remux (what post-processing does to a cut segment) reads what is there.
    const repaired = join(dir, `killed-${size}-repaired.mkv`)
    await runTool(tools.ffmpeg, ['-v', 'error', '-i', segment, '-c', 'copy', '-y', repaired])
    const info = await probe(tools.ffprobe, repaired)
    assert.ok(
      info.durationMs >= killAt - 1100 && info.durationMs <= killAt,
      `${info.durationMs} ms kept of ${killAt}`,
    )
  })
}

test('a recording process that dies while its input is full releases the backpressure', async () => {
  // A process that never reads its input (it is stopped), then is killed:
  // the publisher it held back must be let go, or it would stall for good.
  const source = mergeSources(await h264(6, '640x480'), await aac(6))
  let full = 0
  let drained = 0
  let fault = ''
  const writer = new SegmentWriter({
    ffmpeg: tools.ffmpeg,
    file: join(dir, 'stalled.mkv'),
    tracks: source.tracks,
    first: source.units[0] as (typeof source.units)[number],
    onFault: (m) => {
      fault = m
    },
    onFull: () => full++,
    onDrain: () => drained++,
  })
  process.kill(writer.pid as number, 'SIGSTOP')
  for (let i = 0; full === 0 && i < 20; i++) for (const u of source.units.slice(1)) writer.write(u)
  assert.equal(full, 1, 'the input filled up')
  assert.equal(drained, 0)
  process.kill(writer.pid as number, 'SIGKILL')
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(drained, 1, 'released when the process died')
  assert.match(fault, /SIGKILL/)
  await writer.close()
})
