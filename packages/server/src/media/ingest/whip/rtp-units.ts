// RTP of one received track to the media core's access units: packets put
// back in order (a missing packet is waited for `reorderMs` of media time,
// long enough for its NACK retransmission; werift's own jitter buffer drops
// the packets it holds past a loss and hands them on later, out of order),
// gathered into frames (one RTP timestamp, ended by the marker bit), and
// depacketized by werift's codec readers. H.264 leaves here length-prefixed
// with its parameter sets in an avcC, VP8 as frames with the size its key
// frames state, Opus as packets. After a loss nothing is written until the
// next key frame, which is asked for: a recording never shows a smeared picture.
import { type DepacketizerCodec, dePacketizeRtpPackets, type RtpPacket } from 'werift/nonstandard'
import { opusHead } from '../../codecs/audio.ts'
import { avcC, lengthPrefixed, nalType, parseSps, splitAnnexB } from '../../codecs/h264.ts'
import type { AccessUnit, AudioTrack, VideoTrack } from '../../contracts.ts'

export type RtpCodec = 'h264' | 'vp8' | 'opus'

/** werift's names of its depacketizers. */
const DEPACKETIZER: Record<RtpCodec, DepacketizerCodec> = {
  h264: 'MPEG4/ISO/AVC',
  vp8: 'VP8',
  opus: 'OPUS',
}

/** A frame larger than this is refused (a 4K key frame is well below it). */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/** Packets of one frame at most (4 MiB of 1,200-byte packets is about 3,500). */
export const MAX_FRAME_PACKETS = 5000
/** An RTP payload larger than this is not from a WebRTC sender (they stay under the MTU). */
export const MAX_PAYLOAD_BYTES = 8 * 1024
/** Packets held for reordering at most, and their bytes. */
const MAX_REORDER_PACKETS = 2000
const MAX_REORDER_BYTES = 4 * 1024 * 1024
/** Packets in a row from behind what was handed on: the sender started a new sequence. */
const RESYNC_AFTER = 50

export interface TrackUnitsOptions {
  codec: RtpCodec
  clockRate: number
  /** How long (media time) a missing packet is waited for before it counts as lost. */
  reorderMs: number
  /** The track's parameters: first known, or changed (a new resolution). */
  onTrack: (track: VideoTrack | AudioTrack) => void
  onUnit: (unit: AccessUnit) => void
  /** A key frame is needed: the first one, or the next after a loss. */
  onNeedKeyFrame: () => void
  /** What the peer sent cannot be recorded (a frame too large, a broken payload). */
  onProblem?: (message: string) => void
}

/** Turns one track's RTP packets into access units. */
export class TrackUnits {
  readonly #o: TrackUnitsOptions
  readonly #reorder: ReorderBuffer
  #frame: RtpPacket[] = []
  #frameBytes = 0
  /** Extended (unwrapped) RTP timestamp of the first packet, and the time it stands for. */
  #first: { rtp: number; ms: number } | undefined
  #lastRtp = 0
  #wraps = 0
  /** After a loss: the timestamp whose packets are dropped ('next': of the next packet). */
  #skip: number | 'next' | undefined
  readonly #told = new Set<string>()
  /** The time of the last unit handed on. */
  #lastAt = Number.NEGATIVE_INFINITY
  /** Video: nothing is handed on until a key frame (at the start, after a loss). */
  #needKey: boolean
  #track: VideoTrack | AudioTrack | undefined
  #sps: Buffer | undefined
  #pps: Buffer[] = []
  units = 0
  lost = 0

  constructor(options: TrackUnitsOptions) {
    this.#o = options
    this.#reorder = new ReorderBuffer((options.reorderMs * options.clockRate) / 1000)
    this.#needKey = options.codec !== 'opus'
    if (options.codec === 'opus') {
      this.#track = {
        type: 'audio',
        codec: 'opus',
        config: opusHead(2),
        sampleRate: 48_000,
        channels: 2,
      }
    }
  }

  /** A packet as received, at `nowMs` on the publisher's clock (used for the first packet only). */
  push(rtp: RtpPacket, nowMs: number): void {
    if (this.#first === undefined) {
      this.#first = { rtp: rtp.header.timestamp, ms: nowMs }
      this.#lastRtp = rtp.header.timestamp
      // Opus says all there is to know of its track in the SDP.
      if (this.#track !== undefined) this.#o.onTrack(this.#track)
    }
    this.#reorder.push(
      rtp,
      (p) => this.#packet(p),
      () => this.#lose(),
    )
  }

  /**
   * Packets are missing (the reorder buffer gave up on them). The frame being
   * gathered is dropped, and so is the frame of the packet after the gap: the
   * missing packets may have been its start, and werift's readers would make
   * a picture of what is left. Video then waits for a key frame.
   */
  #lose(): void {
    this.lost++
    this.#broken()
    this.#skip = 'next'
  }

  /** The frame being gathered is dropped; video waits for (and asks for) a key frame. */
  #broken(): void {
    this.#frame = []
    this.#frameBytes = 0
    if (this.#o.codec !== 'opus' && !this.#needKey) {
      this.#needKey = true
      this.#o.onNeedKeyFrame()
    }
  }

  #packet(rtp: RtpPacket): void {
    // Padding (bandwidth probes) and DTX carry nothing; their sequence numbers are counted already.
    if (rtp.payload.length === 0) return
    if (rtp.payload.length > MAX_PAYLOAD_BYTES) {
      this.#problem(`an RTP payload of ${rtp.payload.length} bytes`)
      this.#lose()
      return
    }
    if (this.#o.codec === 'opus') {
      this.#emit([rtp])
      return
    }
    const ts = rtp.header.timestamp
    if (this.#skip === 'next') this.#skip = ts
    if (this.#skip !== undefined) {
      if (ts === this.#skip) return
      this.#skip = undefined
    }
    const head = this.#frame[0]
    // A new timestamp without the last frame's marker: that frame was cut short.
    if (head !== undefined && head.header.timestamp !== ts) this.#broken()
    this.#frame.push(rtp)
    this.#frameBytes += rtp.payload.length
    if (this.#frameBytes > MAX_FRAME_BYTES || this.#frame.length > MAX_FRAME_PACKETS) {
      this.#problem(`a video frame over ${MAX_FRAME_BYTES} bytes or ${MAX_FRAME_PACKETS} packets`)
      this.#broken()
      this.#skip = ts
      return
    }
    if (rtp.header.marker) {
      const packets = this.#frame
      this.#frame = []
      this.#frameBytes = 0
      this.#emit(packets)
    }
  }

  /** Tells a problem once: a peer repeating it must not flood the log. */
  #problem(message: string): void {
    if (this.#told.has(message) || this.#told.size > 16) return
    this.#told.add(message)
    this.#o.onProblem?.(message)
  }

  /** Milliseconds on the publisher's clock of an RTP timestamp (32-bit, unwrapped here). */
  /**
   * A sender report: the publisher's wall clock (NTP, in ms) at an RTP
   * timestamp of this track. Returns how far that clock is ahead of the times
   * given to units (their first packet's arrival, then the RTP clock), ms;
   * undefined before the first packet.
   */
  senderReport(ntpMs: number, rtp: number): number | undefined {
    const first = this.#first
    if (first === undefined) return undefined
    // The report's timestamp unwrapped near the last packet's.
    let wraps = this.#wraps
    if (rtp < this.#lastRtp && this.#lastRtp - rtp > 0x80000000) wraps++
    else if (rtp > this.#lastRtp && rtp - this.#lastRtp > 0x80000000) wraps--
    const at = first.ms + ((rtp + wraps * 0x100000000 - first.rtp) * 1000) / this.#o.clockRate
    return ntpMs - at
  }

  /** Moves this track's times by `ms` (lip sync); units that would go back in time are left out. */
  shift(ms: number): void {
    if (this.#first !== undefined) this.#first = { ...this.#first, ms: this.#first.ms + ms }
  }

  #ms(timestamp: number): number {
    // Packets come in order: a timestamp far below the last one has wrapped.
    if (timestamp < this.#lastRtp && this.#lastRtp - timestamp > 0x80000000) this.#wraps++
    this.#lastRtp = timestamp
    const first = this.#first as { rtp: number; ms: number }
    const ext = timestamp + this.#wraps * 0x100000000
    return first.ms + ((ext - first.rtp) * 1000) / this.#o.clockRate
  }

  #emit(packets: RtpPacket[]): void {
    let frame: { data: Buffer; isKeyframe: boolean }
    try {
      frame = dePacketizeRtpPackets(DEPACKETIZER[this.#o.codec], packets)
    } catch {
      this.#problem(`a malformed ${this.#o.codec} payload`)
      this.#broken()
      return
    }
    const at = this.#ms((packets[0] as RtpPacket).header.timestamp)
    if (this.#o.codec === 'opus') this.#unit(frame.data, true, at)
    else if (this.#o.codec === 'vp8') this.#vp8(frame.data, at)
    else this.#h264(frame.data, at)
  }

  #unit(data: Buffer, key: boolean, at: number): void {
    if (this.#track === undefined) return
    // After a lip-sync shift backwards: what would go back in time is left out.
    if (at <= this.#lastAt) return
    this.#lastAt = at
    this.units++
    this.#o.onUnit({ type: this.#track.type, dts: at, pts: at, key, data })
  }

  #video(codec: VideoTrack['codec'], width: number, height: number, config?: Buffer): void {
    const t = this.#track
    if (
      t?.type === 'video' &&
      t.width === width &&
      t.height === height &&
      (config === undefined || t.config?.equals(config) === true)
    )
      return
    this.#track = { type: 'video', codec, width, height, config }
    this.#o.onTrack(this.#track)
  }

  #vp8(data: Buffer, at: number): void {
    // RFC 6386 §9.1: the frame tag's first bit is 0 on a key frame, which
    // carries the start code 9d 01 2a and the picture's size.
    const key =
      data.length >= 10 &&
      ((data[0] as number) & 1) === 0 &&
      data[3] === 0x9d &&
      data[4] === 0x01 &&
      data[5] === 0x2a
    if (key) {
      const width = data.readUInt16LE(6) & 0x3fff
      const height = data.readUInt16LE(8) & 0x3fff
      if (width === 0 || height === 0) {
        this.#broken()
        return
      }
      this.#video('vp8', width, height)
      this.#needKey = false
    }
    if (this.#needKey) {
      this.#o.onNeedKeyFrame()
      return
    }
    this.#unit(data, key, at)
  }

  #h264(data: Buffer, at: number): void {
    const nals = splitAnnexB(data)
    const slices: Buffer[] = []
    let idr = false
    let sps = this.#sps
    let pps: Buffer[] | undefined
    for (const nal of nals) {
      const type = nalType(nal)
      if (type === 7) sps = nal
      else if (type === 8) {
        pps ??= []
        pps.push(nal)
      } else if (type === 9) {
        // Access unit delimiters are left out, as in MP4.
      } else {
        if (type === 5) idr = true
        slices.push(nal)
      }
    }
    if (sps && pps && !(this.#sps?.equals(sps) && samePps(pps, this.#pps))) {
      let size: { width: number; height: number }
      try {
        size = parseSps(sps)
      } catch {
        this.#problem('a malformed H.264 sequence parameter set')
        this.#broken()
        return
      }
      this.#sps = sps
      this.#pps = pps
      this.#video('h264', size.width, size.height, avcC(sps, pps))
    }
    if (idr && this.#track !== undefined) this.#needKey = false
    if (this.#needKey) {
      // Asked again on every frame until one comes (the publisher's side rate-limits).
      this.#o.onNeedKeyFrame()
      return
    }
    if (slices.length === 0) return
    this.#unit(lengthPrefixed(slices), idr, at)
  }
}

function samePps(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((p, i) => p.equals(b[i] as Buffer))
}

/**
 * Packets in sequence-number order. One that comes late (its successors are
 * here) is waited for until the newest packet is `window` RTP ticks past the
 * oldest one held, or the buffer is full; then it counts as lost and what is
 * held goes on. Duplicates and packets from before what was handed on are dropped.
 */
export class ReorderBuffer {
  readonly #window: number
  readonly #held = new Map<number, RtpPacket>()
  #heldBytes = 0
  /** The sequence number handed on next; undefined before the first packet. */
  #next: number | undefined
  /** Packets in a row that came from behind #next. */
  #behind = 0

  constructor(window: number) {
    this.#window = window
  }

  push(rtp: RtpPacket, out: (p: RtpPacket) => void, lost: () => void): void {
    const seq = rtp.header.sequenceNumber
    if (this.#next === undefined) this.#next = seq
    const ahead = ((seq - this.#next + 0x8000) & 0xffff) - 0x8000
    if (ahead < 0) {
      // A duplicate or a packet given up on; many in a row: a new sequence (a jump of 2^15 or more).
      if (++this.#behind < RESYNC_AFTER) return
      this.#held.clear()
      this.#heldBytes = 0
      this.#next = seq
      lost()
    }
    this.#behind = 0
    if (this.#held.has(seq)) return
    if (seq !== this.#next) {
      this.#held.set(seq, rtp)
      this.#heldBytes += rtp.payload.length
    } else {
      this.#next = (seq + 1) & 0xffff
      out(rtp)
    }
    this.#drain(out)
    // Each gap waited for too long (or with too much held) is lost, and what follows it goes on.
    while (this.#held.size > 0) {
      const oldest = this.#oldest()
      const waited = (rtp.header.timestamp - oldest.header.timestamp) >>> 0
      const tooOld = waited < 0x80000000 && waited > this.#window
      const full = this.#held.size > MAX_REORDER_PACKETS || this.#heldBytes > MAX_REORDER_BYTES
      if (!tooOld && !full) return
      this.#next = oldest.header.sequenceNumber
      lost()
      this.#drain(out)
    }
  }

  /** The held packet nearest after the gap. */
  #oldest(): RtpPacket {
    let oldest: RtpPacket | undefined
    let distance = Number.POSITIVE_INFINITY
    for (const [seq, p] of this.#held) {
      const d = (seq - (this.#next as number)) & 0xffff
      if (d < distance) {
        distance = d
        oldest = p
      }
    }
    return oldest as RtpPacket
  }

  #drain(out: (p: RtpPacket) => void): void {
    for (;;) {
      const p = this.#held.get(this.#next as number)
      if (p === undefined) return
      this.#held.delete(this.#next as number)
      this.#heldBytes -= p.payload.length
      this.#next = ((this.#next as number) + 1) & 0xffff
      out(p)
    }
  }
}
