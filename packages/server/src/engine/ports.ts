// The engine's edges toward the media plane: the service runs the media
// recorder (media/recorder.ts); SignalingOnlyRecorder serves engine tests.
import type { OmittedDuration, StartOnlineRecordRequest, VideoInfo } from '@online-record/protocol'

export interface TaskSpec {
  taskId: string
  sdkAppId: number
  request: StartOnlineRecordRequest
}

/** A stopped task as post-processing needs it: its request and its timeline. */
export interface FinishSpec extends TaskSpec {
  /** When recording began (Unix ms); null if it never did. */
  recordStartMs: number | null
  recordStopMs: number | null
  /** Paused spans, in order; a pause still open at the stop ends at the stop. */
  pauses: { pauseMs: number; resumeMs: number }[]
}

/** What post-processing produced. */
export interface RecordingResult {
  videoInfos: VideoInfo[]
  omittedDurations: OmittedDuration[]
  /** Length of the replay timeline in ms; when absent, recording time minus paused time. */
  totalTimeMs?: number
  exceptionCnt?: number
}

/** Calls a recorder makes back into the engine. */
export interface RecorderSignals {
  /** Media is being recorded: the task turns RECORDING and OnlineRecordStarted is sent. */
  ready(taskId: string): Promise<void>
  /** The recording cannot go on: the task ends with EXCEPTION. */
  failed(taskId: string, message: string): Promise<void>
  /** A publisher sent media (or a whiteboard operation came): resets the idle auto-stop. */
  activity(taskId: string): Promise<void>
  /**
   * Something of the recording was lost or may have been (a recording process
   * died, a restart, a refused publisher, a stall): ExceptionCnt + 1, and the
   * reason in the task's problems, for the operator.
   */
  exception(taskId: string, message: string, streamId?: string): Promise<void>
  /** A publisher's stream dropped while recording: its count in Interrupts + 1. */
  interrupted(taskId: string, userId: string): Promise<void>
}

/** Problems (what a task could not record or keep) kept per task at most; later ones are counted, not kept (the logs have them). */
export const MAX_PROBLEMS = 50

/** Post-processing's progress: the stage running and the fraction of all stages done (0–1). */
export type Progress = (stage: string, fraction: number) => void

/**
 * The lease of the post-processing job a finish runs under. A job taken over
 * by another process (its lease lost) must have one writer only: this run's
 * children are killed (`signal`) and it stores nothing more (`hold`).
 */
export interface JobLease {
  /** Aborted, with a LeaseLost, once the lease is lost. */
  readonly signal: AbortSignal
  /** The job's attempt this run is: the fencing token its writes are checked against. */
  readonly attempts: number
  /** Throws LeaseLost unless the job is still this run's; called before each output is stored. */
  hold(): Promise<void>
}

/** The job's lease was lost (another process may have taken it): this run stops and stores nothing. */
export class LeaseLost extends Error {
  override name = 'LeaseLost'
  constructor(taskId: string, why: string) {
    super(`post-processing of task ${taskId} stopped: ${why}`)
  }
}

export interface RecorderPort {
  /**
   * The recorder is ready the moment a task starts (it records whoever
   * publishes, from then on): the engine writes the task as RECORDING, with
   * OnlineRecordStarted, in the start's own statement, and `start` need not
   * call `ready`. Otherwise the task is PREPARED until `ready`.
   */
  readonly readyAtStart?: boolean
  start(task: TaskSpec, signals: RecorderSignals): Promise<void>
  pause(taskId: string): Promise<void>
  resume(taskId: string): Promise<void>
  /** Stops capture. Called once the task is STOPPED. */
  stop(taskId: string): Promise<void>
  /**
   * Post-processes and stores the results; must be safe to call again after a
   * crash. May throw an error with a `retryMs` to be called again later (not
   * ready yet: another process still stores the task's media).
   */
  finish(task: FinishSpec, progress?: Progress, lease?: JobLease): Promise<RecordingResult>
  /** What was stored so far, for a task whose post-processing gave up. */
  partial?(task: FinishSpec): Promise<RecordingResult>
}

/**
 * A recorder for engine tests: it joins nothing, records nothing and
 * finishes with no videos. Ready at start, or (with `readyAtStart: false`)
 * by calling `ready` from `start`, as a recorder that must join first would.
 */
export class SignalingOnlyRecorder implements RecorderPort {
  readonly readyAtStart: boolean

  constructor(options: { readyAtStart?: boolean } = {}) {
    this.readyAtStart = options.readyAtStart ?? true
  }

  async start(task: TaskSpec, signals: RecorderSignals): Promise<void> {
    if (!this.readyAtStart) await signals.ready(task.taskId)
  }
  async pause(): Promise<void> {}
  async resume(): Promise<void> {}
  async stop(): Promise<void> {}
  async finish(): Promise<RecordingResult> {
    return { videoInfos: [], omittedDurations: [] }
  }
}
