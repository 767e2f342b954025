// Media sources and an S3 store for tests: the ffmpeg arguments of a TRTC-style
// test publisher (testsrc and a sine, x264 without B-frames, one key frame a
// second) and an in-process s3rver with one bucket.
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import S3rver from 's3rver'
import { parseAudioSpecificConfig } from './codecs/audio.ts'
import { avcC, lengthPrefixed, nalType, parseSps, splitAnnexB } from './codecs/h264.ts'
import type { AccessUnit, Tracks } from './contracts.ts'
import { type MediaTools, runTool } from './ffmpeg/ffmpeg-tools.ts'
import { probe } from './ffmpeg/probe.ts'

export interface TestSource {
  seconds: number
  size?: string
  /** Real time (`-re`), as a live publisher sends. */
  live?: boolean
  audio?: boolean
  /** smptebars instead of testsrc (a screen share, say). */
  bars?: boolean
  /** One solid colour instead of testsrc (pixel checks of a mixed video). */
  color?: string
  frequency?: number
  preset?: string
  /** Frames between key frames; default 15 (one a second). */
  gop?: number
  /** Noise that does not compress, at a constant 4 Mbit/s: fills a disk fast. */
  noise?: boolean
}

/** ffmpeg arguments up to the output: encode a test pattern and a tone as a publisher would. */
export function testSourceArgs(s: TestSource): string[] {
  const audio = s.audio ?? true
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    ...(s.live ? ['-re'] : []),
    '-f',
    'lavfi',
    '-i',
    `${s.color ? `color=c=${s.color}:` : s.bars ? 'smptebars=' : 'testsrc='}size=${s.size ?? '320x240'}:rate=15${s.noise ? ',noise=alls=60:allf=t' : ''}`,
    ...(audio ? ['-f', 'lavfi', '-i', `sine=frequency=${s.frequency ?? 440}`] : []),
    '-t',
    String(s.seconds),
    '-c:v',
    'libx264',
    '-preset',
    s.preset ?? 'veryfast',
    '-tune',
    'zerolatency',
    '-g',
    String(s.gop ?? 15),
    '-pix_fmt',
    'yuv420p',
    ...(s.noise
      ? [
          '-b:v',
          '4M',
          '-minrate',
          '4M',
          '-maxrate',
          '4M',
          '-bufsize',
          '4M',
          '-x264-params',
          'nal-hrd=cbr',
        ]
      : []),
    ...(audio ? ['-c:a', 'aac'] : []),
  ]
}

/** A StartOnlineRecord request with Concat, for post-processing outside the API. */
export const CONCAT_REQUEST = {
  SdkAppId: 1,
  RoomId: 1,
  RecordUserId: 'tic_record_user_1_test',
  RecordUserSig: 'not checked by post-processing',
  Concat: { Enabled: true },
}

/** An s3rver on a free port with `bucket`; credentials S3RVER/S3RVER. */
export async function startS3rver(
  directory: string,
  bucket: string,
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const s3 = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
  })
  const address = (await s3.run()) as AddressInfo
  return { endpoint: `http://127.0.0.1:${address.port}`, close: () => s3.close() }
}

/** An access unit source read from a file made by ffmpeg: its tracks and units in order. */
export interface ReadSource {
  tracks: Tracks
  units: AccessUnit[]
}

/**
 * H.264 access units of an Annex B stream with access unit delimiters
 * (`ffmpeg … -c:v libx264 -x264-params aud=1 -f h264`), no B-frames, at `fps`.
 */
export function readAnnexB(file: Buffer, fps: number): ReadSource {
  const units: AccessUnit[] = []
  let sps: Buffer | undefined
  const pps: Buffer[] = []
  let frame: Buffer[] = []
  let key = false
  const flush = () => {
    if (frame.length === 0) return
    const ms = Math.round((units.filter((u) => u.type === 'video').length * 1000) / fps)
    units.push({ type: 'video', dts: ms, pts: ms, key, data: lengthPrefixed(frame) })
    frame = []
    key = false
  }
  for (const nal of splitAnnexB(file)) {
    const type = nalType(nal)
    if (type === 9) flush()
    else if (type === 7) sps ??= nal
    else if (type === 8) {
      if (pps.length === 0) pps.push(nal)
    } else {
      if (type === 5) key = true
      frame.push(nal)
    }
  }
  flush()
  if (sps === undefined) throw new Error('no SPS')
  const { width, height } = parseSps(sps)
  return {
    tracks: { video: { type: 'video', codec: 'h264', config: avcC(sps, pps), width, height } },
    units,
  }
}

/** AAC frames of an ADTS stream (`ffmpeg … -c:a aac -f adts`). */
export function readAdts(file: Buffer): ReadSource {
  const units: AccessUnit[] = []
  let asc: Buffer | undefined
  let rate = 0
  let channels = 0
  for (let at = 0, n = 0; at + 7 <= file.length; n++) {
    const protectionAbsent = (file[at + 1] as number) & 1
    const profile = (file[at + 2] as number) >> 6
    const rateIndex = ((file[at + 2] as number) >> 2) & 0xf
    channels = (((file[at + 2] as number) & 1) << 2) | ((file[at + 3] as number) >> 6)
    const length =
      (((file[at + 3] as number) & 3) << 11) |
      ((file[at + 4] as number) << 3) |
      ((file[at + 5] as number) >> 5)
    const header = protectionAbsent ? 7 : 9
    if (asc === undefined) {
      asc = Buffer.alloc(2)
      asc.writeUInt16BE(((profile + 1) << 11) | (rateIndex << 7) | (channels << 3))
      rate = parseAudioSpecificConfig(asc).sampleRate
    }
    const ms = (n * 1024 * 1000) / rate
    units.push({
      type: 'audio',
      dts: ms,
      pts: ms,
      key: true,
      data: file.subarray(at + header, at + length),
    })
    at += length
  }
  return {
    tracks: { audio: { type: 'audio', codec: 'aac', config: asc, sampleRate: rate, channels } },
    units,
  }
}

/** Two sources' tracks together, their units merged in time order. */
export function mergeSources(a: ReadSource, b: ReadSource): ReadSource {
  return {
    tracks: { ...a.tracks, ...b.tracks },
    units: [...a.units, ...b.units].sort((x, y) => x.dts - y.dts),
  }
}

/** VP8 frames of an IVF file (`ffmpeg … -c:v libvpx -f ivf`). */
export function readIvf(file: Buffer, fps: number): ReadSource {
  const width = file.readUInt16LE(12)
  const height = file.readUInt16LE(14)
  const units: AccessUnit[] = []
  for (let at = 32, n = 0; at + 12 <= file.length; n++) {
    const size = file.readUInt32LE(at)
    const data = file.subarray(at + 12, at + 12 + size)
    const ms = Math.round((n * 1000) / fps)
    units.push({ type: 'video', dts: ms, pts: ms, key: ((data[0] as number) & 1) === 0, data })
    at += 12 + size
  }
  return { tracks: { video: { type: 'video', codec: 'vp8', width, height } }, units }
}

/** Opus packets of an Ogg file (`ffmpeg … -c:a libopus -f ogg`), 20 ms each. */
export function readOggOpus(file: Buffer): ReadSource {
  const packets: Buffer[] = []
  let pending: Buffer[] = []
  for (let at = 0; at + 27 <= file.length; ) {
    const segments = file[at + 26] as number
    const table = file.subarray(at + 27, at + 27 + segments)
    let data = at + 27 + segments
    for (const lace of table) {
      pending.push(file.subarray(data, data + lace))
      data += lace
      if (lace < 255) {
        packets.push(Buffer.concat(pending))
        pending = []
      }
    }
    at = data
  }
  const [head, , ...audio] = packets
  const channels = head?.[9] ?? 2
  return {
    tracks: { audio: { type: 'audio', codec: 'opus', config: head, sampleRate: 48_000, channels } },
    units: audio.map((data, i) => ({ type: 'audio', dts: i * 20, pts: i * 20, key: true, data })),
  }
}

/** The RGB colour of each point of the frame at `seconds` into `file`. */
export async function pixelsAt(
  tools: MediaTools,
  file: string,
  seconds: number,
  points: readonly (readonly [number, number])[],
): Promise<[number, number, number][]> {
  const info = await probe(tools.ffprobe, file)
  const width = info.video?.width ?? 0
  const raw = await runTool(
    tools.ffmpeg,
    // Made constant-rate first: in a variable-rate video (the whiteboard's)
    // the picture at a time is the last frame before it, not the next one.
    [
      ...['-hide_banner', '-loglevel', 'error', '-i', file, '-vf', 'fps=30'],
      '-ss',
      seconds.toFixed(3),
    ].concat(['-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']),
    { encoding: 'latin1' },
  )
  const frame = Buffer.from(raw, 'latin1')
  return points.map(([x, y]) => {
    const i = (y * width + x) * 3
    return [frame[i] ?? -1, frame[i + 1] ?? -1, frame[i + 2] ?? -1]
  })
}

/** Whether `rgb` is within `tolerance` of `#RRGGBB` on every channel. */
export function near(rgb: readonly number[], color: string, tolerance = 40): boolean {
  const want = [1, 3, 5].map((i) => Number.parseInt(color.slice(i, i + 2), 16))
  return rgb.every((v, i) => Math.abs(v - (want[i] ?? 0)) <= tolerance)
}

/**
 * The amplitude (0–1 of full scale) of each frequency in the audio of `file`
 * between `from` and `to` seconds (Goertzel over the mono mix at 8 kHz).
 */
export async function toneLevels(
  tools: MediaTools,
  file: string,
  from: number,
  to: number,
  frequencies: readonly number[],
): Promise<number[]> {
  const rate = 8000
  const raw = await runTool(
    tools.ffmpeg,
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-ss',
      from.toFixed(3),
      '-t',
      (to - from).toFixed(3),
    ].concat([
      '-i',
      file,
      '-map',
      '0:a:0',
      '-ac',
      '1',
      '-ar',
      String(rate),
      '-f',
      's16le',
      'pipe:1',
    ]),
    { encoding: 'latin1' },
  )
  const pcm = Buffer.from(raw, 'latin1')
  const n = Math.floor(pcm.length / 2)
  return frequencies.map((f) => {
    const k = 2 * Math.cos((2 * Math.PI * f) / rate)
    let s1 = 0
    let s2 = 0
    for (let i = 0; i < n; i++) {
      const s0 = pcm.readInt16LE(i * 2) / 32768 + k * s1 - s2
      s2 = s1
      s1 = s0
    }
    const power = s1 * s1 + s2 * s2 - k * s1 * s2
    return n === 0 ? 0 : (2 * Math.sqrt(Math.max(0, power))) / n
  })
}

/** Asserts the colour (#RRGGBB, within 40 a channel) at each point of the frame at `seconds`. */
export async function assertColours(
  tools: MediaTools,
  file: string,
  seconds: number,
  expected: readonly (readonly [number, number, string])[],
): Promise<void> {
  const got = await pixelsAt(
    tools,
    file,
    seconds,
    expected.map(([x, y]) => [x, y] as const),
  )
  for (const [i, [x, y, color]] of expected.entries()) {
    assert.ok(
      near(got[i] as number[], color),
      `at ${seconds} s (${x},${y}): ${got[i]} is not ${color}`,
    )
  }
}

/** Asserts which tones sound (above 5 % of full scale) or not (below 1 %) between `from` and `to` s. */
export async function assertTones(
  tools: MediaTools,
  file: string,
  from: number,
  to: number,
  present: Record<number, boolean>,
): Promise<void> {
  const frequencies = Object.keys(present).map(Number)
  const levels = await toneLevels(tools, file, from, to, frequencies)
  for (const [i, f] of frequencies.entries()) {
    const level = levels[i] as number
    if (present[f]) assert.ok(level > 0.05, `${f} Hz should sound in ${from}–${to} s: ${level}`)
    else assert.ok(level < 0.01, `${f} Hz should be silent in ${from}–${to} s: ${level}`)
  }
}
