// One WebRTC publish, received with werift: the offer is answered (without
// trickle: every candidate is in the answer), each received track's RTP
// becomes access units (rtp-units.ts), and the publish ends when the peer
// closes, ICE fails, it has not connected (no RTP) `connectMs` after the
// answer, or no RTP arrives for `silenceMs` (a closed tab is otherwise
// noticed only when ICE gives up, after about 30 s). This is the
// receive-and-record half of WHIP, apart from its HTTP signalling, so that a
// puller joining an SFU room can reuse it. It runs in a media worker process.
import {
  type MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  type RTCRtpTransceiver,
  RtcpSrPacket,
  useNACK,
  usePLI,
  useTWCC,
} from 'werift'
import type { AccessUnit, AudioTrack, CloseReason, Tracks, VideoTrack } from '../../contracts.ts'
import { type RtpCodec, TrackUnits } from './rtp-units.ts'

export interface SessionSettings {
  /** The local address media is received on; undefined: every IPv4 interface. */
  address: string | undefined
  /** The address written in the answer's candidates instead of the local one (behind 1:1 NAT). */
  publicIp: string | undefined
  /** UDP ports to take one from, per publish. */
  portRange: [number, number]
  /**
   * An answered offer whose peer has sent no RTP (ICE or DTLS not finished)
   * this long after the answer is ended, and its UDP port closed: a peer that
   * never connects holds a port this long, and a publisher slot this long
   * after its answer (which the service waits for 10 s at most).
   */
  connectMs: number
  /** No RTP for this long, once some came, ends the publish. */
  silenceMs: number
  /** A key frame is asked for this often, so a segment can start soon at any time. */
  keyFrameEveryMs: number
  /** How long a missing packet is waited for (its NACK retransmission), media time. */
  reorderMs: number
}

export interface SessionEvents {
  /** The first RTP packet arrived: ICE and DTLS are done, media flows. */
  connected(): void
  tracks(tracks: Tracks): void
  unit(unit: AccessUnit): void
  close(reason: CloseReason, detail?: string): void
  /** For the debug log: what the peer sent that was not recorded, the lip-sync shift. */
  problem(message: string): void
}

/** The session's clock and timers; a test moves them itself. */
export interface SessionTimers {
  /** Milliseconds, monotonic. */
  now(): number
  /** Runs `run` once after `ms`; the function returned cancels it. */
  after(ms: number, run: () => void): () => void
  /** Runs `run` every `ms`; the function returned stops it. */
  every(ms: number, run: () => void): () => void
}

export const REAL_TIMERS: SessionTimers = {
  now: () => performance.now(),
  after(ms, run) {
    const timer = setTimeout(run, ms)
    return () => clearTimeout(timer)
  },
  every(ms, run) {
    const timer = setInterval(run, ms)
    return () => clearInterval(timer)
  },
}

/** The codecs answered, H.264 first: it goes into MP4 without transcoding. */
function codecs() {
  const feedback = () => [useNACK(), usePLI(), useTWCC()]
  return {
    video: [
      new RTCRtpCodecParameters({
        mimeType: 'video/H264',
        clockRate: 90_000,
        rtcpFeedback: feedback(),
        parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
      }),
      new RTCRtpCodecParameters({
        mimeType: 'video/VP8',
        clockRate: 90_000,
        rtcpFeedback: feedback(),
      }),
    ],
    audio: [
      new RTCRtpCodecParameters({
        mimeType: 'audio/opus',
        clockRate: 48_000,
        channels: 2,
        rtcpFeedback: [useTWCC()],
      }),
    ],
  }
}

const CODEC_OF: Record<string, RtpCodec> = {
  'video/h264': 'h264',
  'video/vp8': 'vp8',
  'audio/opus': 'opus',
}

/** Key frame requests at most this often (a loss asks on every frame until one comes). */
const KEY_FRAME_MIN_GAP_MS = 300
/** How long after the first packet a track that has not started is given up on. */
const TRACK_WAIT_MS = 3000

/** What the peer offered cannot be answered (no codec in common, no media): its fault, not ours. */
export class OfferError extends Error {}

/** A negotiated m-line the peer sends on, and what is known of its track. */
interface Receiver {
  kind: 'audio' | 'video'
  transceiver: RTCRtpTransceiver
  track?: MediaStreamTrack
  units?: TrackUnits
  known?: VideoTrack | AudioTrack
  /** How far the publisher's clock is ahead of this track's unit times, from its first sender report. */
  ahead?: number
}

export class WhipSession {
  readonly #pc: RTCPeerConnection
  readonly #s: SessionSettings
  readonly #events: SessionEvents
  readonly #receivers: Receiver[] = []
  #announced = false
  #synced = false
  #firstPacketMs: number | undefined
  #lastPacketMs = 0
  #lastKeyRequestMs = 0
  readonly #t: SessionTimers
  #stopTick: (() => void) | undefined
  #cancelConnect: (() => void) | undefined
  #cancelKey: (() => void) | undefined
  #closed = false

  private constructor(settings: SessionSettings, events: SessionEvents, timers: SessionTimers) {
    this.#s = settings
    this.#events = events
    this.#t = timers
    const address = settings.address
    this.#pc = new RTCPeerConnection({
      codecs: codecs(),
      iceServers: [],
      bundlePolicy: 'max-bundle',
      icePortRange: settings.portRange,
      // One address when configured: candidates on it only, its socket bound to it.
      iceUseIpv4: address === undefined,
      iceUseIpv6: false,
      iceAdditionalHostAddresses: address === undefined ? undefined : [address],
      iceInterfaceAddresses: address === undefined ? undefined : { udp4: address },
      iceUseTcp: false,
      iceTcpPassive: false,
    })
  }

  /** Answers `offer`; resolves with the session and its answer (candidates included). */
  static async open(
    offer: string,
    settings: SessionSettings,
    events: SessionEvents,
    timers: SessionTimers = REAL_TIMERS,
  ): Promise<{ session: WhipSession; answer: string }> {
    const session = new WhipSession(settings, events, timers)
    try {
      const answer = await session.#answer(offer)
      return { session, answer }
    } catch (error) {
      session.#stopTimers()
      await session.#pc.close().catch(() => {})
      throw error
    }
  }

  async #answer(offer: string): Promise<string> {
    const pc = this.#pc
    pc.onTransceiverAdded.subscribe((transceiver) => this.#receive(transceiver))
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: offer })
      for (const t of pc.getTransceivers()) {
        // WHIP receives only: nothing is ever sent back.
        t.setDirection('recvonly')
        if (!this.#receivers.some((r) => r.transceiver === t)) this.#receive(t)
      }
      if (this.#receivers.length === 0)
        throw new Error('the offer has no audio or video to receive')
      const usable = this.#receivers.filter((r) =>
        r.transceiver.codecs.some((c) => CODEC_OF[c.mimeType.toLowerCase()] !== undefined),
      )
      if (usable.length === 0)
        throw new Error('no codec in common: send H.264 or VP8 video, or Opus audio')
      await pc.setLocalDescription(await pc.createAnswer())
    } catch (error) {
      throw new OfferError(`the offer cannot be answered: ${(error as Error).message}`)
    }
    if (pc.iceGatheringState !== 'complete') {
      // Host candidates only: gathering takes milliseconds; a deadline all the same.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          sub.unSubscribe()
          reject(new Error('ICE gathering did not complete in 5 s'))
        }, 5000)
        const sub = pc.iceGatheringStateChange.subscribe((state) => {
          if (state === 'complete') {
            clearTimeout(timer)
            sub.unSubscribe()
            resolve()
          }
        })
      })
    }
    pc.connectionStateChange.subscribe((state) => {
      if (state === 'failed') this.#end('dropped', 'ICE or DTLS failed')
      else if (state === 'closed') this.#end('dropped', 'the connection closed')
    })
    const sdp = pc.localDescription?.sdp
    if (sdp === undefined) throw new Error('no answer was made')
    const answer = candidatesFor(sdp, this.#s)
    // werift leaves a candidate out when no port of the range is free.
    if (!/^a=candidate:/m.test(answer))
      throw new Error(
        `no UDP port free in ${this.#s.portRange[0]}-${this.#s.portRange[1]}${this.#s.address ? ` on ${this.#s.address}` : ''}`,
      )
    this.#stopTick = this.#t.every(500, () => this.#tick())
    // From the answer: a busy worker's slow answer is not taken from the publisher's time.
    this.#cancelConnect = this.#t.after(this.#s.connectMs, () => {
      if (this.#firstPacketMs === undefined)
        this.#end('dropped', `not connected within ${this.#s.connectMs / 1000} s`)
    })
    return answer
  }

  #receive(transceiver: RTCRtpTransceiver): void {
    if (this.#receivers.some((r) => r.transceiver === transceiver)) return
    const kind = transceiver.kind
    if (kind !== 'audio' && kind !== 'video') return
    // One track of each kind: a second camera in the same publish is not recorded.
    if (this.#receivers.some((r) => r.kind === kind)) return
    const receiver: Receiver = { kind, transceiver }
    this.#receivers.push(receiver)
    transceiver.receiver.onRtcp.subscribe((packet) => {
      if (packet.type === RtcpSrPacket.type && packet.ssrc === receiver.track?.ssrc)
        this.#senderReport(receiver, packet)
    })
    transceiver.onTrack.subscribe((track) => {
      if (receiver.track !== undefined) return // a simulcast layer after the first
      receiver.track = track
      track.onReceiveRtp.subscribe((rtp) => {
        if (this.#closed) return
        const now = this.#t.now()
        this.#lastPacketMs = now
        if (this.#firstPacketMs === undefined) {
          this.#firstPacketMs = now
          this.#cancelConnect?.()
          this.#events.connected()
        }
        if (receiver.units === undefined) {
          const codec = track.codec
          const name = codec === undefined ? undefined : CODEC_OF[codec.mimeType.toLowerCase()]
          if (codec === undefined || name === undefined) {
            this.#end('refused', `${codec?.mimeType ?? 'an unknown codec'} is not recorded`)
            return
          }
          receiver.units = new TrackUnits({
            codec: name,
            clockRate: codec.clockRate,
            reorderMs: this.#s.reorderMs,
            onTrack: (t) => {
              receiver.known = t
              this.#announce()
            },
            onUnit: (u) => {
              if (this.#announced) this.#events.unit(u)
            },
            onNeedKeyFrame: () => this.requestKeyFrame(),
            onProblem: (m) => this.#events.problem(m),
          })
          receiver.units.push(rtp, now)
          // The opus track is known from the start.
          return
        }
        receiver.units.push(rtp, now)
      })
    })
  }

  /**
   * Lip sync. Each track's times start from its first packet's arrival; the
   * publisher's sender reports say where both tracks stand on one clock. At
   * the first report of each, audio is moved to where video says it is
   * (once: a later jump would cut audio again for a few milliseconds).
   */
  #senderReport(receiver: Receiver, sr: RtcpSrPacket): void {
    const ntp = sr.senderInfo.ntpTimestamp
    // NTP: seconds since 1900 in the high 32 bits, the fraction in the low.
    const ntpMs = Number(ntp >> 32n) * 1000 + (Number(ntp & 0xffffffffn) * 1000) / 2 ** 32
    const ahead = receiver.units?.senderReport(ntpMs, sr.senderInfo.rtpTimestamp)
    if (ahead === undefined) return
    receiver.ahead ??= ahead
    if (this.#synced) return
    const audio = this.#receivers.find((r) => r.kind === 'audio')
    const video = this.#receivers.find((r) => r.kind === 'video')
    if (audio?.ahead === undefined || video?.ahead === undefined) return
    this.#synced = true
    const shift = audio.ahead - video.ahead
    // More than a second apart is not a skew of first packets: a sender's clocks gone astray.
    if (Math.abs(shift) >= 1 && Math.abs(shift) < 1000) audio.units?.shift(shift)
    this.#events.problem(`lip sync: audio moved by ${shift.toFixed(1)} ms`)
  }

  /**
   * The tracks are told once every negotiated one is known (audio alone
   * would start an audio-only file), or after a wait for the missing one.
   */
  #announce(force = false): void {
    const known = this.#receivers.filter((r) => r.known !== undefined)
    if (!this.#announced && !force && known.length < this.#receivers.length) return
    const tracks: Tracks = {}
    for (const r of known) {
      if (r.known?.type === 'video') tracks.video = r.known
      else if (r.known?.type === 'audio') tracks.audio = r.known
    }
    this.#announced = true
    this.#events.tracks(tracks)
  }

  #tick(): void {
    if (this.#closed) return
    const now = this.#t.now()
    // Before the first packet, the connect deadline holds instead.
    if (this.#firstPacketMs !== undefined && now - this.#lastPacketMs > this.#s.silenceMs) {
      this.#end('dropped', `no media for ${Math.round((now - this.#lastPacketMs) / 1000)} s`)
      return
    }
    if (!this.#announced && this.#firstPacketMs !== undefined) {
      if (now - this.#firstPacketMs > TRACK_WAIT_MS) this.#announce(true)
    }
    if (now - this.#lastKeyRequestMs > this.#s.keyFrameEveryMs) this.requestKeyFrame()
  }

  /** Asks for a key frame now, or as soon as the last request is far enough back. */
  requestKeyFrame(): void {
    if (this.#closed || this.#cancelKey !== undefined) return
    const wait = this.#lastKeyRequestMs + KEY_FRAME_MIN_GAP_MS - this.#t.now()
    if (wait > 0) {
      this.#cancelKey = this.#t.after(wait, () => {
        this.#cancelKey = undefined
        this.requestKeyFrame()
      })
      return
    }
    this.#lastKeyRequestMs = this.#t.now()
    for (const r of this.#receivers) {
      const ssrc = r.track?.ssrc
      if (r.kind === 'video' && ssrc !== undefined)
        r.transceiver.receiver.sendRtcpPLI(ssrc).catch(() => {})
    }
  }

  /** Ends the publish (from either side); `close` is told once. */
  #end(reason: CloseReason, detail?: string): void {
    if (this.#closed) return
    this.#closed = true
    this.#stopTimers()
    this.#pc.close().catch(() => {})
    this.#events.close(reason, detail)
  }

  close(reason: CloseReason): void {
    this.#end(reason)
  }

  #stopTimers(): void {
    this.#stopTick?.()
    this.#cancelConnect?.()
    this.#cancelKey?.()
  }
}

/**
 * The answer with only the candidates publishers should use: UDP on the
 * receiving address (werift lists every interface it gathered on), written
 * with the public address when one is configured.
 */
export function candidatesFor(sdp: string, s: Pick<SessionSettings, 'address' | 'publicIp'>) {
  const lines = sdp.split(/\r?\n/)
  const out: string[] = []
  const seen = new Set<string>()
  for (const line of lines) {
    const m = /^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$/.exec(line)
    if (m === null) {
      if (line !== '') out.push(line)
      continue
    }
    const [, foundation, component, transport, priority, address, port, type, rest] = m
    if ((transport as string).toLowerCase() !== 'udp' || type !== 'host') continue
    if ((address as string).includes(':')) continue
    if (s.address !== undefined && address !== s.address) continue
    const written = s.publicIp ?? (address as string)
    const key = `${written}:${port}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push(
      `a=candidate:${foundation} ${component} ${transport} ${priority} ${written} ${port} typ host${rest}`,
    )
  }
  return `${out.join('\r\n')}\r\n`
}
