// The engine's edges toward the media plane. The media issue supplies the real
// recorder; until then the service runs with SignalingOnlyRecorder.
import type { OmittedDuration, StartOnlineRecordRequest, VideoInfo } from '@online-record/protocol'

export interface TaskSpec {
  taskId: string
  sdkAppId: number
  request: StartOnlineRecordRequest
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
}

export interface RecorderPort {
  start(task: TaskSpec, signals: RecorderSignals): Promise<void>
  pause(taskId: string): Promise<void>
  resume(taskId: string): Promise<void>
  /** Stops capture. Called once the task is STOPPED. */
  stop(taskId: string): Promise<void>
  /** Post-processes and stores the results; must be safe to call again after a crash. */
  finish(task: TaskSpec): Promise<RecordingResult>
}

/**
 * The recorder the service has until the media plane lands: it joins nothing,
 * records nothing, reports readiness at once and finishes with no videos.
 * The task lifecycle, timers and callbacks are real; the media is not.
 */
export class SignalingOnlyRecorder implements RecorderPort {
  async start(task: TaskSpec, signals: RecorderSignals): Promise<void> {
    await signals.ready(task.taskId)
  }
  async pause(): Promise<void> {}
  async resume(): Promise<void> {}
  async stop(): Promise<void> {}
  async finish(): Promise<RecordingResult> {
    return { videoInfos: [], omittedDurations: [] }
  }
}
