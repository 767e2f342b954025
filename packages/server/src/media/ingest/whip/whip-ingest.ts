// WHIP ingest (RFC 9725): browsers, OBS 30+ and GStreamer publish WebRTC
// with one HTTP POST of an SDP offer. The HTTP side (whip-route.ts) hands
// offers here; each is authorized with the publisher's UserSig, admitted by
// capacity, and answered by a media worker process that holds the WebRTC
// session (worker.ts). What the worker receives comes back as the media
// core's tracks and access units, so WHIP publishers are recorded exactly as
// RTMP ones are. A worker that dies ends its publishes as `failed` (an
// exception on their tasks) and is started again.
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

export interface WhipIngestOptions {
  session: SessionSettings
  /** Publishes held at once; more are refused with 503. */
  maxPublishers: number
  /** Machine CPU use (0–1, all cores) above which new publishes are refused with 503; 1 never refuses. */
  maxCpu: number
  /** How long the worker may take to answer an offer. Default 10 s. */
  answerTimeoutMs?: number
  /** The machine's CPU use (0–1) now; default sampled from the kernel every second. */
  cpu?: { readonly busy: number; close(): void }
  log?: (level: 'info' | 'warn' | 'debug', message: string) => void
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
  | { ok: false; status: 400 | 401 | 409 | 503; reason: string }

/** The worker's entry beside this module (`.ts` from source, `.js` when built). */
type Answer = { sdp: string } | { error: string; status: 400 | 503 }

const WORKER = fileURLToPath(new URL(`./worker${extname(import.meta.url)}`, import.meta.url))
/** A worker that keeps dying is started again at most this often. */
const RESTART_GAP_MS = 1000

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
    if (this.#byId.size >= this.#o.maxPublishers)
      return { ok: false, status: 503, reason: `at capacity (${this.#o.maxPublishers} publishers)` }
    if (this.#cpu.busy > this.#o.maxCpu)
      return {
        ok: false,
        status: 503,
        reason: `the machine is busy (CPU ${Math.round(this.#cpu.busy * 100)} %)`,
      }
    const id = `whip-${this.#nextId++}`
    const publisher = new WhipPublisher(id, identity, req.userSig, (m) => this.#send(m))
    // Held from now, so that a second offer of the same stream is refused while this one is answered.
    this.#live.set(key, publisher)
    this.#byId.set(id, publisher)
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
    return 'ended'
  }

  /** Whether a session resource exists (PATCH and OPTIONS on it). */
  has(session: string): boolean {
    return this.#bySession.has(session)
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
        if (m.t === 'ready') resolve()
        else this.#fromWorker(m)
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
    this.#log(
      'info',
      `whip ${p.identity.remote}: room ${p.identity.room} user ${p.identity.userId} ended (${reason}${detail ? `: ${detail}` : ''})`,
    )
    safe(() => p.onClose(reason, detail))
  }

  #forget(p: WhipPublisher): void {
    this.#byId.delete(p.id)
    if (this.#bySession.get(p.session) === p) this.#bySession.delete(p.session)
    const key = liveKeyOf(p.identity)
    if (this.#live.get(key) === p) this.#live.delete(key)
  }
}

function safe(run: () => void): void {
  try {
    run()
  } catch {
    // A handler's failure must not take the ingest down.
  }
}
