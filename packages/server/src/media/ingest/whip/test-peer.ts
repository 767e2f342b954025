// For the WHIP unit tests: publishing peers made with werift (one that
// connects and sends RTP, one that never connects), and session timers a
// test moves itself.
import { createSocket } from 'node:dgram'
import { RTCPeerConnection, RTCRtpCodecParameters, RtpHeader, RtpPacket } from 'werift'
import type { SessionTimers } from './session.ts'

export const h264 = () =>
  new RTCRtpCodecParameters({
    mimeType: 'video/H264',
    clockRate: 90_000,
    parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
  })

/**
 * A real offer (audio and video, ICE credentials, a DTLS fingerprint) whose
 * peer never connects: it has no candidates, and its peer connection is
 * closed before the offer is sent.
 */
export async function abandonedOffer(): Promise<string> {
  const pc = new RTCPeerConnection({ iceServers: [] })
  pc.addTransceiver('video', { direction: 'sendonly' })
  pc.addTransceiver('audio', { direction: 'sendonly' })
  const offer = await pc.createOffer()
  await pc.close()
  return offer.sdp
}

export interface SendingPeer {
  /** The offer, with its loopback candidate. */
  sdp: string
  /** Takes the answer; RTP (H.264) goes out every 20 ms once ICE and DTLS are done. */
  connect(answer: string): Promise<void>
  /** Stops sending RTP, the connection stays. */
  silence(): void
  close(): Promise<void>
}

export async function sendingPeer(): Promise<SendingPeer> {
  const pc = new RTCPeerConnection({
    codecs: { video: [h264()] },
    iceServers: [],
    iceUseIpv4: false,
    iceUseIpv6: false,
    iceAdditionalHostAddresses: ['127.0.0.1'],
  })
  const transceiver = pc.addTransceiver('video', { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  if (pc.iceGatheringState !== 'complete')
    await new Promise<void>((resolve) => {
      const sub = pc.iceGatheringStateChange.subscribe((state) => {
        if (state !== 'complete') return
        sub.unSubscribe()
        resolve()
      })
    })
  let timer: NodeJS.Timeout | undefined
  return {
    sdp: pc.localDescription?.sdp as string,
    async connect(answer) {
      await pc.setRemoteDescription({ type: 'answer', sdp: answer })
      let seq = 0
      timer = setInterval(() => {
        seq = (seq + 1) & 0xffff
        // A slice of a P frame: enough to be RTP of the negotiated track.
        const packet = new RtpPacket(
          new RtpHeader({ sequenceNumber: seq, timestamp: seq * 3000, marker: true }),
          Buffer.from([0x41, 0x9a, 0x00, 0x01]),
        )
        transceiver.sender.sendRtp(packet).catch(() => {})
      }, 20)
    },
    silence() {
      clearInterval(timer)
    },
    async close() {
      clearInterval(timer)
      await pc.close()
    },
  }
}

/** Session timers that move only when the test advances them. */
export class ManualTimers implements SessionTimers {
  #now = 0
  #timers: { at: number; every: number | undefined; run: () => void; live: boolean }[] = []

  now(): number {
    return this.#now
  }
  after(ms: number, run: () => void): () => void {
    return this.#add(ms, undefined, run)
  }
  every(ms: number, run: () => void): () => void {
    return this.#add(ms, ms, run)
  }
  /** Moves the clock on by `ms`, running each timer due on the way, in order. */
  advance(ms: number): void {
    const end = this.#now + ms
    for (;;) {
      const due = this.#timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      this.#now = due.at
      if (due.every === undefined) due.live = false
      else due.at += due.every
      due.run()
    }
    this.#now = end
    this.#timers = this.#timers.filter((t) => t.live)
  }
  #add(ms: number, every: number | undefined, run: () => void): () => void {
    const timer = { at: this.#now + ms, every, run, live: true }
    this.#timers.push(timer)
    return () => {
      timer.live = false
    }
  }
}

/** Whether a UDP port of 127.0.0.1 is bound now (by trying to bind it). */
export async function udpPortBound(port: number): Promise<boolean> {
  const socket = createSocket('udp4')
  const bound = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(true))
    socket.bind(port, '127.0.0.1', () => resolve(false))
  })
  try {
    await new Promise<void>((resolve) => socket.close(() => resolve()))
  } catch {
    // A socket whose bind failed is not running: nothing to close.
  }
  return bound
}

/** The UDP port of an answer's first candidate. */
export function answerPort(answer: string): number {
  return Number(/^a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host/m.exec(answer)?.[1])
}
