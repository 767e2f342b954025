// A streaming Matroska writer for the recording pipe: the one container that
// carries every codec an ingest hands over (H.264, VP8, AAC, Opus) and can be
// written without ever seeking back. The Segment and each Cluster have
// unknown sizes, and every access unit goes out as a SimpleBlock the moment it
// arrives, so the recording process downstream sees media without delay.
// Only what that needs is here (no cues, no lacing, no tags); the files the
// recording process writes from it are its own, complete Matroska.
import type { AudioTrack, Tracks, VideoTrack } from '../contracts.ts'

/** Matroska CodecIDs of the codecs an ingest may deliver. */
export const CODEC_IDS = {
  h264: 'V_MPEG4/ISO/AVC',
  vp8: 'V_VP8',
  aac: 'A_AAC',
  opus: 'A_OPUS',
} as const

const ID = {
  EBML: 0x1a45dfa3,
  EBMLVersion: 0x4286,
  EBMLReadVersion: 0x42f7,
  EBMLMaxIDLength: 0x42f2,
  EBMLMaxSizeLength: 0x42f3,
  DocType: 0x4282,
  DocTypeVersion: 0x4287,
  DocTypeReadVersion: 0x4285,
  Segment: 0x18538067,
  Info: 0x1549a966,
  TimestampScale: 0x2ad7b1,
  MuxingApp: 0x4d80,
  WritingApp: 0x5741,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackNumber: 0xd7,
  TrackUID: 0x73c5,
  TrackType: 0x83,
  FlagLacing: 0x9c,
  CodecID: 0x86,
  CodecPrivate: 0x63a2,
  CodecDelay: 0x56aa,
  SeekPreRoll: 0x56bb,
  Video: 0xe0,
  PixelWidth: 0xb0,
  PixelHeight: 0xba,
  ColourSpace: 0x2eb524,
  Audio: 0xe1,
  SamplingFrequency: 0xb5,
  Channels: 0x9f,
  Cluster: 0x1f43b675,
  Timestamp: 0xe7,
  SimpleBlock: 0xa3,
} as const

/** The "unknown" size of a master element written before its content is known. */
const UNKNOWN_SIZE = Buffer.from([0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])

function idBytes(id: number): Buffer {
  const bytes = id > 0xffffff ? 4 : id > 0xffff ? 3 : id > 0xff ? 2 : 1
  const out = Buffer.alloc(bytes)
  out.writeUIntBE(id, 0, bytes)
  return out
}

/** An EBML variable-length size. */
export function vint(n: number): Buffer {
  for (let length = 1; length <= 8; length++) {
    // All ones is reserved (unknown) at every length.
    if (n < 2 ** (7 * length) - 1) {
      const out = Buffer.alloc(length)
      let v = n
      for (let i = length - 1; i >= 0; i--) {
        out[i] = v % 256
        v = Math.floor(v / 256)
      }
      out[0] = (out[0] as number) | (0x80 >> (length - 1))
      return out
    }
  }
  throw new RangeError(`EBML size ${n} is too large`)
}

function element(id: number, data: Buffer): Buffer {
  return Buffer.concat([idBytes(id), vint(data.length), data])
}

/** An unsigned integer element; values here stay below 2^48 (ms timestamps, sizes, ids). */
function uint(id: number, n: number): Buffer {
  let bytes = 1
  while (bytes < 6 && n >= 2 ** (8 * bytes)) bytes++
  const data = Buffer.alloc(bytes)
  data.writeUIntBE(n, 0, bytes)
  return element(id, data)
}

function float(id: number, n: number): Buffer {
  const data = Buffer.alloc(8)
  data.writeDoubleBE(n)
  return element(id, data)
}

function text(id: number, s: string): Buffer {
  return element(id, Buffer.from(s, 'utf8'))
}

function master(id: number, children: Buffer[]): Buffer {
  return element(id, Buffer.concat(children))
}

/** The elements every TrackEntry starts with: number, type (1 video, 2 audio), codec. */
function trackHead(number: number, type: 1 | 2, codecId: string, config?: Buffer): Buffer[] {
  return [
    uint(ID.TrackNumber, number),
    uint(ID.TrackUID, number),
    uint(ID.TrackType, type),
    uint(ID.FlagLacing, 0),
    text(ID.CodecID, codecId),
    ...(config ? [element(ID.CodecPrivate, config)] : []),
  ]
}

function videoEntry(number: number, track: VideoTrack): Buffer {
  return master(ID.TrackEntry, [
    ...trackHead(number, 1, CODEC_IDS[track.codec], track.config),
    master(ID.Video, [uint(ID.PixelWidth, track.width), uint(ID.PixelHeight, track.height)]),
  ])
}

function rawEntry(width: number, height: number): Buffer {
  return master(ID.TrackEntry, [
    ...trackHead(1, 1, 'V_UNCOMPRESSED'),
    master(ID.Video, [
      uint(ID.PixelWidth, width),
      uint(ID.PixelHeight, height),
      element(ID.ColourSpace, Buffer.from('RGBA', 'latin1')),
    ]),
  ])
}

function audioEntry(number: number, track: AudioTrack): Buffer {
  return master(ID.TrackEntry, [
    ...trackHead(number, 2, CODEC_IDS[track.codec], track.config),
    // Opus: the decoder's pre-skip in ns, and the 80 ms a decoder needs after a seek.
    ...(track.codec === 'opus'
      ? [
          uint(ID.CodecDelay, Math.round(((track.config?.readUInt16LE(10) ?? 312) / 48_000) * 1e9)),
          uint(ID.SeekPreRoll, 80_000_000),
        ]
      : []),
    master(ID.Audio, [
      float(ID.SamplingFrequency, track.sampleRate),
      uint(ID.Channels, track.channels),
    ]),
  ])
}

const CLUSTER_ID = idBytes(ID.Cluster)

/** The largest SimpleBlock timestamp offset from its cluster's (a signed 16-bit field). */
const MAX_BLOCK_OFFSET_MS = 32_000

/**
 * Writes one Matroska stream: `header()` once, then `block()` for each access
 * unit in order (timestamps in ms, per track non-decreasing as the ingest
 * delivers them). Tracks are numbered video 1, audio 2 (the one present is 1
 * when there is only one).
 */
export class MatroskaWriter {
  readonly #video: number | undefined
  readonly #audio: number | undefined
  readonly #tracks: Tracks
  /** A track of uncompressed RGBA pictures instead (the whiteboard's renderer). */
  readonly #raw: { width: number; height: number } | undefined
  #cluster: number | undefined

  constructor(tracks: Tracks, raw?: { width: number; height: number }) {
    this.#tracks = tracks
    this.#raw = raw
    this.#video = tracks.video || raw ? 1 : undefined
    this.#audio = tracks.audio ? (tracks.video ? 2 : 1) : undefined
  }

  /** A stream of one track of RGBA pictures (V_UNCOMPRESSED, ColourSpace "RGBA"), each a key frame. */
  static rawRgba(width: number, height: number): MatroskaWriter {
    return new MatroskaWriter({}, { width, height })
  }

  /** EBML header, the Segment's start, Info and Tracks. */
  header(): Buffer {
    const { video, audio } = this.#tracks
    const entries: Buffer[] = []
    if (this.#raw) entries.push(rawEntry(this.#raw.width, this.#raw.height))
    if (video && this.#video !== undefined) entries.push(videoEntry(this.#video, video))
    if (audio && this.#audio !== undefined) entries.push(audioEntry(this.#audio, audio))
    return Buffer.concat([
      master(ID.EBML, [
        uint(ID.EBMLVersion, 1),
        uint(ID.EBMLReadVersion, 1),
        uint(ID.EBMLMaxIDLength, 4),
        uint(ID.EBMLMaxSizeLength, 8),
        text(ID.DocType, 'matroska'),
        uint(ID.DocTypeVersion, 4),
        uint(ID.DocTypeReadVersion, 2),
      ]),
      idBytes(ID.Segment),
      UNKNOWN_SIZE,
      master(ID.Info, [
        uint(ID.TimestampScale, 1_000_000),
        text(ID.MuxingApp, 'online-record'),
        text(ID.WritingApp, 'online-record'),
      ]),
      master(ID.Tracks, entries),
    ])
  }

  /**
   * One access unit as a SimpleBlock, preceded by a new Cluster when it is a
   * video key frame or too far from the current cluster's time. `ms` is its
   * presentation time, at least 0. Returns what precedes the data (one small
   * buffer) and the data itself: two buffers to write, whatever the unit.
   */
  block(type: 'video' | 'audio', ms: number, key: boolean, data: Buffer): [Buffer, Buffer] | [] {
    const track = type === 'video' ? this.#video : this.#audio
    if (track === undefined) return []
    const at = Math.max(0, Math.round(ms))
    const offset = this.#cluster === undefined ? Number.NaN : at - this.#cluster
    let cluster: Buffer | undefined
    if (
      this.#cluster === undefined ||
      (type === 'video' && key) ||
      !(offset >= -MAX_BLOCK_OFFSET_MS && offset <= MAX_BLOCK_OFFSET_MS)
    ) {
      this.#cluster = at
      cluster = uint(ID.Timestamp, at)
    }
    // [Cluster id, unknown size, Timestamp]? SimpleBlock id, size, track, time, flags.
    const size = vint(4 + data.length)
    const prefix = Buffer.allocUnsafe(
      (cluster ? CLUSTER_ID.length + UNKNOWN_SIZE.length + cluster.length : 0) +
        1 +
        size.length +
        4,
    )
    let n = 0
    if (cluster) {
      n += CLUSTER_ID.copy(prefix, n)
      n += UNKNOWN_SIZE.copy(prefix, n)
      n += cluster.copy(prefix, n)
    }
    prefix[n++] = ID.SimpleBlock
    n += size.copy(prefix, n)
    prefix[n++] = 0x80 | track
    prefix.writeInt16BE(at - this.#cluster, n)
    prefix[n + 2] = key ? 0x80 : 0
    return [prefix, data]
  }
}
