// The replay timeline: recording time with the paused spans taken out. Every
// VideoPlayTime and OmittedDuration.VideoTime is a position on it, and
// TotalTime is its length.
import type { OmittedDuration } from '@online-record/protocol'

export interface Timeline {
  /** Unix ms when recording began. */
  startMs: number
  /** Unix ms when it stopped. */
  stopMs: number
  /** Paused spans in order; a pause still open at the stop ends at the stop. */
  pauses: readonly { pauseMs: number; resumeMs: number }[]
}

/** Position (ms) on the replay timeline of wall-clock `wallMs`; a time inside a pause maps to the pause. */
export function replayTime(t: Timeline, wallMs: number): number {
  const at = Math.min(Math.max(wallMs, t.startMs), t.stopMs)
  let paused = 0
  for (const p of t.pauses) {
    if (p.pauseMs >= at) break
    paused += Math.min(p.resumeMs, at) - p.pauseMs
  }
  return Math.round(at - t.startMs - paused)
}

/** Length of the replay timeline, ms: TotalTime. */
export function totalTime(t: Timeline): number {
  return replayTime(t, t.stopMs)
}

/**
 * One OmittedDuration per pause that recording resumed from: VideoTime is the
 * pause's position on the replay timeline (in a spliced video that starts at
 * VideoPlayTime P, the cut is at VideoTime − P). A pause that lasted until the
 * stop cut nothing out of the middle and is not listed.
 */
export function omittedDurations(t: Timeline): OmittedDuration[] {
  return t.pauses
    .filter((p) => p.resumeMs < t.stopMs && p.pauseMs >= t.startMs)
    .map((p) => ({
      VideoTime: replayTime(t, p.pauseMs),
      PauseTime: p.pauseMs,
      ResumeTime: p.resumeMs,
    }))
}
