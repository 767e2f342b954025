// RTMP ingest with TRTC's publishing convention:
//   rtmp://HOST:PORT/push/{room}?sdkappid=..&userid=..&usersig=..[&streamtype=aux]
// Our own TCP server; node-media-server supplies only its RTMP protocol class
// (handshake, chunks, AMF). Each accepted publish becomes a Publisher of the
// media core: its FLV audio and video messages are turned into track
// configurations and access units (flv.ts) and nothing of RTMP goes further.
// Nothing a client sends may crash the process: parse errors, oversized
// messages, stalls and codecs not recorded end that one connection.
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { parse as parseQuery } from 'node:querystring'
import nmsLogger from 'node-media-server/src/core/logger.js'
import Rtmp, { type AVPacket, type InvokeMessage } from 'node-media-server/src/protocol/rtmp.js'
import { ConnectionGuard, type ConnectionLimits } from '../../../net/connection-guard.ts'
import {
  type AccessUnit,
  type CloseReason,
  type Ingest,
  type IngestHandler,
  liveKeyOf,
  type Publisher,
  type PublisherIdentity,
  ROOM_PATTERN,
  type StreamKind,
  type Tracks,
  USER_PATTERN,
} from '../../contracts.ts'
import { parseFlvMedia } from './flv.ts'

/** The RTMP application name TRTC uses for publishing. */
export const RTMP_APP = 'push'
/** Query parameter that marks a publisher's sub-stream (screen share). */
export const STREAM_TYPE_PARAM = 'streamtype'
export const AUX_STREAM_TYPE = 'aux'

/** Largest RTMP message accepted (a 4K key frame fits); more is an attack or a broken client. */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024
const MAX_CHUNK_STREAMS = 32
/** How long a refused publisher's connection stays open to read why. */
const REFUSAL_LINGER_MS = 1000
/** Bytes a connection may send before its publish is accepted. */
const MAX_BYTES_BEFORE_PUBLISH = 256 * 1024

/** A publish request as the RTMP URL states it. */
export interface RtmpPublishRequest {
  room: string
  userId: string
  sdkAppId: number
  userSig: string
  kind: StreamKind
}

export interface RtmpIngestOptions {
  host: string
  port: number
  /** From accept to an accepted publish, in all (a deadline, not an idle timer). Default 10 s. */
  publishTimeoutMs?: number
  /** After the publish, a connection silent for this long is dropped. Default 30 s. */
  idleTimeoutMs?: number
  /** Connections held at once; default 2048 in all, 256 per address. */
  connections?: ConnectionLimits
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
): RtmpPublishRequest | { error: string } {
  const [appName = '', appQuery = ''] = app.split('?')
  const [room = '', query = ''] = streamName.split('?')
  const q = { ...parseQuery(appQuery), ...parseQuery(query) }
  const one = (key: string) => {
    const v = q[key]
    return typeof v === 'string' ? v : ''
  }
  if (appName !== RTMP_APP) return { error: `unknown application "${appName}"` }
  if (!ROOM_PATTERN.test(room)) return { error: 'bad room in the stream name' }
  const userId = one('userid')
  if (!USER_PATTERN.test(userId)) return { error: 'missing or bad userid' }
  const sdkAppId = Number(one('sdkappid'))
  if (!Number.isSafeInteger(sdkAppId) || sdkAppId <= 0) return { error: 'missing or bad sdkappid' }
  const userSig = one('usersig')
  if (userSig === '') return { error: 'missing usersig' }
  const streamType = one(STREAM_TYPE_PARAM) || 'main'
  if (streamType !== 'main' && streamType !== AUX_STREAM_TYPE)
    return { error: `bad ${STREAM_TYPE_PARAM}` }
  return { room, userId, sdkAppId, userSig, kind: streamType === AUX_STREAM_TYPE ? 'aux' : 'main' }
}

interface Connection {
  socket: Socket
  rtmp: TrtcRtmp
  publisher: RtmpPublisher | undefined
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

class RtmpPublisher implements Publisher {
  readonly id: string
  readonly identity: PublisherIdentity
  tracks: Tracks = {}
  onTracks: (tracks: Tracks) => void = () => {}
  onUnit: (unit: AccessUnit) => void = () => {}
  onClose: (reason: CloseReason, detail?: string) => void = () => {}
  readonly #conn: Connection
  #reason: CloseReason | undefined
  #detail: string | undefined

  constructor(id: string, identity: PublisherIdentity, conn: Connection) {
    this.id = id
    this.identity = identity
    this.#conn = conn
  }
  pause(): void {
    this.#conn.socket.pause()
  }
  resume(): void {
    this.#conn.socket.resume()
  }
  /** RTMP cannot ask a publisher for a key frame; it sends them at its GOP length. */
  requestKeyFrame(): void {}
  kick(reason: CloseReason): void {
    this.#reason ??= reason
    this.#conn.socket.destroy()
  }
  /** A configuration message: the tracks change (and are announced) only when their parameters do. */
  configure(kind: 'video' | 'audio', track: NonNullable<Tracks['video'] | Tracks['audio']>): void {
    const before = this.tracks[kind]
    if (before?.config && track.config && before.config.equals(track.config)) return
    this.tracks = { ...this.tracks, [kind]: track }
    this.onTracks(this.tracks)
  }
  /**
   * Ends the publish because of what it sends, telling the publisher why
   * first; what it sends meanwhile is dropped, and the connection ends soon
   * after, so the publisher has read the reason.
   */
  refuse(why: string): void {
    if (this.#reason !== undefined) return
    this.#reason = 'refused'
    this.#detail = why
    const { rtmp, socket } = this.#conn
    rtmp.sendStatusMessage(rtmp.streamId ?? 1, 'error', 'NetStream.Publish.Rejected', why)
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref()
  }

  get refused(): boolean {
    return this.#reason === 'refused'
  }
  closed(): void {
    const reason = this.#reason ?? (this.#conn.rtmp.unpublished ? 'unpublished' : 'dropped')
    try {
      this.onClose(reason, this.#detail)
    } catch {
      // The handler's own failure must not take the ingest down.
    }
  }
}

export class RtmpIngest implements Ingest {
  readonly name = 'rtmp'
  readonly #options: Required<Omit<RtmpIngestOptions, 'log' | 'connections'>> &
    Pick<RtmpIngestOptions, 'log'>
  readonly #guard: ConnectionGuard
  readonly #server: Server
  readonly #connections = new Set<Connection>()
  /** Live publishers by app/room/user/stream kind: a newer publish replaces an older one. */
  readonly #live = new Map<string, RtmpPublisher>()
  #handler: IngestHandler | undefined
  #nextId = 1

  constructor(options: RtmpIngestOptions) {
    assertRtmpInternals()
    // node-media-server's logger prints to stdout at debug level.
    nmsLogger.log = (message: string) => options.log?.('debug', `rtmp: ${message}`)
    this.#options = {
      publishTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      ...options,
    }
    this.#guard = new ConnectionGuard(options.connections ?? { total: 2048, perAddress: 1024 })
    this.#server = createServer((socket) => {
      if (this.#guard.admit(socket)) this.#accept(socket)
    })
    this.#server.on('error', (error) => this.#log('warn', `rtmp server error: ${error.message}`))
  }

  /** Starts listening; resolves with the publishing URL template. */
  async listen(handler: IngestHandler): Promise<string> {
    this.#handler = handler
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    const host = this.#options.host.includes(':') ? `[${this.#options.host}]` : this.#options.host
    return `rtmp://${host}:${this.port}/${RTMP_APP}/{room}?sdkappid={SdkAppId}&userid={UserId}&usersig={UserSig}`
  }

  /** Whether it takes connections (false before start and after stopAccepting). */
  get listening(): boolean {
    return this.#server.listening
  }

  /** The port listened on (the real one when 0 was asked). */
  get port(): number {
    const address = this.#server.address()
    return typeof address === 'object' && address ? address.port : this.#options.port
  }

  /** Stops accepting connections; the publishers connected go on. */
  async stopAccepting(): Promise<void> {
    if (!this.#server.listening) return
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      // Resolves once the listener is closed, not when the last connection ends.
      setImmediate(resolve)
    })
  }

  /** Stops accepting and ends every connection (publishers see 'kicked'). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.#server.listening ? this.#server.close(() => resolve()) : resolve(),
    )
    // Resolved once every connection's close handler has run, so that each
    // publisher's end (and its segment's close) has begun when this returns:
    // after a drain the listener is closed already and would not wait.
    const gone = [...this.#connections]
      .filter((conn) => !conn.closed)
      .map((conn) => once(conn.socket, 'close'))
    for (const conn of this.#connections) {
      if (conn.publisher) conn.publisher.kick('kicked')
      else conn.socket.destroy()
    }
    await Promise.all([closed, ...gone])
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
    // Until the publish is accepted: a deadline for the whole exchange.
    const deadline = setTimeout(() => {
      this.#log('debug', `rtmp ${remote}: no publish within ${this.#options.publishTimeoutMs} ms`)
      socket.destroy()
    }, this.#options.publishTimeoutMs)
    socket.on('timeout', () => {
      this.#log('debug', `rtmp ${remote}: silent for ${this.#options.idleTimeoutMs} ms`)
      socket.destroy()
    })
    socket.on('error', () => {
      // A reset or a broken pipe: the close handler does the rest.
    })
    socket.on('close', () => {
      clearTimeout(deadline)
      conn.closed = true
      this.#connections.delete(conn)
      const p = conn.publisher
      if (p === undefined) return
      const key = liveKeyOf(p.identity)
      if (this.#live.get(key) === p) this.#live.delete(key)
      p.closed()
    })
    rtmp.onOutputCallback = (buffer) => {
      if (!socket.destroyed) socket.write(buffer)
    }
    rtmp.onPacketCallback = (packet: AVPacket) => {
      const p = conn.publisher
      if (p === undefined || p.refused || (packet.codec_type !== 8 && packet.codec_type !== 9))
        return
      this.#media(p, packet)
    }
    rtmp.publishRequested = (msg, streamId) =>
      void this.#publish(conn, remote, msg, streamId, deadline)
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

  /** One audio or video message of a publisher. */
  #media(p: RtmpPublisher, packet: AVPacket): void {
    let media: ReturnType<typeof parseFlvMedia>
    try {
      media = parseFlvMedia(packet.codec_type, packet.dts, packet.data.subarray(0, packet.size))
    } catch (error) {
      media = { kind: 'unsupported', what: `malformed media (${(error as Error).message})` }
    }
    switch (media.kind) {
      case 'video-config':
        p.configure('video', media.track)
        return
      case 'audio-config':
        p.configure('audio', media.track)
        return
      case 'unit':
        if (p.tracks[media.unit.type] !== undefined) p.onUnit(media.unit)
        return
      case 'unsupported': {
        const why = `${media.what} is not recorded: publish H.264 video and AAC audio`
        this.#log(
          'warn',
          `rtmp ${p.identity.remote}: room ${p.identity.room} user ${p.identity.userId}: ${why}`,
        )
        p.refuse(why)
        return
      }
      default:
        return
    }
  }

  async #publish(
    conn: Connection,
    remote: string,
    msg: InvokeMessage,
    streamId: number,
    deadline: NodeJS.Timeout,
  ) {
    const { rtmp, socket } = conn
    if (conn.publisher !== undefined || rtmp.refused) return
    const parsed = parsePublishName(String(rtmp.streamApp ?? ''), String(msg.streamName ?? ''))
    let refusal: string | undefined
    if ('error' in parsed) refusal = parsed.error
    else {
      // Further commands wait for the decision; media is not sent before Publish.Start.
      socket.pause()
      try {
        const decision = await (this.#handler as IngestHandler).authorize(
          identityOf(parsed, remote),
          parsed.userSig,
        )
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
    clearTimeout(deadline)
    const identity = identityOf(parsed, remote)
    rtmp.streamName = parsed.room
    rtmp.streamId = streamId
    rtmp.respondPublish()
    socket.setTimeout(this.#options.idleTimeoutMs)
    const publisher = new RtmpPublisher(`rtmp-${this.#nextId++}`, identity, conn)
    conn.publisher = publisher
    const key = liveKeyOf(identity)
    this.#live.get(key)?.kick('replaced')
    this.#live.set(key, publisher)
    this.#log(
      'info',
      `rtmp ${remote}: publishing room ${identity.room} user ${identity.userId}${identity.kind === 'aux' ? ' (sub-stream)' : ''}`,
    )
    try {
      ;(this.#handler as IngestHandler).publish(publisher)
    } catch (error) {
      this.#log('warn', `rtmp ${remote}: publish handler failed: ${(error as Error).message}`)
      publisher.kick('kicked')
    }
  }
}

function identityOf(r: RtmpPublishRequest, remote: string): PublisherIdentity {
  return {
    ingest: 'rtmp',
    sdkAppId: r.sdkAppId,
    room: r.room,
    userId: r.userId,
    kind: r.kind,
    remote,
  }
}
