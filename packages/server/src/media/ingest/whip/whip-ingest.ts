// WHIP ingest (RFC 9725): browsers, OBS 30+ and GStreamer publish WebRTC
// with one HTTP POST of an SDP offer. The HTTP side (whip-route.ts) hands
// offers here; each is authorized with the publisher's UserSig, admitted by
// the tenant's quotas and the service's capacity, and answered by a media
// worker process that holds the WebRTC session (worker.ts). What the worker
// receives comes back as the media core's tracks and access units, so WHIP
// publishers are recorded exactly as RTMP ones are. A worker that dies ends
// its publishes as `failed` (an exception on their tasks) and is started
// again; the class page learns it from sessionState.
//
// Quotas are per tenant, so that one app cannot take what another needs: a
// publish counts against its user (in all rooms), its room and its app, and
// until it connects (its first RTP) also against the offers of its user and
// of its app not yet connected, which are held tightly: an offer that never
// connects holds its slot and UDP port `session.connectMs` at most.
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { cpus } from 'node:os'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type AccessUnit,
  type CloseReason,
  type Ingest,
  type IngestHandler,
  liveKeyOf,
  type Publisher,
  type PublisherIdentity,
  type StreamKind,
  type Tracks,
} from '../../contracts.ts'
import type { SessionSettings } from './session.ts'
import { asBuffer, type FromWorker, revivedTracks, type ToWorker } from './worker-protocol.ts'

/** What one tenant may hold at once; over one, an offer is refused with 429. */
export interface WhipQuotas {
  /** Publishes of one user id of an app, in all its rooms (a camera and a screen are two). */
  perUser: number
  /** Users publishing in one room of an app. */
  perRoom: number
  /** Publishes of one app. */
  perApp: number
  /** Offers of one user id not yet connected (no RTP yet). */
  connectingPerUser: number
  /** Offers of one app not yet connected. */
  connectingPerApp: number
}

/** Why an offer was refused, for the refusals metric. */
export type WhipRefusal =
  | 'user'
  | 'room'
  | 'app'
  | 'connecting_user'
  | 'connecting_app'
  | 'capacity'
  | 'ports'
  | 'cpu'

/** The UDP ports of the range and what the publishes held take of them. */
export interface WhipPorts {
  range: [number, number]
  /** Ports one publish takes: one, or one per IPv4 interface when no address is set. */
  perPublish: number
  inUse: number
  free: number
  /** Publishes the range allows. */
  publishes: number
}

/** A session's state for its publisher's page: live, why it ended, or not known here. */
export type SessionState = 'live' | CloseReason | 'unknown'

export interface WhipIngestOptions {
  session: SessionSettings
  /** Publishes held at once; more are refused with 503. */
  maxPublishers: number
  /** Each tenant's; over one, 429. */
  quotas: WhipQuotas
  /** Machine CPU use (0–1, all cores) above which new publishes are refused with 503; 1 never refuses. */
  maxCpu: number
  /** How long the worker may take to answer an offer. Default 10 s. */
  answerTimeoutMs?: number
  /** The machine's CPU use (0–1) now; default sampled from the kernel every second. */
  cpu?: { readonly busy: number; close(): void }
  log?: (level: 'info' | 'warn' | 'debug', message: string) => void
  /** Told of each refusal by quota or capacity. */
  onRefused?: (why: WhipRefusal) => void
}

export interface OfferRequest {
  room: string
  sdkAppId: number
  userId: string
  kind: StreamKind
  userSig: string
  sdp: string
  remote: string
}

export type OfferResult =
  | { ok: true; answer: string; session: string }
  | { ok: false; status: 400 | 401 | 409 | 429 | 503; reason: string; retryAfter?: number }

/** The worker's entry beside this module (`.ts` from source, `.js` when built). */
type Answer = { sdp: string } | { error: string; status: 400 | 503 }

const WORKER = fileURLToPath(new URL(`./worker${extname(import.meta.url)}`, import.meta.url))
/** A worker that keeps dying is started again at most this often. */
const RESTART_GAP_MS = 1000
/** Retry-After of a refusal by a quota of publishes: they end when a class does. */
const PUBLISHES_RETRY_S = 30
/** Retry-After of a refusal by a quota of connecting offers: a browser connects in a second. */
const CONNECTING_RETRY_S = 1
/** The service's own end of an offer that has not connected, after the worker's (which closes its port). */
const CONNECT_GRACE_MS = 1000
/** Sessions that ended are remembered this long, and this many at most, for their pages. */
const ENDED_KEEP_MS = 10 * 60_000
const ENDED_MAX = 4096

class WhipPublisher implements Publisher {
  readonly id: string
  readonly identity: PublisherIdentity
  tracks: Tracks = {}
  onTracks: (tracks: Tracks) => void = () => {}
  onUnit: (unit: AccessUnit) => void = () => {}
  onClose: (reason: CloseReason, detail?: string) => void = () => {}
  readonly session: string
  readonly #userSig: Buffer
  readonly #send: (message: ToWorker) => void
  closed = false
  handedOver = false
  /** Its first RTP arrived. */
  connected = false
  /** Counted in the quotas (from admission until it is forgotten). */
  counted = false
  /** The service's own connect deadline. */
  connectTimer: NodeJS.Timeout | undefined

  constructor(
    id: string,
    identity: PublisherIdentity,
    userSig: string,
    send: (message: ToWorker) => void,
  ) {
    this.id = id
    this.identity = identity
    this.#userSig = Buffer.from(userSig)
    this.#send = send
    this.session = randomBytes(18).toString('base64url')
  }
  /** UDP cannot be paused; the recorder's backpressure is a no-op here. */
  pause(): void {}
  resume(): void {}
  requestKeyFrame(): void {
    if (!this.closed) this.#send({ t: 'key', id: this.id })
  }
  kick(reason: CloseReason): void {
    if (!this.closed) this.#send({ t: 'close', id: this.id, reason })
  }
  /** Whether `userSig` is the one this publish was made with. */
  owns(userSig: string): boolean {
    const given = Buffer.from(userSig)
    return given.length === this.#userSig.length && timingSafeEqual(given, this.#userSig)
  }
}

/** Counts by key; a key at zero is dropped. */
class Tally {
  readonly #counts = new Map<string, number>()
  get(key: string): number {
    return this.#counts.get(key) ?? 0
  }
  add(key: string, by: 1 | -1): number {
    const n = this.get(key) + by
    if (n <= 0) this.#counts.delete(key)
    else this.#counts.set(key, n)
    return n
  }
}

/** Machine CPU use over the last sampling period, from the kernel's per-core times. */
export class CpuLoad {
  #last = totals()
  #busy = 0
  readonly #timer: NodeJS.Timeout

  constructor(everyMs = 1000) {
    this.#timer = setInterval(() => this.sample(), everyMs)
    this.#timer.unref()
  }
  sample(): void {
    const now = totals()
    const all = now.all - this.#last.all
    this.#busy = all > 0 ? (now.busy - this.#last.busy) / all : 0
    this.#last = now
  }
  get busy(): number {
    return this.#busy
  }
  close(): void {
    clearInterval(this.#timer)
  }
}

function totals(): { all: number; busy: number } {
  let all = 0
  let idle = 0
  for (const c of cpus()) {
    const t = c.times
    all += t.user + t.nice + t.sys + t.idle + t.irq
    idle += t.idle
  }
  return { all, busy: all - idle }
}

export class WhipIngest implements Ingest {
  readonly name = 'whip'
  readonly #o: WhipIngestOptions
  readonly #cpu: { readonly busy: number; close(): void }
  #handler: IngestHandler | undefined
  #worker: ChildProcess | undefined
  #workerReady: Promise<void> | undefined
  #lastStartMs = 0
  #accepting = false
  #closing = false
  #nextId = 1
  /** Publishes by id (the worker's name for them), by session resource, and by who publishes what. */
  readonly #byId = new Map<string, WhipPublisher>()
  readonly #bySession = new Map<string, WhipPublisher>()
  readonly #live = new Map<string, WhipPublisher>()
  /** Offers waiting for the worker's answer. */
  readonly #pending = new Map<string, { resolve: (r: Answer) => void; timer: NodeJS.Timeout }>()
  /** Publishes by app, user (`app user`), room user (`app room user`); users by room (`app room`). */
  readonly #byApp = new Tally()
  readonly #byUser = new Tally()
  readonly #byRoomUser = new Tally()
  readonly #usersByRoom = new Tally()
  /** Offers not yet connected, by app and by user. */
  readonly #connectingByApp = new Tally()
  readonly #connectingByUser = new Tally()
  #connecting = 0
  /** Ended session resources: why, and whose (`app room user`). */
  readonly #ended = new Map<string, { reason: CloseReason; owner: string; atMs: number }>()
  /** IPv4 addresses of this host a publish takes a port on when no address is set (the worker says). */
  #hostAddresses = 1

  constructor(options: WhipIngestOptions) {
    this.#o = options
    this.#cpu = options.cpu ?? new CpuLoad()
  }

  async listen(handler: IngestHandler): Promise<string> {
    this.#handler = handler
    this.#accepting = true
    await this.#ensureWorker()
    // `{API}` is the API's address, known once it listens.
    return 'POST {API}/whip/{room}?sdkappid={SdkAppId}&userid={UserId} with Authorization: Bearer {UserSig}; class page {API}/class/{room}'
  }

  get publishers(): number {
    return this.#byId.size
  }

  /** Offers admitted that have not connected yet. */
  get connecting(): number {
    return this.#connecting
  }

  get ports(): WhipPorts {
    const range = this.#o.session.portRange
    const perPublish = this.#o.session.address === undefined ? this.#hostAddresses : 1
    const size = range[1] - range[0] + 1
    const inUse = Math.min(size, this.#byId.size * perPublish)
    return {
      range,
      perPublish,
      inUse,
      free: size - inUse,
      publishes: Math.floor(size / perPublish),
    }
  }

  /** Publishes held at once: the setting, or fewer when the UDP ports allow fewer. */
  get capacity(): number {
    return Math.min(this.#o.maxPublishers, this.ports.publishes)
  }

  /** Whether `session` still publishes, or why it ended; only for its own user in its own room. */
  sessionState(
    session: string,
    who: { sdkAppId: number; room: string; userId: string },
  ): SessionState {
    const owner = `${who.sdkAppId} ${who.room} ${who.userId}`
    const p = this.#bySession.get(session)
    if (p !== undefined) return ownerOf(p.identity) === owner ? 'live' : 'unknown'
    const ended = this.#ended.get(session)
    return ended?.owner === owner ? ended.reason : 'unknown'
  }

  async stopAccepting(): Promise<void> {
    this.#accepting = false
  }

  async close(): Promise<void> {
    this.#accepting = false
    this.#closing = true
    this.#cpu.close()
    for (const p of this.#byId.values()) this.#closed(p, 'kicked')
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer)
      pending.resolve({ error: 'the service is shutting down', status: 503 })
      this.#pending.delete(id)
    }
    const worker = this.#worker
    this.#worker = undefined
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.kill('SIGTERM')
      const timer = setTimeout(() => worker.kill('SIGKILL'), 2000)
      await exited
      clearTimeout(timer)
    }
  }

  /** An offer: authorized, admitted, answered by the worker; the publisher is handed over once answered. */
  async offer(req: OfferRequest): Promise<OfferResult> {
    const handler = this.#handler
    if (!this.#accepting || handler === undefined)
      return { ok: false, status: 503, reason: 'not accepting publishers now' }
    const identity: PublisherIdentity = {
      ingest: 'whip',
      sdkAppId: req.sdkAppId,
      room: req.room,
      userId: req.userId,
      kind: req.kind,
      remote: req.remote,
    }
    let decision: Awaited<ReturnType<IngestHandler['authorize']>>
    try {
      decision = await handler.authorize(identity, req.userSig)
    } catch (error) {
      return {
        ok: false,
        status: 503,
        reason: `cannot check the UserSig: ${(error as Error).message}`,
      }
    }
    if (!decision.ok) return { ok: false, status: 401, reason: decision.reason }
    const key = liveKeyOf(identity)
    if (this.#live.has(key))
      return {
        ok: false,
        status: 409,
        reason: `${req.userId} already publishes its ${req.kind} stream in room ${req.room}`,
      }
    const refusal = this.#refusal(identity)
    if (refusal !== undefined) {
      this.#o.onRefused?.(refusal.why)
      return refusal.result
    }
    const id = `whip-${this.#nextId++}`
    const publisher = new WhipPublisher(id, identity, req.userSig, (m) => this.#send(m))
    // Held from now, so that a second offer of the same stream is refused while this one is answered.
    this.#live.set(key, publisher)
    this.#byId.set(id, publisher)
    this.#count(publisher)
    let answer: Answer
    try {
      await this.#ensureWorker()
      answer = await new Promise((resolve) => {
        const timer = setTimeout(() => {
          this.#pending.delete(id)
          resolve({ error: 'the media worker did not answer in time', status: 503 })
        }, this.#o.answerTimeoutMs ?? 10_000)
        this.#pending.set(id, { resolve, timer })
        this.#send({ t: 'open', id, offer: req.sdp, settings: this.#o.session })
      })
    } catch (error) {
      answer = { error: (error as Error).message, status: 503 }
    }
    if ('error' in answer || publisher.closed) {
      this.#send({ t: 'close', id, reason: 'kicked' })
      publisher.closed = true
      this.#forget(publisher)
      return 'error' in answer
        ? { ok: false, status: answer.status, reason: answer.error }
        : { ok: false, status: 503, reason: 'the connection ended before it was answered' }
    }
    this.#bySession.set(publisher.session, publisher)
    publisher.handedOver = true
    if (!publisher.connected) {
      // The worker ends it at the deadline; this one ends it here even if the worker does not.
      publisher.connectTimer = setTimeout(() => {
        if (publisher.connected) return
        publisher.kick('dropped')
        this.#closed(
          publisher,
          'dropped',
          `not connected within ${this.#o.session.connectMs / 1000} s`,
        )
      }, this.#o.session.connectMs + CONNECT_GRACE_MS)
      publisher.connectTimer.unref()
    }
    this.#log(
      'info',
      `whip ${req.remote}: publishing room ${req.room} user ${req.userId}${req.kind === 'aux' ? ' (sub-stream)' : ''}`,
    )
    try {
      handler.publish(publisher)
    } catch (error) {
      this.#log('warn', `whip: publish handler failed: ${(error as Error).message}`)
      publisher.kick('kicked')
    }
    return { ok: true, answer: answer.sdp, session: publisher.session }
  }

  /** DELETE of a session resource: ends the publish when `userSig` is the one it was made with. */
  end(session: string, userSig: string): 'ended' | 'unauthorized' | 'unknown' {
    const p = this.#bySession.get(session)
    if (p === undefined) return 'unknown'
    if (!p.owns(userSig)) return 'unauthorized'
    p.kick('unpublished')
    // Ended for the publisher now: a reload may publish again before the worker has closed it.
    const key = liveKeyOf(p.identity)
    if (this.#live.get(key) === p) this.#live.delete(key)
    this.#bySession.delete(session)
    this.#remember(p, 'unpublished')
    return 'ended'
  }

  /** Whether a session resource exists (PATCH and OPTIONS on it). */
  has(session: string): boolean {
    return this.#bySession.has(session)
  }

  /** Why `identity` may not publish now: a tenant's quota (429), then the service's capacity (503). */
  #refusal(identity: PublisherIdentity): { why: WhipRefusal; result: OfferResult } | undefined {
    const q = this.#o.quotas
    const app = String(identity.sdkAppId)
    const user = `${app} ${identity.userId}`
    const tenant = (why: WhipRefusal, reason: string, retryAfter: number) => ({
      why,
      result: { ok: false as const, status: 429 as const, reason, retryAfter },
    })
    if (this.#connectingByUser.get(user) >= q.connectingPerUser)
      return tenant(
        'connecting_user',
        `too many offers of user ${identity.userId} not yet connected (at most ${q.connectingPerUser})`,
        CONNECTING_RETRY_S,
      )
    if (this.#connectingByApp.get(app) >= q.connectingPerApp)
      return tenant(
        'connecting_app',
        `too many offers of app ${app} not yet connected (at most ${q.connectingPerApp})`,
        CONNECTING_RETRY_S,
      )
    if (this.#byUser.get(user) >= q.perUser)
      return tenant(
        'user',
        `too many publishes of user ${identity.userId} (at most ${q.perUser}, in all rooms)`,
        PUBLISHES_RETRY_S,
      )
    const room = `${app} ${identity.room}`
    if (
      this.#byRoomUser.get(`${room} ${identity.userId}`) === 0 &&
      this.#usersByRoom.get(room) >= q.perRoom
    )
      return tenant(
        'room',
        `too many users publishing in room ${identity.room} (at most ${q.perRoom})`,
        PUBLISHES_RETRY_S,
      )
    if (this.#byApp.get(app) >= q.perApp)
      return tenant(
        'app',
        `too many publishes of app ${app} (at most ${q.perApp})`,
        PUBLISHES_RETRY_S,
      )
    const service = (why: WhipRefusal, reason: string) => ({
      why,
      result: { ok: false as const, status: 503 as const, reason },
    })
    if (this.#byId.size >= this.#o.maxPublishers)
      return service('capacity', `at capacity (${this.#o.maxPublishers} publishers)`)
    const ports = this.ports
    if (this.#byId.size >= ports.publishes)
      return service(
        'ports',
        `at capacity: the UDP ports ${ports.range[0]}-${ports.range[1]} allow ${ports.publishes} publishers`,
      )
    if (this.#cpu.busy > this.#o.maxCpu)
      return service('cpu', `the machine is busy (CPU ${Math.round(this.#cpu.busy * 100)} %)`)
    return undefined
  }

  #count(p: WhipPublisher): void {
    p.counted = true
    const { app, user, roomUser, room } = keysOf(p.identity)
    this.#byApp.add(app, 1)
    this.#byUser.add(user, 1)
    if (this.#byRoomUser.add(roomUser, 1) === 1) this.#usersByRoom.add(room, 1)
    this.#connectingByApp.add(app, 1)
    this.#connectingByUser.add(user, 1)
    this.#connecting++
  }

  #connected(p: WhipPublisher): void {
    if (p.connected) return
    p.connected = true
    clearTimeout(p.connectTimer)
    if (!p.counted) return
    const { app, user } = keysOf(p.identity)
    this.#connectingByApp.add(app, -1)
    this.#connectingByUser.add(user, -1)
    this.#connecting--
  }

  #uncount(p: WhipPublisher): void {
    clearTimeout(p.connectTimer)
    if (!p.counted) return
    p.counted = false
    const { app, user, roomUser, room } = keysOf(p.identity)
    this.#byApp.add(app, -1)
    this.#byUser.add(user, -1)
    if (this.#byRoomUser.add(roomUser, -1) === 0) this.#usersByRoom.add(room, -1)
    if (!p.connected) {
      this.#connectingByApp.add(app, -1)
      this.#connectingByUser.add(user, -1)
      this.#connecting--
    }
  }

  /** An ended session resource, for its page (bounded in time and number). */
  #remember(p: WhipPublisher, reason: CloseReason): void {
    const now = Date.now()
    for (const [session, e] of this.#ended) {
      if (this.#ended.size < ENDED_MAX && now - e.atMs < ENDED_KEEP_MS) break
      this.#ended.delete(session)
    }
    this.#ended.set(p.session, { reason, owner: ownerOf(p.identity), atMs: now })
  }

  #log(level: 'info' | 'warn' | 'debug', message: string): void {
    this.#o.log?.(level, message)
  }

  #send(message: ToWorker): void {
    const w = this.#worker
    if (w?.connected) w.send(message)
  }

  #ensureWorker(): Promise<void> {
    if (this.#worker && this.#workerReady) return this.#workerReady
    if (this.#closing) return Promise.reject(new Error('the service is shutting down'))
    const worker = fork(WORKER, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    this.#worker = worker
    this.#lastStartMs = Date.now()
    const ready = new Promise<void>((resolve, reject) => {
      worker.once('error', reject)
      worker.once('exit', (code, signal) =>
        reject(new Error(`the media worker ended at start (${signal ?? `code ${code}`})`)),
      )
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          this.#hostAddresses = Math.max(1, m.hostAddresses)
          resolve()
        } else this.#fromWorker(m)
      })
    })
    this.#workerReady = ready
    worker.on('error', () => {})
    worker.on('exit', (code, signal) => this.#workerExited(worker, code, signal))
    ready.catch(() => {})
    return ready
  }

  #workerExited(worker: ChildProcess, code: number | null, signal: string | null): void {
    if (this.#worker !== worker) return
    this.#worker = undefined
    this.#workerReady = undefined
    if (this.#closing) return
    const why = `the media worker ended (${signal ?? `code ${code}`})`
    this.#log('warn', `whip: ${why}; its ${this.#byId.size} publishes end`)
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer)
      pending.resolve({ error: why, status: 503 })
      this.#pending.delete(id)
    }
    for (const p of [...this.#byId.values()]) this.#closed(p, 'failed', why)
    // Started again for the next offers, not in a loop if it dies at once.
    const wait = Math.max(0, RESTART_GAP_MS - (Date.now() - this.#lastStartMs))
    setTimeout(() => {
      if (!this.#closing && this.#worker === undefined) this.#ensureWorker().catch(() => {})
    }, wait).unref()
  }

  #fromWorker(m: FromWorker): void {
    if (m.t === 'ready') return
    if (m.t === 'answer' || m.t === 'error') {
      const pending = this.#pending.get(m.id)
      if (pending === undefined) return
      this.#pending.delete(m.id)
      clearTimeout(pending.timer)
      pending.resolve(
        m.t === 'answer'
          ? { sdp: m.sdp }
          : { error: m.message, status: m.kind === 'offer' ? 400 : 503 },
      )
      return
    }
    const p = this.#byId.get(m.id)
    if (p === undefined || p.closed) return
    switch (m.t) {
      case 'connected':
        this.#connected(p)
        return
      case 'tracks':
        p.tracks = revivedTracks(m.tracks)
        safe(() => p.onTracks(p.tracks))
        return
      case 'unit':
        safe(() => p.onUnit({ ...m.unit, data: asBuffer(m.unit.data) }))
        return
      case 'problem':
        this.#log('debug', `whip ${p.identity.remote}: ${m.message}`)
        return
      case 'close':
        this.#closed(p, m.reason, m.detail)
        return
      default:
        return
    }
  }

  #closed(p: WhipPublisher, reason: CloseReason, detail?: string): void {
    if (p.closed) return
    p.closed = true
    this.#forget(p)
    // Not yet handed over (its answer is pending): nobody to tell.
    if (!p.handedOver) return
    if (!this.#ended.has(p.session)) this.#remember(p, reason)
    this.#log(
      'info',
      `whip ${p.identity.remote}: room ${p.identity.room} user ${p.identity.userId} ended (${reason}${detail ? `: ${detail}` : ''})`,
    )
    safe(() => p.onClose(reason, detail))
  }

  #forget(p: WhipPublisher): void {
    this.#uncount(p)
    this.#byId.delete(p.id)
    if (this.#bySession.get(p.session) === p) this.#bySession.delete(p.session)
    const key = liveKeyOf(p.identity)
    if (this.#live.get(key) === p) this.#live.delete(key)
  }
}

function keysOf(identity: PublisherIdentity) {
  const app = String(identity.sdkAppId)
  const room = `${app} ${identity.room}`
  return {
    app,
    user: `${app} ${identity.userId}`,
    room,
    roomUser: `${room} ${identity.userId}`,
  }
}

function ownerOf(identity: PublisherIdentity): string {
  return `${identity.sdkAppId} ${identity.room} ${identity.userId}`
}

function safe(run: () => void): void {
  try {
    run()
  } catch {
    // A handler's failure must not take the ingest down.
  }
}
