// RTP to access units, on real encoder output (x264, libvpx, libopus by the
// test's ffmpeg) packetized by werift's own packetizers as a browser would:
// in order, reordered, with a packet lost, wrapped timestamps, a frame too large.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { H264Packetizer, OpusPacketizer, type RtpPacket, Vp8Packetizer } from 'werift/nonstandard'
import { parseAvcC } from '../../codecs/h264.ts'
import type { AccessUnit, AudioTrack, VideoTrack } from '../../contracts.ts'
import { resolveMediaTools } from '../../ffmpeg/ffmpeg-tools.ts'
import { readAnnexB, readIvf, readOggOpus } from '../../test-media.ts'
import { MAX_FRAME_BYTES, type RtpCodec, TrackUnits } from './rtp-units.ts'

const tools = resolveMediaTools()

function encode(args: string[]): Buffer {
  const run = spawnSync(tools.ffmpeg, ['-hide_banner', '-loglevel', 'error', ...args, 'pipe:1'], {
    maxBuffer: 64 * 1024 * 1024,
  })
  assert.equal(run.status, 0, run.stderr?.toString())
  return run.stdout
}

const SOURCE = ['-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10:duration=2']
// Two seconds at 10 fps, a key frame every 5 frames.
const h264 = readAnnexB(
  encode([
    ...SOURCE,
    ...['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-profile:v', 'baseline', '-g', '5', '-bf', '0'],
    ...['-x264-params', 'aud=1', '-f', 'h264'],
  ]),
  10,
)
const vp8 = readIvf(
  encode([...SOURCE, '-c:v', 'libvpx', '-g', '5', '-deadline', 'realtime', '-f', 'ivf']),
  10,
)

interface Run {
  units: AccessUnit[]
  tracks: (VideoTrack | AudioTrack)[]
  keyRequests: number
  problems: string[]
}

function receiver(codec: RtpCodec, clockRate = codec === 'opus' ? 48_000 : 90_000) {
  const run: Run = { units: [], tracks: [], keyRequests: 0, problems: [] }
  const units = new TrackUnits({
    codec,
    clockRate,
    reorderMs: 200,
    onTrack: (t) => run.tracks.push(t),
    onUnit: (u) => run.units.push(u),
    onNeedKeyFrame: () => run.keyRequests++,
    onProblem: (m) => run.problems.push(m),
  })
  return { run, units }
}

/** The stream as a browser sends it: parameter sets in band before each IDR, 90 kHz timestamps from `base`. */
function h264Packets(base = 1000, sequenceNumber = 1): RtpPacket[] {
  const config = parseAvcC(h264.tracks.video?.config as Buffer)
  const packetizer = new H264Packetizer({
    sequenceNumber,
    maxPayloadSize: 300,
    inputFormat: 'length-prefixed',
    parameterSets: [...config.sps, ...config.pps],
  })
  return h264.units.flatMap((u) =>
    packetizer.packetize(u.data, (base + u.dts * 90) >>> 0, { isKeyframe: u.key }),
  )
}

test('H.264: frames out as sent, length-prefixed, with the avcC and size of the stream', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  assert.ok(packets.length > h264.units.length, 'frames span several packets (FU-A)')
  for (const p of packets) units.push(p, 5000)
  assert.equal(run.units.length, h264.units.length)
  assert.deepEqual(
    run.units.map((u) => u.key),
    h264.units.map((u) => u.key),
  )
  for (const [i, u] of run.units.entries())
    assert.ok(u.data.equals((h264.units[i] as AccessUnit).data))
  // Times: the first packet's arrival, then the RTP clock.
  assert.deepEqual(
    run.units.map((u) => Math.round(u.dts)),
    h264.units.map((u) => 5000 + u.dts),
  )
  assert.equal(run.tracks.length, 1, 'the track is told once')
  const track = run.tracks[0] as VideoTrack
  assert.deepEqual([track.codec, track.width, track.height], ['h264', 160, 120])
  assert.deepEqual(
    parseAvcC(track.config as Buffer),
    parseAvcC(h264.tracks.video?.config as Buffer),
  )
})

test('H.264: packets out of order within the reorder window come out the same', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  for (let i = 3; i + 1 < packets.length; i += 7) {
    const a = packets[i] as RtpPacket
    packets[i] = packets[i + 1] as RtpPacket
    packets[i + 1] = a
  }
  for (const p of packets) units.push(p, 0)
  assert.equal(run.units.length, h264.units.length)
  assert.equal(run.keyRequests, 0)
})

test('H.264: after a lost packet nothing is written until the next key frame, which is asked for', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  // A packet of the third frame (a P frame) never comes.
  const lostTs = (packets.find((p) => p.header.timestamp === 1000 + 2 * 100 * 90) as RtpPacket)
    .header.sequenceNumber
  for (const p of packets) if (p.header.sequenceNumber !== lostTs) units.push(p, 0)
  assert.ok(run.keyRequests >= 1, 'a key frame was asked for')
  // Frames 0–1 before the loss; frames 2–4 are dropped; from frame 5 (a key frame) on, all.
  assert.deepEqual(
    run.units.map((u) => Math.round(u.dts / 100)),
    [0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
  )
  assert.equal(run.units[2]?.key, true)
})

/** The frame index (at 10 fps from `base` 1000) of each unit. */
const frames = (run: Run) => run.units.map((u) => Math.round(u.dts / 100))
const frameOf = (p: RtpPacket) => Math.round((p.header.timestamp - 1000) / 9000)

test('H.264: a key frame that lost its first packet is not written; the next key frame is', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  const lost = packets.findIndex((p) => frameOf(p) === 5)
  for (const [i, p] of packets.entries()) if (i !== lost) units.push(p, 0)
  assert.deepEqual(frames(run), [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
  assert.ok(run.keyRequests >= 1)
})

test('H.264: a key frame that lost its last packet is not written either', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  const lost = packets.findLastIndex((p) => frameOf(p) === 5)
  for (const [i, p] of packets.entries()) if (i !== lost) units.push(p, 0)
  assert.deepEqual(frames(run), [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
})

test('H.264: padding packets, duplicates and sequence numbers wrapping past 65535 change nothing', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets(1000, 65_500)
  assert.ok(packets.length > 40, 'the sequence wraps within the stream')
  for (const p of packets) {
    units.push(p, 0)
    units.push(p, 0) // a duplicate (a retransmission that was not needed)
  }
  assert.equal(run.units.length, h264.units.length)
  // A padding packet (a bandwidth probe) between frames: the next sequence number, no payload.
  const { run: padded, units: withPadding } = receiver('h264')
  let seq = 0
  for (const p of h264Packets()) {
    const q = p.clone()
    q.header.sequenceNumber = seq++
    withPadding.push(q, 0)
    if (q.header.marker) {
      const pad = q.clone()
      pad.header.sequenceNumber = seq++
      pad.header.marker = false
      pad.payload = Buffer.alloc(0)
      withPadding.push(pad, 0)
    }
  }
  assert.equal(padded.units.length, h264.units.length)
  assert.equal(padded.keyRequests, 0)
})

test('H.264: a jump of the sequence numbers by half their range is followed after a few packets', () => {
  const { run, units } = receiver('h264')
  // Four seconds: the stream twice, one after the other.
  const first = h264Packets()
  const packets = [...first, ...h264Packets(1000 + 20 * 9000, first.length + 1)]
  const half = packets.findIndex((p) => frameOf(p) === 8)
  for (const [i, p] of packets.entries()) {
    if (i >= half) p.header.sequenceNumber = (p.header.sequenceNumber + 40_000) & 0xffff
    units.push(p, 0)
  }
  assert.deepEqual(frames(run).slice(0, 8), [0, 1, 2, 3, 4, 5, 6, 7])
  assert.deepEqual(frames(run).slice(-5), [35, 36, 37, 38, 39])
})

test('an RTP payload larger than a WebRTC sender sends is refused', () => {
  const { run, units } = receiver('opus')
  const p = new OpusPacketizer().packetize(Buffer.alloc(100, 1), 0)[0] as RtpPacket
  p.payload = Buffer.alloc(9000, 1)
  units.push(p, 0)
  assert.equal(run.units.length, 0)
  assert.match(run.problems.join(';'), /payload of 9000 bytes/)
})

test('H.264: timestamps that wrap past 2^32 go on increasing', () => {
  const { run, units } = receiver('h264')
  for (const p of h264Packets(0xffffffff - 500 * 90)) units.push(p, 0)
  const times = run.units.map((u) => u.dts)
  assert.equal(times.length, h264.units.length)
  for (let i = 1; i < times.length; i++) assert.ok((times[i] as number) > (times[i - 1] as number))
  assert.equal(Math.round(times.at(-1) as number), 1900)
})

test('H.264: a frame without an end larger than the limit is refused and not handed on', () => {
  const { run, units } = receiver('h264')
  const packets = h264Packets()
  const first = packets.filter((p) => p.header.timestamp === 1000)
  for (const p of first) units.push(p, 0)
  // One timestamp, no marker, ~5 MB: a peer that never ends a frame.
  const template = packets[1] as RtpPacket
  let seq = (first.at(-1) as RtpPacket).header.sequenceNumber
  for (let n = 0; n * 1200 <= MAX_FRAME_BYTES + 1200; n++) {
    seq = (seq + 1) & 0xffff
    const p = template.clone()
    p.header.sequenceNumber = seq
    p.header.timestamp = 1000 + 90
    p.header.marker = false
    p.payload = Buffer.concat([Buffer.from([0x7c, 0x01]), Buffer.alloc(1198, 7)]) // FU-A middle parts
    units.push(p, 0)
  }
  assert.ok(
    run.problems.some((m) => /frame over/.test(m)),
    run.problems.join('; '),
  )
  assert.equal(run.units.length, 1, 'only the first frame')
})

test('VP8: key frames tell the size; units keep their key flags', () => {
  const { run, units } = receiver('vp8')
  const packetizer = new Vp8Packetizer({ maxPayloadSize: 300 })
  for (const u of vp8.units)
    for (const p of packetizer.packetize(u.data, u.dts * 90)) units.push(p, 0)
  assert.equal(run.units.length, vp8.units.length)
  assert.deepEqual(
    run.units.map((u) => u.key),
    vp8.units.map((u) => u.key),
  )
  for (const [i, u] of run.units.entries())
    assert.ok(u.data.equals((vp8.units[i] as AccessUnit).data))
  const track = run.tracks[0] as VideoTrack
  assert.deepEqual(
    [track.codec, track.width, track.height, track.config],
    ['vp8', 160, 120, undefined],
  )
})

test('VP8: nothing before the first key frame, which is asked for', () => {
  const { run, units } = receiver('vp8')
  const packetizer = new Vp8Packetizer()
  for (const u of vp8.units.slice(1))
    for (const p of packetizer.packetize(u.data, u.dts * 90)) units.push(p, 0)
  assert.equal(run.units[0]?.key, true)
  assert.equal(run.units.length, vp8.units.length - 5)
  assert.ok(run.keyRequests >= 1, 'a key frame was asked for')
})

test('Opus: each packet is a unit; an OpusHead describes the track from the first packet', () => {
  const opus = readOggOpus(
    encode(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'libopus', '-f', 'ogg']),
  )
  const { run, units } = receiver('opus')
  const packetizer = new OpusPacketizer()
  for (const u of opus.units)
    for (const p of packetizer.packetize(u.data, u.dts * 48)) units.push(p, 100)
  assert.equal(run.units.length, opus.units.length)
  assert.ok(run.units.every((u) => u.type === 'audio' && u.key))
  assert.equal(Math.round((run.units[1] as AccessUnit).dts - (run.units[0] as AccessUnit).dts), 20)
  const track = run.tracks[0] as AudioTrack
  assert.deepEqual([track.codec, track.sampleRate], ['opus', 48_000])
  assert.equal(track.config?.subarray(0, 8).toString(), 'OpusHead')
})

test('lip sync: a sender report tells how far the publisher’s clock is ahead; a shift moves later units, and none goes back in time', () => {
  const { run, units } = receiver('opus')
  const packetizer = new OpusPacketizer()
  const send = (from: number, to: number) => {
    for (let i = from; i < to; i++)
      for (const p of packetizer.packetize(Buffer.from([0xfc, i]), i * 960)) units.push(p, 100)
  }
  assert.equal(units.senderReport(5000, 0), undefined, 'nothing to compare before a packet')
  send(0, 6)
  assert.deepEqual(
    run.units.map((u) => u.dts),
    [100, 120, 140, 160, 180, 200],
  )
  // The publisher's clock read 5000 ms at the packet our times put at 120 ms.
  assert.equal(units.senderReport(5000, 960), 4880)
  // A report from before a 32-bit wrap of the timestamps is unwrapped alike.
  assert.equal(units.senderReport(5000, 2 ** 32 - 960), 4920)
  units.shift(-30)
  send(6, 10)
  assert.deepEqual(
    run.units.map((u) => u.dts),
    [100, 120, 140, 160, 180, 200, 210, 230, 250],
    '220 - 30 would go back: left out',
  )
  assert.equal(
    units.senderReport(5000, 960),
    4910,
    'the shift is in what reports are compared with',
  )
})
