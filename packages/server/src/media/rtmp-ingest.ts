// RTMP ingest with TRTC's publishing convention:
//   rtmp://HOST:PORT/push/{room}?sdkappid=..&userid=..&usersig=..[&streamtype=aux]
// Our own TCP server; node-media-server supplies only its RTMP protocol class
// (handshake, chunks, AMF). Each accepted publish becomes a Publisher whose
// FLV tags the recorder consumes. Nothing a client sends may crash the process:
// parse errors, oversized messages and stalls end that one connection.
import { createServer, type Server, type Socket } from 'node:net'
import { parse as parseQuery } from 'node:querystring'
import nmsLogger from 'node-media-server/src/core/logger.js'
import Rtmp, { type AVPacket, type InvokeMessage } from 'node-media-server/src/protocol/rtmp.js'

/** The RTMP application name TRTC uses for publishing. */
export const RTMP_APP = 'push'
/** Query parameter that marks a publisher's sub-stream (screen share). */
export const STREAM_TYPE_PARAM = 'streamtype'
export const AUX_STREAM_TYPE = 'aux'

const ROOM = /^[A-Za-z0-9_.~!$*()+,;=:@-]{1,64}$/
const USER = /^[A-Za-z0-9_.@-]{1,64}$/
/** Largest RTMP message accepted (a 4K key frame fits); more is an attack or a broken client. */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024
const MAX_CHUNK_STREAMS = 32
/** Bytes a connection may send before its publish is accepted. */
const MAX_BYTES_BEFORE_PUBLISH = 256 * 1024

export interface PublishRequest {
  app: string
  room: string
  userId: string
  sdkAppId: number
  userSig: string
  /** The sub-stream (screen share) rather than the camera. */
  aux: boolean
  remote: string
}

export interface MediaPacket {
  /** FLV tag type: 8 audio, 9 video. */
  type: 8 | 9
  /** Stream timestamp, ms. */
  dts: number
  /** A codec header (AVC decoder configuration, AAC AudioSpecificConfig). */
  header: boolean
  /** A video key frame. */
  key: boolean
  /** The whole FLV tag (11-byte header, data, 4-byte size), owned by the receiver. */
  tag: Buffer
}

export type CloseReason = 'unpublished' | 'dropped' | 'replaced' | 'kicked'

export interface Publisher {
  readonly id: number
  readonly request: PublishRequest
  /** Set by the handler: called for every audio and video message. */
  onPacket: (packet: MediaPacket) => void
  /** Set by the handler: called once when the connection ends. */
  onClose: (reason: CloseReason) => void
  /** Stops reading from the socket (backpressure) until `resume`. */
  pause(): void
  resume(): void
  /** Ends the connection. */
  kick(reason: CloseReason): void
}

export type Authorization = { ok: true } | { ok: false; reason: string }

export interface IngestHandler {
  authorize(request: PublishRequest): Promise<Authorization>
  publish(publisher: Publisher): void
}

export interface IngestOptions {
  host: string
  port: number
  /** Without a byte for this long, a connection is dropped. Default 10 s before publishing, 30 s after. */
  handshakeTimeoutMs?: number
  idleTimeoutMs?: number
  log?: (level: 'info' | 'warn' | 'debug', message: string) => void
}

/** Refuses to run on a node-media-server whose overridden methods moved (they were instance fields before 4.3). */
export function assertRtmpInternals(): void {
  const probe = new Rtmp() as unknown as Record<string, unknown>
  for (const method of ['onPublish', 'onPlay', 'onDeleteStream', 'parserData', 'packetAlloc']) {
    if (Object.hasOwn(probe, method) || typeof (Rtmp.prototype as never)[method] !== 'function') {
      throw new Error(
        `node-media-server's Rtmp.${method} is not a prototype method: the installed version is not the pinned 4.4.3`,
      )
    }
  }
}

/** Splits `{room}?query` (OBS: stream key) and `push?query` (some clients put it on the app). */
export function parsePublishName(
  app: string,
  streamName: string,
): Omit<PublishRequest, 'remote'> | { error: string } {
  const [appName = '', appQuery = ''] = app.split('?')
  const [room = '', query = ''] = streamName.split('?')
  const q = { ...parseQuery(appQuery), ...parseQuery(query) }
  const one = (key: string) => {
    const v = q[key]
    return typeof v === 'string' ? v : ''
  }
  if (appName !== RTMP_APP) return { error: `unknown application "${appName}"` }
  if (!ROOM.test(room)) return { error: 'bad room in the stream name' }
  const userId = one('userid')
  if (!USER.test(userId)) return { error: 'missing or bad userid' }
  const sdkAppId = Number(one('sdkappid'))
  if (!Number.isSafeInteger(sdkAppId) || sdkAppId <= 0) return { error: 'missing or bad sdkappid' }
  const userSig = one('usersig')
  if (userSig === '') return { error: 'missing usersig' }
  const streamType = one(STREAM_TYPE_PARAM) || 'main'
  if (streamType !== 'main' && streamType !== AUX_STREAM_TYPE)
    return { error: `bad ${STREAM_TYPE_PARAM}` }
  return { app: appName, room, userId, sdkAppId, userSig, aux: streamType === AUX_STREAM_TYPE }
}

/** An FLV tag holding `packet`: the only copy made of its payload. */
export function flvTag(packet: AVPacket): Buffer {
  const size = packet.size
  const tag = Buffer.allocUnsafe(11 + size + 4)
  tag[0] = packet.codec_type
  tag.writeUIntBE(size, 1, 3)
  writeTagTime(tag, packet.dts)
  tag.writeUIntBE(0, 8, 3)
  packet.data.copy(tag, 11, 0, size)
  tag.writeUInt32BE(11 + size, 11 + size)
  return tag
}

/** Rewrites an FLV tag's timestamp in place (24 bits plus the extension byte). */
export function writeTagTime(tag: Buffer, ms: number): void {
  const t = ms >>> 0
  tag[4] = (t >> 16) & 0xff
  tag[5] = (t >> 8) & 0xff
  tag[6] = t & 0xff
  tag[7] = (t >>> 24) & 0xff
}

/** A 13-byte FLV file header (with the first PreviousTagSize). */
export function flvHeader(audio: boolean, video: boolean): Buffer {
  const header = Buffer.from([0x46, 0x4c, 0x56, 1, 0, 0, 0, 0, 9, 0, 0, 0, 0])
  header[4] = (audio ? 4 : 0) | (video ? 1 : 0)
  return header
}

interface Connection {
  socket: Socket
  rtmp: TrtcRtmp
  publisher: PublisherImpl | undefined
  bytes: number
  closed: boolean
}

class TrtcRtmp extends Rtmp {
  /** Set by the ingest: decides on a publish once the command arrives. */
  publishRequested: (msg: InvokeMessage, streamId: number) => void = () => {}
  refused = false
  unpublished = false

  override onPublish(msg: InvokeMessage): void {
    // Captured now: the parser moves on while authorization is awaited.
    this.publishRequested(msg, this.parserPacket.header.stream_id)
  }

  override onPlay(): void {
    this.refused = true
  }

  override onDeleteStream(): void {
    this.unpublished = true
  }

  packetAlloc(): void {
    if (this.parserPacket.header.length > MAX_MESSAGE_BYTES)
      throw new Error('RTMP message too large')
    if (this.inPackets.size > MAX_CHUNK_STREAMS) throw new Error('too many RTMP chunk streams')
    ;(Rtmp.prototype as unknown as { packetAlloc(this: unknown): void }).packetAlloc.call(this)
  }
}

class PublisherImpl implements Publisher {
  readonly id: number
  readonly request: PublishRequest
  onPacket: (packet: MediaPacket) => void = () => {}
  onClose: (reason: CloseReason) => void = () => {}
  readonly #conn: Connection
  #reason: CloseReason | undefined

  constructor(id: number, request: PublishRequest, conn: Connection) {
    this.id = id
    this.request = request
    this.#conn = conn
  }
  pause(): void {
    this.#conn.socket.pause()
  }
  resume(): void {
    this.#conn.socket.resume()
  }
  kick(reason: CloseReason): void {
    this.#reason ??= reason
    this.#conn.socket.destroy()
  }
  closed(): void {
    const reason = this.#reason ?? (this.#conn.rtmp.unpublished ? 'unpublished' : 'dropped')
    try {
      this.onClose(reason)
    } catch {
      // The handler's own failure must not take the ingest down.
    }
  }
}

export class RtmpIngest {
  readonly #handler: IngestHandler
  readonly #options: Required<Omit<IngestOptions, 'log'>> & Pick<IngestOptions, 'log'>
  readonly #server: Server
  readonly #connections = new Set<Connection>()
  /** Live publishers by app/room/user/stream type: a newer publish replaces an older one. */
  readonly #live = new Map<string, PublisherImpl>()
  #nextId = 1

  constructor(handler: IngestHandler, options: IngestOptions) {
    assertRtmpInternals()
    // node-media-server's logger prints to stdout at debug level.
    nmsLogger.log = (message: string) => options.log?.('debug', `rtmp: ${message}`)
    this.#handler = handler
    this.#options = {
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      ...options,
    }
    this.#server = createServer((socket) => this.#accept(socket))
    this.#server.on('error', (error) => this.#log('warn', `rtmp server error: ${error.message}`))
  }

  /** Starts listening; resolves with the port (the real one when 0 was asked). */
  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    const address = this.#server.address()
    return typeof address === 'object' && address ? address.port : this.#options.port
  }

  /** Stops accepting and ends every connection (publishers see 'kicked'). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const conn of this.#connections) {
      if (conn.publisher) conn.publisher.kick('kicked')
      else conn.socket.destroy()
    }
    await closed
  }

  get publishers(): number {
    return this.#live.size
  }

  #log(level: 'info' | 'warn' | 'debug', message: string): void {
    this.#options.log?.(level, message)
  }

  #accept(socket: Socket): void {
    const rtmp = new TrtcRtmp()
    const conn: Connection = { socket, rtmp, publisher: undefined, bytes: 0, closed: false }
    this.#connections.add(conn)
    const remote = `${socket.remoteAddress}:${socket.remotePort}`
    socket.setNoDelay(true)
    socket.setTimeout(this.#options.handshakeTimeoutMs)
    socket.on('timeout', () => {
      this.#log('debug', `rtmp ${remote}: timed out`)
      socket.destroy()
    })
    socket.on('error', () => {
      // A reset or a broken pipe: the close handler does the rest.
    })
    socket.on('close', () => {
      conn.closed = true
      this.#connections.delete(conn)
      const p = conn.publisher
      if (p === undefined) return
      const key = liveKey(p.request)
      if (this.#live.get(key) === p) this.#live.delete(key)
      p.closed()
    })
    rtmp.onOutputCallback = (buffer) => {
      if (!socket.destroyed) socket.write(buffer)
    }
    rtmp.onPacketCallback = (packet) => {
      const p = conn.publisher
      if (p === undefined || (packet.codec_type !== 8 && packet.codec_type !== 9)) return
      p.onPacket({
        type: packet.codec_type,
        dts: packet.dts,
        header: packet.codec_type === 9 ? packet.flags === 2 : packet.flags === 0,
        key: packet.codec_type === 9 && packet.flags === 3,
        tag: flvTag(packet),
      })
    }
    rtmp.publishRequested = (msg, streamId) => void this.#publish(conn, remote, msg, streamId)
    socket.on('data', (data: Buffer) => {
      if (conn.closed || rtmp.refused) return
      if (conn.publisher === undefined) {
        conn.bytes += data.length
        if (conn.bytes > MAX_BYTES_BEFORE_PUBLISH) {
          this.#log('debug', `rtmp ${remote}: too much data before publishing`)
          socket.destroy()
          return
        }
      }
      let error: string | null
      try {
        error = rtmp.parserData(data)
      } catch (e) {
        error = e instanceof Error ? e.message : String(e)
      }
      if (error !== null || rtmp.refused) {
        this.#log('debug', `rtmp ${remote}: ${error ?? 'refused'}`)
        if (rtmp.refused) socket.end()
        else socket.destroy()
      }
    })
  }

  async #publish(conn: Connection, remote: string, msg: InvokeMessage, streamId: number) {
    const { rtmp, socket } = conn
    if (conn.publisher !== undefined || rtmp.refused) return
    const parsed = parsePublishName(String(rtmp.streamApp ?? ''), String(msg.streamName ?? ''))
    let refusal: string | undefined
    if ('error' in parsed) refusal = parsed.error
    else {
      // Further commands wait for the decision; media is not sent before Publish.Start.
      socket.pause()
      try {
        const decision = await this.#handler.authorize({ ...parsed, remote })
        if (!decision.ok) refusal = decision.reason
      } catch (error) {
        refusal = `authorization failed: ${(error as Error).message}`
      }
      socket.resume()
    }
    if (conn.closed) return
    if (refusal !== undefined || 'error' in parsed) {
      this.#log('info', `rtmp ${remote}: publish refused: ${refusal}`)
      rtmp.sendStatusMessage(streamId, 'error', 'NetStream.Publish.BadName', 'publish refused')
      rtmp.refused = true
      socket.end()
      return
    }
    const request: PublishRequest = { ...parsed, remote }
    rtmp.streamName = request.room
    rtmp.streamId = streamId
    rtmp.respondPublish()
    socket.setTimeout(this.#options.idleTimeoutMs)
    const publisher = new PublisherImpl(this.#nextId++, request, conn)
    conn.publisher = publisher
    const key = liveKey(request)
    this.#live.get(key)?.kick('replaced')
    this.#live.set(key, publisher)
    this.#log(
      'info',
      `rtmp ${remote}: publishing room ${request.room} user ${request.userId}${request.aux ? ' (sub-stream)' : ''}`,
    )
    try {
      this.#handler.publish(publisher)
    } catch (error) {
      this.#log('warn', `rtmp ${remote}: publish handler failed: ${(error as Error).message}`)
      publisher.kick('kicked')
    }
  }
}

function liveKey(r: PublishRequest): string {
  return `${r.sdkAppId}/${r.room}/${r.userId}/${r.aux ? 'aux' : 'main'}`
}
