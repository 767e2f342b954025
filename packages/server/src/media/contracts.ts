// What every ingest hands the recorder, whatever its transport: a publisher
// (who, in which room, which of their streams), its tracks with their codec
// parameters, and timestamped access units. RTMP is one adapter that produces
// these (ingest/rtmp), WHIP another; the recorder, the segment writer and
// post-processing see nothing else. Adapters import this module; it imports
// nothing of theirs.

/** Which of a user's streams: the camera (main) or the screen share (aux, TIW's sub-stream). */
export type StreamKind = 'main' | 'aux'

/** A room name an ingest accepts (TRTC's string room ids, within what a URL path holds as is). */
export const ROOM_PATTERN = /^[A-Za-z0-9_.~!$*()+,;=:@-]{1,64}$/
/** A user id an ingest accepts. */
export const USER_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/

/** Who publishes, as the ingest authenticated them. */
export interface PublisherIdentity {
  /** The ingest it came through, for logs: `rtmp`, `whip`. */
  ingest: string
  /** The app (tenant) the publisher's UserSig belongs to. */
  sdkAppId: number
  /**
   * The TRTC room it publishes into: matched to the active task whose
   * TRTCRoomIdStr, else TRTCRoomId, else RoomId equals it.
   */
  room: string
  /** The TRTC user id; its stream is recorded as this UserId (main) or `tic_substream_{userId}` (aux). */
  userId: string
  kind: StreamKind
  /** Remote address and port, for logs. */
  remote: string
}

export type VideoCodec = 'h264' | 'vp8'
export type AudioCodec = 'aac' | 'opus'

export interface VideoTrack {
  type: 'video'
  codec: VideoCodec
  /**
   * Decoder configuration. H.264: the AVCDecoderConfigurationRecord (avcC),
   * which every access unit's length-prefixed NAL units depend on. VP8: none.
   */
  config?: Buffer | undefined
  /** Picture size in pixels as the configuration (or first key frame) states it. */
  width: number
  height: number
}

export interface AudioTrack {
  type: 'audio'
  codec: AudioCodec
  /** AAC: the AudioSpecificConfig. Opus: the OpusHead identification header (RFC 7845). */
  config?: Buffer | undefined
  /** Samples per second (Opus: always 48000). */
  sampleRate: number
  channels: number
}

/** The tracks a publisher sends; either may be absent (audio-only, video-only). */
export interface Tracks {
  video?: VideoTrack | undefined
  audio?: AudioTrack | undefined
}

/**
 * One coded picture or audio frame. Times are the publisher's own clock in
 * milliseconds: only differences matter, and they must not go backwards
 * within a track (decode order for video).
 */
export interface AccessUnit {
  type: 'video' | 'audio'
  /** Decode time, ms. */
  dts: number
  /** Presentation time, ms (differs from dts for reordered video frames). */
  pts: number
  /** A picture a decoder can start at (IDR for H.264, a VP8 key frame); always true for audio. */
  key: boolean
  /**
   * The coded data, owned by the receiver. H.264: length-prefixed (4-byte)
   * NAL units, as in avcC; VP8: one frame; AAC: one raw frame; Opus: one packet.
   */
  data: Buffer
}

export type CloseReason =
  /** The publisher ended its publish (RTMP deleteStream, WHIP DELETE). */
  | 'unpublished'
  /** The connection was lost without an end (a network drop, a closed tab). */
  | 'dropped'
  /** The same user published the same stream kind again; the older publish ends. */
  | 'replaced'
  /** The service ended it (shutting down). */
  | 'kicked'
  /** The ingest refused what it sent (a codec this service does not record). */
  | 'refused'
  /** The ingest's own process failed (a media worker died): an exception of the task. */
  | 'failed'

/** One authenticated publish, from accept to close. Handlers set the `on…` callbacks. */
export interface Publisher {
  readonly id: string
  readonly identity: PublisherIdentity
  /** The tracks as known now; empty until the ingest has seen their configuration. */
  readonly tracks: Tracks
  /** Called when the tracks are first known and whenever their parameters change. */
  onTracks: (tracks: Tracks) => void
  /** Called for every access unit, after `onTracks` has described its track. */
  onUnit: (unit: AccessUnit) => void
  /** Called once when the publish ends; `detail` says more where there is more (why it was refused). */
  onClose: (reason: CloseReason, detail?: string) => void
  /** Backpressure: stop reading from the publisher until `resume` (a no-op where the transport cannot). */
  pause(): void
  resume(): void
  /** Asks the publisher for a key frame soon (a no-op where the transport cannot ask). */
  requestKeyFrame(): void
  /** Ends the publish. */
  kick(reason: CloseReason): void
}

export type Authorization = { ok: true } | { ok: false; reason: string }

/** What an ingest calls: to admit a publisher, then to hand it over. */
export interface IngestHandler {
  /** Checks the publisher's credential (its UserSig) before anything is accepted. */
  authorize(identity: PublisherIdentity, userSig: string): Promise<Authorization>
  publish(publisher: Publisher): void
}

/** A transport that produces publishers. */
export interface Ingest {
  readonly name: string
  /** Starts accepting; resolves with what to tell operators (e.g. the URL publishers use). */
  listen(handler: IngestHandler): Promise<string>
  /** Stops accepting new publishers; those connected go on (a graceful drain). */
  stopAccepting(): Promise<void>
  /** Stops accepting and ends every publish (`kicked`). */
  close(): Promise<void>
  /** Publishers connected now. */
  readonly publishers: number
}

/** Who publishes what: one live stream per app, room, user and stream kind. */
export function liveKeyOf(i: PublisherIdentity): string {
  return `${i.sdkAppId}/${i.room}/${i.userId}/${i.kind}`
}

/** The TIW UserId a stream is recorded as. */
export function streamIdOf(identity: Pick<PublisherIdentity, 'userId' | 'kind'>): string {
  return identity.kind === 'aux' ? `tic_substream_${identity.userId}` : identity.userId
}
