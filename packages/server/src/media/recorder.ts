// The media recorder: the engine's RecorderPort over the RTMP ingest. Every
// accepted publisher is matched to the active task of its room (here or, when
// another process started the task, through the store); while the task
// records, each stream is written into segments by stream copy, one ffmpeg per
// segment. Pause closes segments, resume opens new ones at the next key frame,
// and every segment is in the manifest from the moment it opens.
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import type { Apps } from '../apps/apps.ts'
import { verifyUserSig } from '../apps/usersig.ts'
import type { Clock } from '../clock.ts'
import type {
  FinishSpec,
  RecorderPort,
  RecorderSignals,
  RecordingResult,
  TaskSpec,
} from '../engine/ports.ts'
import type { AddressPolicy } from '../net/url-policy.ts'
import type { Db } from '../store/db.ts'
import type { MediaTools } from './ffmpeg-tools.ts'
import { type ActiveTask, Manifest, roomKeyOf, type SegmentEndReason } from './manifest.ts'
import { PostProcessor } from './post-process.ts'
import {
  type Authorization,
  type CloseReason,
  type IngestHandler,
  type MediaPacket,
  type Publisher,
  type PublishRequest,
  RtmpIngest,
} from './rtmp-ingest.ts'
import { SegmentWriter } from './segment-writer.ts'
import type { ObjectStorage } from './storage.ts'

export type MediaLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void

export interface MediaRecorderOptions {
  db: Db
  clock: Clock
  apps: Apps
  tools: MediaTools
  storage: ObjectStorage
  /** Segments, work files (and local storage) live here. */
  mediaDir: string
  /** How often task states are re-read and waiting publishers matched to tasks. */
  pollIntervalMs: number
  /** Delete stored outputs this long after they were made; 0 keeps them. */
  retentionMs?: number
  /** Which tenant URLs (Concat.Image) may be fetched; default: any. */
  urlPolicy?: AddressPolicy
  log?: MediaLog
}

/** A heartbeat older than this means the process is gone and its open segments were cut. */
const STALE_MS = 15_000
const HEARTBEAT_MS = 3_000
/** More recording-process failures than this within the window: the task cannot record. */
const FAULT_LIMIT = 3
const FAULT_WINDOW_MS = 60_000

interface TaskState {
  taskId: string
  sdkAppId: number
  room: string
  recordUserId: string
  request: StartOnlineRecordRequest
  status: 'PREPARED' | 'RECORDING' | 'PAUSED'
  signals: RecorderSignals | undefined
  streams: Set<LiveStream>
  activitySentMs: number
  activityEveryMs: number
  faults: number[]
}

interface LiveStream {
  publisher: Publisher
  request: PublishRequest
  /** The stream's TIW UserId: the user, or tic_substream_{user}. */
  streamId: string
  videoType: 0 | 1
  headers: { video?: Buffer; audio?: Buffer }
  sawVideo: boolean
  task: TaskState | undefined
  audio: boolean
  writer: SegmentWriter | undefined
  segment: { id: string; startMs: number; opened: Promise<void> } | undefined
  wantOpen: boolean
  closed: boolean
}

/** Which streams RecordControl records, and with or without audio (StreamId is a prefix). */
export function recordPolicy(
  request: StartOnlineRecordRequest,
  streamId: string,
): { record: boolean; audio: boolean } {
  const rc = request.RecordControl
  if (!rc?.Enabled) return { record: true, audio: true }
  let record = !rc.DisableRecord
  let audio = !rc.DisableAudio
  const match = (rc.StreamControls ?? [])
    .filter((c) => streamId.startsWith(c.StreamId))
    .sort((a, b) => b.StreamId.length - a.StreamId.length)[0]
  if (match?.DisableRecord !== undefined) record = !match.DisableRecord
  if (match?.DisableAudio !== undefined) audio = !match.DisableAudio
  return { record, audio }
}

export class MediaRecorder implements RecorderPort, IngestHandler {
  readonly #db: Db
  readonly #clock: Clock
  readonly #apps: Apps
  readonly #tools: MediaTools
  readonly #mediaDir: string
  readonly #pollIntervalMs: number
  readonly #retentionMs: number
  readonly #log: MediaLog
  readonly #manifest: Manifest
  readonly #post: PostProcessor
  readonly #storage: ObjectStorage
  readonly #tasks = new Map<string, TaskState>()
  /** Publishers not (yet) matched to a task. */
  readonly #waiting = new Set<LiveStream>()
  /** Work that must end before the store closes (segment closes, signals). */
  readonly #pending = new Set<Promise<unknown>>()
  /** Segment closes in flight per task; stop and finish wait for them. */
  readonly #closing = new Map<string, Set<Promise<void>>>()
  readonly #dirs = new Set<string>()
  readonly #cutByShutdown = new Set<TaskState>()
  #signals: RecorderSignals | undefined
  #ingest: RtmpIngest | undefined
  #timer: NodeJS.Timeout | undefined
  #polling = false
  #lastHeartbeat = 0
  #lastRetention = 0
  #closed = false

  constructor(options: MediaRecorderOptions) {
    this.#db = options.db
    this.#clock = options.clock
    this.#apps = options.apps
    this.#tools = options.tools
    this.#mediaDir = options.mediaDir
    this.#pollIntervalMs = options.pollIntervalMs
    this.#retentionMs = options.retentionMs ?? 0
    this.#log = options.log ?? (() => {})
    this.#storage = options.storage
    this.#manifest = new Manifest(options.db, options.clock, randomBytes(8).toString('hex'))
    this.#post = new PostProcessor({
      manifest: this.#manifest,
      tools: options.tools,
      storage: options.storage,
      mediaDir: options.mediaDir,
      log: this.#log,
      settle: (taskId) => this.#settle(taskId),
      urlPolicy: options.urlPolicy ?? { blockPrivate: false },
    })
  }

  get instanceId(): string {
    return this.#manifest.instanceId
  }

  /** Signals for tasks this process did not start (another process, or before a restart). */
  bind(signals: RecorderSignals): void {
    this.#signals = signals
  }

  /**
   * Registers this process, closes what a crashed one left open, and starts
   * the ingest. Resolves with the RTMP port.
   */
  async listen(host: string, port: number): Promise<number> {
    await mkdir(this.#mediaDir, { recursive: true })
    await this.#manifest.heartbeat()
    this.#lastHeartbeat = this.#clock.now()
    // PGlite admits one process: any other recorder's open segment was cut by its death.
    const cut = await this.#manifest.sweepOrphans(this.#db.dialect === 'pglite' ? 0 : STALE_MS)
    for (const taskId of cut) this.#log('warn', `task ${taskId}: recording was cut by a restart`)
    this.#ingest = new RtmpIngest(this, {
      host,
      port,
      log: (level, message) => this.#log(level, message),
    })
    const bound = await this.#ingest.listen()
    this.#timer = setInterval(() => void this.#poll(), this.#pollIntervalMs)
    return bound
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    while (this.#polling) await new Promise((r) => setTimeout(r, 10))
    await this.#ingest?.close()
    await this.#drain()
    await this.#manifest.retire().catch(() => {})
  }

  // ---- RecorderPort ---------------------------------------------------------------

  /** Whoever publishes in the room is recorded from the start: nothing to join first. */
  readonly readyAtStart = true

  async start(task: TaskSpec, signals: RecorderSignals): Promise<void> {
    const state = this.#taskState({
      taskId: task.taskId,
      sdkAppId: task.sdkAppId,
      status: 'RECORDING',
      recordUserId: task.request.RecordUserId,
      request: task.request,
    })
    state.signals = signals
    state.status = 'RECORDING'
    // Streams matched through the store while the task was PREPARED start now too.
    for (const stream of state.streams) stream.wantOpen ||= stream.writer === undefined
    for (const stream of [...this.#waiting]) {
      if (matches(state, stream.request)) this.#attach(stream, state)
    }
  }

  async pause(taskId: string): Promise<void> {
    const state = this.#tasks.get(taskId)
    if (state === undefined) return
    state.status = 'PAUSED'
    for (const stream of state.streams) this.#closeSegment(stream, 'pause')
    await this.#settleHere(taskId)
  }

  async resume(taskId: string): Promise<void> {
    const state = this.#tasks.get(taskId)
    if (state === undefined) return
    state.status = 'RECORDING'
    for (const stream of state.streams) stream.wantOpen = true
  }

  async stop(taskId: string): Promise<void> {
    const state = this.#tasks.get(taskId)
    if (state === undefined) return
    this.#endTask(state)
    await this.#settleHere(taskId)
  }

  async finish(task: FinishSpec): Promise<RecordingResult> {
    return this.#post.finish(task)
  }

  // ---- ingest -----------------------------------------------------------------------

  async authorize(request: PublishRequest): Promise<Authorization> {
    const app = await this.#apps.get(request.sdkAppId)
    if (app === undefined) return { ok: false, reason: `unknown sdkappid ${request.sdkAppId}` }
    const check = verifyUserSig(
      request.userSig,
      request.sdkAppId,
      app.userSigKey,
      request.userId,
      this.#clock.now(),
    )
    return check.ok ? { ok: true } : { ok: false, reason: check.message }
  }

  publish(publisher: Publisher): void {
    const request = publisher.request
    const stream: LiveStream = {
      publisher,
      request,
      streamId: request.aux ? `tic_substream_${request.userId}` : request.userId,
      videoType: request.aux ? 1 : 0,
      headers: {},
      sawVideo: false,
      task: undefined,
      audio: true,
      writer: undefined,
      segment: undefined,
      wantOpen: false,
      closed: false,
    }
    publisher.onPacket = (packet) => this.#onPacket(stream, packet)
    publisher.onClose = (reason) => this.#onClose(stream, reason)
    const local = [...this.#tasks.values()].find((t) => matches(t, request))
    if (local) this.#attach(stream, local)
    else {
      this.#waiting.add(stream)
      this.#track(this.#matchWaiting([stream]))
    }
  }

  // ---- streams ------------------------------------------------------------------------

  #taskState(t: Omit<ActiveTask, 'status'> & { status: TaskState['status'] }): TaskState {
    let state = this.#tasks.get(t.taskId)
    if (state === undefined) {
      const autoStopMs = (t.request.AutoStopTimeout ?? 300) * 1000
      state = {
        taskId: t.taskId,
        sdkAppId: t.sdkAppId,
        room: roomKeyOf(t.request),
        recordUserId: t.recordUserId,
        request: t.request,
        status: t.status,
        signals: this.#signals,
        streams: new Set(),
        activitySentMs: 0,
        // Often enough that the idle timer never fires while media flows,
        // rarely enough that it is not a database write per packet.
        activityEveryMs: Math.min(5_000, Math.max(250, autoStopMs / 4)),
        faults: [],
      }
      this.#tasks.set(t.taskId, state)
    }
    return state
  }

  #attach(stream: LiveStream, state: TaskState): void {
    this.#waiting.delete(stream)
    if (stream.closed) return
    // The recording user's own stream (and what RecordControl excludes) is never recorded.
    const policy = recordPolicy(state.request, stream.streamId)
    if (stream.request.userId === state.recordUserId || !policy.record) {
      this.#log('info', `task ${state.taskId}: not recording ${stream.streamId}`)
      return
    }
    stream.task = state
    stream.audio = policy.audio
    state.streams.add(stream)
    stream.wantOpen = state.status === 'RECORDING'
    this.#log('info', `task ${state.taskId}: stream ${stream.streamId} joined`)
  }

  #onPacket(stream: LiveStream, packet: MediaPacket): void {
    if (packet.type === 9) stream.sawVideo = true
    if (packet.header) {
      const kind = packet.type === 9 ? 'video' : 'audio'
      const previous = stream.headers[kind]
      stream.headers[kind] = packet.tag
      // New codec parameters cannot go on in the same file: a new segment starts.
      if (stream.writer && previous && !previous.subarray(11).equals(packet.tag.subarray(11))) {
        this.#closeSegment(stream, 'codec-change')
        stream.wantOpen = stream.task?.status === 'RECORDING'
      }
      return
    }
    const state = stream.task
    if (state === undefined || state.status !== 'RECORDING') return
    const now = this.#clock.now()
    if (now - state.activitySentMs >= state.activityEveryMs && state.signals) {
      state.activitySentMs = now
      this.#track(state.signals.activity(state.taskId))
    }
    if (stream.writer) {
      stream.writer.write(packet)
      return
    }
    if (!stream.wantOpen) return
    // A segment starts on a key frame; an audio-only stream on any audio packet.
    if (packet.type === 9 ? packet.key : !stream.sawVideo && stream.headers.video === undefined) {
      this.#openSegment(stream, state, packet)
    }
  }

  #openSegment(stream: LiveStream, state: TaskState, first: MediaPacket): void {
    stream.wantOpen = false
    const segmentId = randomBytes(12).toString('hex')
    const dir = join('segments', state.taskId)
    const file = join(dir, `${segmentId}.mp4`)
    const startMs = this.#clock.now()
    try {
      // Synchronous, and once per task: ffmpeg opens its output right away.
      if (!this.#dirs.has(dir)) {
        mkdirSync(join(this.#mediaDir, dir), { recursive: true })
        this.#dirs.add(dir)
      }
    } catch (error) {
      this.#fail(state, `cannot record: ${(error as Error).message}`)
      return
    }
    const writer: SegmentWriter = new SegmentWriter({
      ffmpeg: this.#tools.ffmpeg,
      file: join(this.#mediaDir, file),
      headers: stream.headers,
      audio: stream.audio,
      first,
      onFault: (message) => this.#onFault(stream, writer, message),
      onFull: () => stream.publisher.pause(),
      onDrain: () => stream.publisher.resume(),
    })
    const opened = this.#manifest.openSegment({
      segmentId,
      taskId: state.taskId,
      streamId: stream.streamId,
      userId: stream.request.userId,
      videoType: stream.videoType,
      file,
      startMs,
    })
    this.#track(opened)
    stream.writer = writer
    stream.segment = { id: segmentId, startMs, opened }
    this.#log('debug', `task ${state.taskId}: segment ${segmentId} of ${stream.streamId}`)
  }

  /** Closes the stream's current segment (if any); the close is tracked on the task. */
  #closeSegment(stream: LiveStream, reason: SegmentEndReason): void {
    const writer = stream.writer
    const segment = stream.segment
    const state = stream.task
    stream.writer = undefined
    stream.segment = undefined
    stream.wantOpen = false
    if (writer === undefined || segment === undefined || state === undefined) return
    const endMs = this.#clock.now()
    const done = (async () => {
      await segment.opened.catch(() => {})
      await writer.close()
      await this.#manifest.closeSegment(segment.id, endMs, reason)
    })().catch((error: Error) =>
      this.#log('error', `task ${state.taskId}: closing a segment failed: ${error.message}`),
    )
    const set = this.#closing.get(state.taskId) ?? new Set()
    this.#closing.set(state.taskId, set)
    set.add(done)
    void done.finally(() => {
      set.delete(done)
      if (set.size === 0 && this.#closing.get(state.taskId) === set)
        this.#closing.delete(state.taskId)
    })
    this.#track(done)
  }

  #onFault(stream: LiveStream, writer: SegmentWriter, message: string): void {
    const state = stream.task
    if (state === undefined || stream.writer !== writer) return
    this.#log('warn', `task ${state.taskId}: ${stream.streamId}: ${message}; restarting`)
    this.#closeSegment(stream, 'fault')
    const now = this.#clock.now()
    state.faults = [...state.faults.filter((t) => now - t < FAULT_WINDOW_MS), now]
    if (state.signals) this.#track(state.signals.exception(state.taskId, message))
    if (state.faults.length > FAULT_LIMIT || message.startsWith('cannot run ffmpeg')) {
      this.#fail(state, `recording cannot continue: ${message}`)
      return
    }
    // What was written stays; recording goes on in a new segment at the next key frame.
    stream.wantOpen = state.status === 'RECORDING' && !stream.closed
  }

  #fail(state: TaskState, message: string): void {
    if (!this.#tasks.has(state.taskId)) return
    this.#endTask(state)
    if (state.signals) this.#track(state.signals.failed(state.taskId, message))
  }

  #onClose(stream: LiveStream, reason: CloseReason): void {
    stream.closed = true
    this.#waiting.delete(stream)
    const state = stream.task
    if (state === undefined) return
    const recording = stream.writer !== undefined
    this.#closeSegment(
      stream,
      reason === 'unpublished'
        ? 'leave'
        : reason === 'dropped'
          ? 'drop'
          : reason === 'replaced'
            ? 'replaced'
            : 'shutdown',
    )
    state.streams.delete(stream)
    stream.task = undefined
    if (reason === 'dropped' && state.signals) {
      this.#track(state.signals.interrupted(state.taskId, stream.streamId))
    }
    // A shutdown cuts the recording: once per task, like a crash would.
    if (reason === 'kicked' && recording && state.signals && !this.#cutByShutdown.has(state)) {
      this.#cutByShutdown.add(state)
      this.#track(state.signals.exception(state.taskId, 'the service shut down'))
    }
    this.#log('info', `task ${state.taskId}: stream ${stream.streamId} left (${reason})`)
  }

  /** The task stopped: every segment closes, streams wait for a next task. */
  #endTask(state: TaskState): void {
    this.#tasks.delete(state.taskId)
    this.#dirs.delete(join('segments', state.taskId))
    for (const stream of state.streams) {
      this.#closeSegment(stream, 'stop')
      stream.task = undefined
      if (!stream.closed) this.#waiting.add(stream)
    }
    state.streams.clear()
  }

  /** Waits until the task's segment closes in this process are written. */
  async #settleHere(taskId: string): Promise<void> {
    for (;;) {
      const closing = this.#closing.get(taskId)
      if (closing === undefined || closing.size === 0) break
      await Promise.all([...closing])
    }
  }

  /** Before post-processing: also until other live processes closed theirs (at their next poll). */
  async #settle(taskId: string): Promise<void> {
    await this.#settleHere(taskId)
    // PGlite's store is this process's alone: nobody else records.
    if (this.#db.dialect === 'pglite') return
    // A real wait, bounded in real time whatever clock the recorder runs on.
    const deadline = performance.now() + 2 * STALE_MS
    while (
      (await this.#manifest.openElsewhere(taskId, STALE_MS)) > 0 &&
      performance.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, this.#pollIntervalMs))
    }
  }

  // ---- polling --------------------------------------------------------------------------

  async #poll(): Promise<void> {
    if (this.#polling || this.#closed) return
    this.#polling = true
    try {
      const now = this.#clock.now()
      if (now - this.#lastHeartbeat >= HEARTBEAT_MS) {
        this.#lastHeartbeat = now
        await this.#manifest.heartbeat()
        const cut = await this.#manifest.sweepOrphans(STALE_MS)
        for (const taskId of cut) this.#log('warn', `task ${taskId}: recording was cut by a crash`)
      }
      await this.#refreshTasks()
      if (this.#waiting.size > 0) await this.#matchWaiting([...this.#waiting])
      if (this.#retentionMs > 0 && now - this.#lastRetention >= 60_000) {
        this.#lastRetention = now
        await this.#post.expire(now - this.#retentionMs, this.#storage)
      }
    } catch (error) {
      this.#log('error', `media poll failed: ${(error as Error).message}`)
    } finally {
      this.#polling = false
    }
  }

  /** Applies state changes made elsewhere (another process, a timer) to the local tasks. */
  async #refreshTasks(): Promise<void> {
    const statuses = await this.#manifest.statuses([...this.#tasks.keys()])
    for (const state of [...this.#tasks.values()]) {
      const status = statuses.get(state.taskId)
      if (status === state.status) continue
      if (status === 'RECORDING') void this.resume(state.taskId)
      else if (status === 'PAUSED') void this.pause(state.taskId)
      else if (status !== 'PREPARED') this.#endTask(state)
    }
  }

  async #matchWaiting(streams: readonly LiveStream[]): Promise<void> {
    const rooms = new Map<string, LiveStream[]>()
    for (const s of streams) {
      const key = `${s.request.sdkAppId}/${s.request.room}`
      rooms.set(key, [...(rooms.get(key) ?? []), s])
    }
    for (const group of rooms.values()) {
      const first = group[0] as LiveStream
      const found = await this.#manifest.activeTaskForRoom(
        first.request.sdkAppId,
        first.request.room,
      )
      if (found === undefined) continue
      const state = this.#taskState(found)
      for (const stream of group) if (this.#waiting.has(stream)) this.#attach(stream, state)
    }
  }

  #track(promise: Promise<unknown>): void {
    const p = promise.catch((error: Error) => this.#log('error', `media: ${error.message}`))
    this.#pending.add(p)
    void p.finally(() => this.#pending.delete(p))
  }

  async #drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
  }
}

function matches(state: TaskState, request: PublishRequest): boolean {
  return state.sdkAppId === request.sdkAppId && state.room === request.room
}
