// The recorder: the engine's RecorderPort and every ingest's handler. It is
// composed, not constructing: it is given its ingests, the authorizer, the
// manifest, storage, the post-processor and how to open a segment writer.
//
// Every accepted publisher is matched to the active task of its room (here
// or, when another process started the task, through the store); while the
// task records, each stream is written into segments, one recording process
// per segment. Pause closes segments, resume opens new ones at the next key
// frame, and every segment is in the manifest from the moment it opens. A
// closed segment goes to object storage at once, so any process can
// post-process the task.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync } from 'node:fs'
import { rm, rmdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import type { Clock } from '../../clock.ts'
import type {
  FinishSpec,
  JobLease,
  RecorderPort,
  RecorderSignals,
  RecordingResult,
  TaskSpec,
} from '../../engine/ports.ts'
import type { UserSigAuthorizer } from '../authorizer.ts'
import {
  type AccessUnit,
  type Authorization,
  type CloseReason,
  type Ingest,
  type IngestHandler,
  liveKeyOf,
  type Publisher,
  type PublisherIdentity,
  streamIdOf,
  type Tracks,
} from '../contracts.ts'
import type { MediaLog, PostProcessor, Progress } from '../post/post-process.ts'
import { type ObjectStorage, segmentKey } from '../storage/object-storage.ts'
import { type ActiveTask, type Manifest, roomKeyOf, type SegmentEndReason } from './manifest.ts'
import type { OpenSegment, SegmentSink } from './segment-writer.ts'

export interface MediaRecorderOptions {
  clock: Clock
  manifest: Manifest
  /** The transports publishers come through (RTMP, WHIP, …); started by `open`. */
  ingests: readonly Ingest[]
  authorizer: UserSigAuthorizer
  storage: ObjectStorage
  post: PostProcessor
  /** Starts a recording process for a segment (the real one, or a fake in tests). */
  openSegment: OpenSegment
  /** Segments and work files live here. */
  mediaDir: string
  /** How often task states are re-read and waiting publishers matched to tasks; 0: only when `poll` is called. */
  pollIntervalMs: number
  /** Delete stored outputs this long after they were made; 0 keeps them. */
  retentionMs?: number
  /** One process owns the store (PGlite): every other process's open segment was cut by its death. */
  soleProcess: boolean
  log?: MediaLog
}

/** A heartbeat older than this means the process is gone and its open segments were cut. */
export const STALE_MS = 15_000
const HEARTBEAT_MS = 3_000
/** More recording-process failures than this within the window: the task cannot record. */
const FAULT_LIMIT = 3
const FAULT_WINDOW_MS = 60_000
/** Segments that failed to reach storage are tried again this often. */
const LEFTOVER_MS = 60_000

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
  identity: PublisherIdentity
  /** The stream's TIW UserId: the user, or tic_substream_{user}. */
  streamId: string
  videoType: 0 | 1
  sawVideo: boolean
  task: TaskState | undefined
  audio: boolean
  writer: SegmentSink | undefined
  /** The tracks the open segment was started with. */
  writing: Tracks | undefined
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

/** Whether a segment written with `writing` can take units of `now` (same codecs and parameters). */
export function sameTracks(writing: Tracks, now: Tracks): boolean {
  const same = (a: Tracks['video'] | Tracks['audio'], b: Tracks['video'] | Tracks['audio']) =>
    a === b ||
    (a !== undefined &&
      b !== undefined &&
      a.codec === b.codec &&
      (a.config === b.config || (a.config?.equals(b.config ?? Buffer.alloc(0)) ?? false)) &&
      (a.type !== 'video' || b.type !== 'video' || (a.width === b.width && a.height === b.height)))
  return same(writing.video, now.video) && same(writing.audio, now.audio)
}

export class MediaRecorder implements RecorderPort, IngestHandler {
  readonly #o: MediaRecorderOptions
  readonly #clock: Clock
  readonly #log: MediaLog
  readonly #manifest: Manifest
  readonly #tasks = new Map<string, TaskState>()
  /** Publishers not (yet) matched to a task. */
  readonly #waiting = new Set<LiveStream>()
  /** Work that must end before the store closes (segment closes, signals). */
  readonly #pending = new Set<Promise<unknown>>()
  /** Segment closes in flight per task; pause and stop wait for them. */
  readonly #closing = new Map<string, Set<Promise<void>>>()
  readonly #dirs = new Set<string>()
  readonly #cutByShutdown = new Set<TaskState>()
  /** When an ingest failure last counted an exception of each task. */
  readonly #ingestFailedAt = new WeakMap<TaskState, number>()
  /** Segments being closed here now. */
  readonly #closingSegments = new Set<string>()
  /** Segments closed here whose end the store has not taken yet. */
  readonly #unrecorded = new Map<string, { endMs: number; reason: SegmentEndReason }>()
  /** The live stream of each app, room, user and stream kind, whatever its ingest. */
  readonly #live = new Map<string, LiveStream>()
  #signals: RecorderSignals | undefined
  #timer: NodeJS.Timeout | undefined
  #polling = false
  #lastHeartbeat = Number.NEGATIVE_INFINITY
  #lastRetention = 0
  #lastLeftovers = 0
  #closed = false
  #graceful = false

  constructor(options: MediaRecorderOptions) {
    this.#o = options
    this.#clock = options.clock
    this.#log = options.log ?? (() => {})
    this.#manifest = options.manifest
  }

  get instanceId(): string {
    return this.#manifest.instanceId
  }

  /** Signals for tasks this process did not start (another process, or before a restart). */
  bind(signals: RecorderSignals): void {
    this.#signals = signals
  }

  /**
   * Registers this process, closes what a dead one left open, stores the
   * segments a previous run of this process left unstored, and starts the
   * ingests. Resolves with what each ingest tells operators.
   */
  async open(): Promise<string[]> {
    mkdirSync(this.#o.mediaDir, { recursive: true })
    await this.#manifest.heartbeat()
    this.#lastHeartbeat = this.#clock.now()
    const cut = await this.#manifest.sweepOrphans(this.#o.soleProcess ? 0 : STALE_MS)
    for (const taskId of cut) this.#log('warn', `task ${taskId}: recording was cut by a restart`)
    await this.storeLeftovers()
    const listening = []
    for (const ingest of this.#o.ingests) listening.push(await ingest.listen(this))
    if (this.#o.pollIntervalMs > 0) {
      this.#timer = setInterval(() => void this.poll(), this.#o.pollIntervalMs)
    }
    return listening
  }

  /** Resolves once the work under way (segment closes and stores, signals to the engine) is done. */
  async idle(): Promise<void> {
    await this.#drain()
  }

  /** Stops taking new publishers; those connected keep recording (a graceful drain). */
  async stopAccepting(): Promise<void> {
    for (const ingest of this.#o.ingests) await ingest.stopAccepting()
  }

  /** Publishers connected to this process, in all. */
  get publishers(): number {
    return this.#o.ingests.reduce((n, i) => n + i.publishers, 0)
  }

  /** What metrics report of this process's media. */
  stats(): { recordingProcesses: number; publishers: Record<string, number> } {
    let recordingProcesses = 0
    for (const task of this.#tasks.values())
      for (const s of task.streams) if (s.writer) recordingProcesses++
    return {
      recordingProcesses,
      publishers: Object.fromEntries(this.#o.ingests.map((i) => [i.name, i.publishers])),
    }
  }

  /**
   * Ends every publish and closes its segments. `graceful`: an operator's
   * restart (after a drain), which counts no exception: the time until the
   * publisher reconnects elsewhere is padded like any absence.
   */
  async close(options: { graceful?: boolean } = {}): Promise<void> {
    this.#closed = true
    this.#graceful = options.graceful === true
    clearInterval(this.#timer)
    while (this.#polling) await new Promise((r) => setTimeout(r, 10))
    for (const ingest of this.#o.ingests) await ingest.close()
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
    for (const stream of state.streams) if (stream.writer === undefined) this.#want(stream)
    for (const stream of [...this.#waiting]) {
      if (matches(state, stream.identity)) this.#attach(stream, state)
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
    for (const stream of state.streams) this.#want(stream)
  }

  async stop(taskId: string): Promise<void> {
    const state = this.#tasks.get(taskId)
    if (state === undefined) return
    this.#endTask(state)
    await this.#settleHere(taskId)
  }

  async finish(task: FinishSpec, progress?: Progress, lease?: JobLease): Promise<RecordingResult> {
    return this.#o.post.finish(task, progress, lease)
  }

  async partial(task: FinishSpec): Promise<RecordingResult> {
    return this.#o.post.partial(task)
  }

  // ---- IngestHandler ----------------------------------------------------------------

  authorize(identity: PublisherIdentity, userSig: string): Promise<Authorization> {
    return this.#o.authorizer.authorize(identity.sdkAppId, identity.userId, userSig)
  }

  publish(publisher: Publisher): void {
    const identity = publisher.identity
    const stream: LiveStream = {
      publisher,
      identity,
      streamId: streamIdOf(identity),
      videoType: identity.kind === 'aux' ? 1 : 0,
      sawVideo: false,
      task: undefined,
      audio: true,
      writer: undefined,
      writing: undefined,
      segment: undefined,
      wantOpen: false,
      closed: false,
    }
    publisher.onTracks = (tracks) => this.#onTracks(stream, tracks)
    publisher.onUnit = (unit) => this.#onUnit(stream, unit)
    publisher.onClose = (reason, detail) => this.#onClose(stream, reason, detail)
    // The same user's same stream through another ingest (RTMP, then WHIP): the newer wins, as in TRTC.
    const key = liveKeyOf(identity)
    const older = this.#live.get(key)
    this.#live.set(key, stream)
    if (older !== undefined && !older.closed) older.publisher.kick('replaced')
    const local = [...this.#tasks.values()].find((t) => matches(t, identity))
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
    if (stream.identity.userId === state.recordUserId || !policy.record) {
      this.#log('info', `task ${state.taskId}: not recording ${stream.streamId}`)
      return
    }
    stream.task = state
    stream.audio = policy.audio
    state.streams.add(stream)
    if (state.status === 'RECORDING') this.#want(stream)
    this.#log('info', `task ${state.taskId}: stream ${stream.streamId} joined`)
  }

  /** The stream should be recorded from its next key frame: ask the publisher for one. */
  #want(stream: LiveStream): void {
    if (stream.closed || stream.writer !== undefined) return
    stream.wantOpen = true
    stream.publisher.requestKeyFrame()
  }

  #onTracks(stream: LiveStream, tracks: Tracks): void {
    if (tracks.video) stream.sawVideo = true
    // New codec parameters (a new resolution, say) cannot go on in the same file.
    if (
      stream.writer &&
      stream.writing &&
      !sameTracks(stream.writing, this.#tracksFor(stream, tracks))
    ) {
      this.#closeSegment(stream, 'codec-change')
      if (stream.task?.status === 'RECORDING') this.#want(stream)
    }
  }

  /** The tracks a segment of this stream records: audio left out when RecordControl says so. */
  #tracksFor(stream: LiveStream, tracks: Tracks): Tracks {
    return stream.audio ? tracks : { video: tracks.video }
  }

  #onUnit(stream: LiveStream, unit: AccessUnit): void {
    if (unit.type === 'video') stream.sawVideo = true
    const state = stream.task
    if (state === undefined || state.status !== 'RECORDING') return
    const now = this.#clock.now()
    if (now - state.activitySentMs >= state.activityEveryMs && state.signals) {
      state.activitySentMs = now
      this.#track(state.signals.activity(state.taskId))
    }
    if (stream.writer) {
      stream.writer.write(unit)
      return
    }
    if (!stream.wantOpen) return
    const tracks = this.#tracksFor(stream, stream.publisher.tracks)
    // A segment starts on a key frame; an audio-only stream on any audio unit.
    const starts =
      unit.type === 'video'
        ? unit.key && tracks.video !== undefined
        : !stream.sawVideo && tracks.video === undefined && tracks.audio !== undefined
    if (starts) this.#openSegment(stream, state, unit, tracks)
  }

  #openSegment(stream: LiveStream, state: TaskState, first: AccessUnit, tracks: Tracks): void {
    stream.wantOpen = false
    const segmentId = randomBytes(12).toString('hex')
    const key = segmentKey(state.taskId, segmentId)
    const dir = join('segments', state.taskId)
    const startMs = this.#clock.now()
    try {
      // Synchronous, and once per task: the recording process opens its output right away.
      if (!this.#dirs.has(dir)) {
        mkdirSync(join(this.#o.mediaDir, dir), { recursive: true })
        this.#dirs.add(dir)
      }
    } catch (error) {
      this.#fail(state, `cannot record: ${(error as Error).message}`)
      return
    }
    const writer: SegmentSink = this.#o.openSegment({
      file: join(this.#o.mediaDir, key),
      tracks,
      first,
      onFault: (message) => this.#onFault(stream, writer, message),
      onFull: () => stream.publisher.pause(),
      onDrain: () => stream.publisher.resume(),
    })
    const opened = this.#manifest.openSegment({
      segmentId,
      taskId: state.taskId,
      streamId: stream.streamId,
      userId: stream.identity.userId,
      videoType: stream.videoType,
      file: key,
      startMs,
    })
    this.#track(opened)
    stream.writer = writer
    stream.writing = tracks
    stream.segment = { id: segmentId, startMs, opened }
    this.#log('debug', `task ${state.taskId}: segment ${segmentId} of ${stream.streamId}`)
  }

  /** Closes the stream's current segment (if any) and stores it; tracked on the task. */
  #closeSegment(stream: LiveStream, reason: SegmentEndReason): void {
    const writer = stream.writer
    const segment = stream.segment
    const state = stream.task
    stream.writer = undefined
    stream.writing = undefined
    stream.segment = undefined
    stream.wantOpen = false
    if (writer === undefined || segment === undefined || state === undefined) return
    const endMs = this.#clock.now()
    this.#closingSegments.add(segment.id)
    const done = (async () => {
      await segment.opened.catch(() => {})
      await writer.close()
      try {
        await this.#manifest.closeSegment(segment.id, endMs, reason)
      } catch (error) {
        // Written by the sweep of this process's own segments once the store takes it.
        this.#unrecorded.set(segment.id, { endMs, reason })
        throw error
      }
      await this.#store(state.taskId, segment.id)
    })()
      .catch((error: Error) =>
        this.#log('error', `task ${state.taskId}: closing a segment failed: ${error.message}`),
      )
      .finally(() => this.#closingSegments.delete(segment.id))
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

  /** Stores a closed segment; a failure is logged and retried with the leftovers. */
  async #store(taskId: string, segmentId: string): Promise<void> {
    const key = segmentKey(taskId, segmentId)
    const file = join(this.#o.mediaDir, key)
    try {
      await this.#o.storage.put(key, file, 'video/x-matroska')
      await this.#manifest.markStored(segmentId, key)
      // Uploaded elsewhere: the task's local directory goes once the task has ended and it is empty.
      if (this.#o.storage.kind !== 'local' && !this.#tasks.has(taskId)) {
        await rmdir(dirname(file)).catch(() => {})
      }
    } catch (error) {
      this.#log(
        'warn',
        `task ${taskId}: segment ${segmentId} could not be stored yet: ${(error as Error).message}`,
      )
    }
  }

  /**
   * Segments in this process's directory that are not in storage: stored
   * (after a crash or a failed upload), or removed when nothing needs them.
   */
  async storeLeftovers(): Promise<void> {
    this.#lastLeftovers = this.#clock.now()
    const root = join(this.#o.mediaDir, 'segments')
    const found = new Map<string, string>()
    let tasks: string[] = []
    try {
      tasks = readdirSync(root)
    } catch {
      return
    }
    for (const task of tasks) {
      let files: string[] = []
      try {
        files = readdirSync(join(root, task))
      } catch {
        continue
      }
      for (const f of files) {
        const m = /^([0-9a-f]{24})\.mkv$/.exec(f)
        if (m) found.set(m[1] as string, join(root, task, f))
      }
    }
    if (found.size === 0) return
    const open = new Set(
      [...this.#tasks.values()]
        .flatMap((t) => [...t.streams])
        .flatMap((s) => (s.segment ? [s.segment.id] : [])),
    )
    for (const row of await this.#manifest.segmentsById([...found.keys()])) {
      found.delete(row.segmentId)
      if (open.has(row.segmentId) || this.#closing.has(row.taskId)) continue
      if (row.storageKey !== null || row.taskStatus === 'FINISHED') {
        // Stored elsewhere already (S3), or no longer needed.
        if (this.#o.storage.kind !== 'local' || row.taskStatus === 'FINISHED')
          await rm(join(this.#o.mediaDir, row.file), { force: true })
        continue
      }
      this.#log(
        'info',
        `task ${row.taskId}: storing segment ${row.segmentId} left by an earlier run`,
      )
      await this.#store(row.taskId, row.segmentId)
    }
    // Files the manifest never heard of (the row's insert was lost with a crash).
    for (const file of found.values()) await rm(file, { force: true })
  }

  #onFault(stream: LiveStream, writer: SegmentSink, message: string): void {
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
    if (state.status === 'RECORDING') this.#want(stream)
  }

  #fail(state: TaskState, message: string): void {
    if (!this.#tasks.has(state.taskId)) return
    this.#endTask(state)
    if (state.signals) this.#track(state.signals.failed(state.taskId, message))
  }

  #onClose(stream: LiveStream, reason: CloseReason, detail?: string): void {
    stream.closed = true
    const key = liveKeyOf(stream.identity)
    if (this.#live.get(key) === stream) this.#live.delete(key)
    this.#waiting.delete(stream)
    const state = stream.task
    if (reason === 'refused') {
      const message = `${stream.streamId} was refused: ${detail ?? 'its media cannot be recorded'}`
      this.#log('warn', `room ${stream.identity.room}: ${message}`)
      // Counted on the room's task, whether or not the stream was matched to it yet.
      this.#track(this.#countOnRoomTask(stream, state, message))
    }
    if (state === undefined) return
    const recording = stream.writer !== undefined
    this.#closeSegment(stream, CLOSE_REASONS[reason])
    state.streams.delete(stream)
    stream.task = undefined
    if ((reason === 'dropped' || reason === 'failed') && state.signals) {
      this.#track(state.signals.interrupted(state.taskId, stream.streamId))
    }
    // One exception per task for one failure of an ingest, however many of its streams it ended.
    const now = this.#clock.now()
    if (
      reason === 'failed' &&
      recording &&
      state.signals &&
      now - (this.#ingestFailedAt.get(state) ?? Number.NEGATIVE_INFINITY) > FAILURE_DEDUP_MS
    ) {
      this.#ingestFailedAt.set(state, now)
      this.#track(
        state.signals.exception(
          state.taskId,
          `${stream.streamId}: ${detail ?? 'the ingest failed'}`,
        ),
      )
    }
    // A shutdown cuts the recording: once per task, like a crash would;
    // not a graceful one, which the publisher moves away from.
    if (
      reason === 'kicked' &&
      recording &&
      !this.#graceful &&
      state.signals &&
      !this.#cutByShutdown.has(state)
    ) {
      this.#cutByShutdown.add(state)
      this.#track(state.signals.exception(state.taskId, 'the service shut down'))
    }
    this.#log('info', `task ${state.taskId}: stream ${stream.streamId} left (${reason})`)
  }

  /** An exception (with its reason) on the task recording the stream's room, found in the store if need be. */
  async #countOnRoomTask(
    stream: LiveStream,
    state: TaskState | undefined,
    message: string,
  ): Promise<void> {
    const signals = state?.signals ?? this.#signals
    const taskId =
      state?.taskId ??
      (await this.#manifest.activeTaskForRoom(stream.identity.sdkAppId, stream.identity.room))
        ?.taskId
    if (taskId !== undefined && signals) await signals.exception(taskId, message, stream.streamId)
  }

  /**
   * The process did not run for `ms` (the host paused it, it was swapped
   * out, something held its thread): what its ingests and recording
   * processes were to be handed meanwhile may be missing, so every task it
   * records counts an exception saying so.
   */
  stalled(ms: number): void {
    const message = `the service's process stalled for ${(ms / 1000).toFixed(1)} s while recording: media of that time may be missing`
    this.#log('warn', message)
    for (const state of this.#tasks.values()) {
      if (state.status !== 'RECORDING' || !state.signals) continue
      if (![...state.streams].some((s) => s.writer !== undefined)) continue
      this.#track(state.signals.exception(state.taskId, message))
    }
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

  /** Waits until the task's segment closes in this process are written and stored. */
  async #settleHere(taskId: string): Promise<void> {
    for (;;) {
      const closing = this.#closing.get(taskId)
      if (closing === undefined || closing.size === 0) break
      await Promise.all([...closing])
    }
  }

  // ---- polling --------------------------------------------------------------------------

  /** One pass: heartbeat and sweep, state changes made elsewhere, waiting publishers, upkeep. */
  async poll(): Promise<void> {
    if (this.#polling || this.#closed) return
    this.#polling = true
    try {
      const now = this.#clock.now()
      if (now - this.#lastHeartbeat >= HEARTBEAT_MS) {
        this.#lastHeartbeat = now
        await this.#manifest.heartbeat()
        const cut = await this.#manifest.sweepOrphans(STALE_MS)
        for (const taskId of cut) this.#log('warn', `task ${taskId}: recording was cut by a crash`)
        await this.#sweepOwn()
      }
      await this.#refreshTasks()
      if (this.#waiting.size > 0) await this.#matchWaiting([...this.#waiting])
      if (now - this.#lastLeftovers >= LEFTOVER_MS) await this.storeLeftovers()
      const retention = this.#o.retentionMs ?? 0
      if (retention > 0 && now - this.#lastRetention >= 60_000) {
        this.#lastRetention = now
        await this.#o.post.expire(now - retention)
      }
    } catch (error) {
      this.#log('error', `media poll failed: ${(error as Error).message}`)
    } finally {
      this.#polling = false
    }
  }

  /**
   * Segments of this process that the store still has open though none is
   * being written or closed here: their close could not be written (a store
   * that failed, a full disk). Closed now, at the time they ended when it is
   * known, so that their task is not held STOPPED waiting for them (no other
   * process sweeps a live process's segments).
   */
  async #sweepOwn(): Promise<void> {
    const open = new Set<string>()
    for (const state of this.#tasks.values())
      for (const s of state.streams) if (s.segment) open.add(s.segment.id)
    for (const row of await this.#manifest.openHere()) {
      if (open.has(row.segmentId) || this.#closingSegments.has(row.segmentId)) continue
      const ended = this.#unrecorded.get(row.segmentId)
      await this.#manifest.closeSegment(
        row.segmentId,
        ended?.endMs ?? Math.max(row.startMs, this.#clock.now()),
        ended?.reason ?? 'fault',
      )
      this.#unrecorded.delete(row.segmentId)
      this.#log('warn', `task ${row.taskId}: segment ${row.segmentId}: its end written late`)
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
      const key = `${s.identity.sdkAppId}/${s.identity.room}`
      rooms.set(key, [...(rooms.get(key) ?? []), s])
    }
    for (const group of rooms.values()) {
      const first = group[0] as LiveStream
      const found = await this.#manifest.activeTaskForRoom(
        first.identity.sdkAppId,
        first.identity.room,
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

const CLOSE_REASONS: Record<CloseReason, SegmentEndReason> = {
  unpublished: 'leave',
  dropped: 'drop',
  replaced: 'replaced',
  kicked: 'shutdown',
  refused: 'leave',
  failed: 'fault',
}

/** Streams an ingest's failure ends within this count as one exception of their task. */
const FAILURE_DEDUP_MS = 10_000

function matches(state: TaskState, identity: PublisherIdentity): boolean {
  return state.sdkAppId === identity.sdkAppId && state.room === identity.room
}
