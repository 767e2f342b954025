// The part of node-media-server 4.4.3 the ingest uses: its RTMP protocol class
// (handshake, chunk parser, AMF commands). The package ships JS without types;
// these are internal modules, so the version is pinned exactly and the ingest
// checks at start-up that the methods it overrides are still on the prototype.
declare module 'node-media-server/src/protocol/rtmp.js' {
  export interface AVPacket {
    codec_id: number
    /** 8 audio, 9 video, 18 script data (FLV tag types). */
    codec_type: number
    /** Video: 2 sequence header, 3 key frame, 4 other frame. Audio: 0 sequence header, 1 frame. 5 script. */
    flags: number
    pts: number
    dts: number
    size: number
    /** Reused by the parser for the next message: copy before keeping. */
    data: Buffer
  }
  export interface InvokeMessage {
    cmd?: string
    transId?: number
    cmdObj?: Record<string, unknown> | null
    streamName?: unknown
  }
  export default class Rtmp {
    streamApp?: string
    streamName?: string
    streamId?: number
    streamQuery?: Record<string, unknown>
    parserPacket: { header: { stream_id: number; length: number }; capacity: number }
    inPackets: Map<number, unknown>
    onConnectCallback: (req: unknown) => void
    onPlayCallback: () => void
    onPushCallback: () => void
    onPacketCallback: (packet: AVPacket) => void
    onOutputCallback: (buffer: Buffer) => void
    /** Feeds received bytes; returns an error string or null. Throws on some malformed input. */
    parserData(buffer: Buffer): string | null
    onConnect(msg: InvokeMessage): void
    onPublish(msg: InvokeMessage): void
    onPlay(msg: InvokeMessage): void
    onDeleteStream(msg: InvokeMessage): void
    sendStatusMessage(sid: number, level: string, code: string, description: string): void
    respondPublish(): void
  }
}

declare module 'node-media-server/src/core/logger.js' {
  const logger: { log(message: string, level?: string): void }
  export default logger
}
