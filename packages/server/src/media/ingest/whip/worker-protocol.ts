// The messages between the service and a media worker (IPC with the
// structured-clone serialization: buffers cross as Uint8Array).
import type { AccessUnit, CloseReason, Tracks } from '../../contracts.ts'
import type { SessionSettings } from './session.ts'

export type ToWorker =
  | { t: 'open'; id: string; offer: string; settings: SessionSettings }
  | { t: 'key'; id: string }
  | { t: 'close'; id: string; reason: CloseReason }

export type FromWorker =
  /** `hostAddresses`: the IPv4 addresses a publish takes a UDP port on when no address is set. */
  | { t: 'ready'; hostAddresses: number }
  | { t: 'answer'; id: string; sdp: string }
  /** `offer`: the offer cannot be answered (400); `busy`: the worker cannot take it now (503). */
  | { t: 'error'; id: string; message: string; kind: 'offer' | 'busy' }
  /** The publish's first RTP packet arrived: it is connected. */
  | { t: 'connected'; id: string }
  | { t: 'tracks'; id: string; tracks: Tracks }
  | { t: 'unit'; id: string; unit: AccessUnit }
  | { t: 'problem'; id: string; message: string }
  | { t: 'close'; id: string; reason: CloseReason; detail?: string }

/** From the worker to the service; dropped once the service is gone. */
export function send(message: FromWorker): void {
  if (process.connected) process.send?.(message)
}

/** A buffer as it arrives through IPC (a Uint8Array) made a Buffer again, without a copy. */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}

/** Tracks as they arrive through IPC, with their configurations made buffers again. */
export function revivedTracks(tracks: Tracks): Tracks {
  const out: Tracks = {}
  if (tracks.video)
    out.video = {
      ...tracks.video,
      config: tracks.video.config && asBuffer(tracks.video.config),
    }
  if (tracks.audio)
    out.audio = {
      ...tracks.audio,
      config: tracks.audio.config && asBuffer(tracks.audio.config),
    }
  return out
}
