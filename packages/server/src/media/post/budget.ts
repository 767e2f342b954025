// What a post-processing ffmpeg run may cost. Before each run its work is
// estimated from what it will do — pictures made (the canvas encoded and the
// rectangles composed on it), pictures decoded, audio, stream copy — all of
// which grow with the media's length; its CPU budget is a multiple of that
// estimate (never below a floor for start-up), counted as the run's own CPU
// time (/proc), plus a wall-clock backstop for a run that waits instead of
// working. A run over its budget is killed; the stage counts it as a problem
// of the task and the other videos are kept.
import type { ChildProcess } from 'node:child_process'
import type { Budget } from '../../proc/children.ts'
import type { FfmpegCommand } from '../ffmpeg/command.ts'
import { type MediaTools, runTool } from '../ffmpeg/ffmpeg-tools.ts'
import { fpsValue, type MediaInfo } from '../ffmpeg/probe.ts'

/** The work of one run, in the units its CPU cost was measured in. */
export interface Work {
  /** Megapixels made: every output frame's pixels, and in a mix the rectangles' pixels composed on them. */
  madeMpx: number
  /** Megapixels decoded: every input frame's pixels. */
  decodedMpx: number
  /** Seconds of audio decoded, resampled, mixed or encoded. */
  audioS: number
  /** Seconds of media copied as it is (remux, concatenation). */
  copiedS: number
  /** Files read (each is opened, probed and given a decoder). */
  inputs: number
}

/**
 * CPU ms per unit of work, measured with ffmpeg 5.1 on the project's 2-core
 * test machine (AMD EPYC): x264 veryfast at 1624x1000 with overlays 4–6 ms
 * per megapixel made, H.264 decoding 1.6–1.8 ms per megapixel (one thread,
 * no loop filter), AAC/MP3 4–12 ms per second of audio, stream copy about
 * 4 ms per second of media; a ModelId 2 mix of a board and two 720p30
 * cameras came to 19 CPU-s per media minute against an estimate of 26.
 */
export const COST = {
  madeMsPerMpx: 5,
  decodedMsPerMpx: 2,
  audioMsPerS: 12,
  copiedMsPerS: 4,
  inputMs: 100,
  runMs: 200,
} as const

export interface BudgetSettings {
  /** A run may use this many times its estimated CPU time. */
  factor: number
  /** …and never less than this (ms): a short run's start-up dominates its work. */
  minCpuMs: number
}

export const DEFAULT_BUDGET_SETTINGS: BudgetSettings = { factor: 8, minCpuMs: 30_000 }

/** The wall-clock backstop: this plus twice the CPU budget. */
const WALL_BASE_MS = 10 * 60_000

export const NO_WORK: Work = { madeMpx: 0, decodedMpx: 0, audioS: 0, copiedS: 0, inputs: 0 }

/** The sum of several works (a run's parts). */
export function addWork(...works: Partial<Work>[]): Work {
  const sum = { ...NO_WORK }
  for (const w of works) {
    sum.madeMpx += w.madeMpx ?? 0
    sum.decodedMpx += w.decodedMpx ?? 0
    sum.audioS += w.audioS ?? 0
    sum.copiedS += w.copiedS ?? 0
    sum.inputs += w.inputs ?? 0
  }
  return sum
}

/** Estimated CPU time of `work`, ms. */
export function estimateMs(work: Work): number {
  return Math.round(
    COST.runMs +
      work.inputs * COST.inputMs +
      work.madeMpx * COST.madeMsPerMpx +
      work.decodedMpx * COST.decodedMsPerMpx +
      work.audioS * COST.audioMsPerS +
      work.copiedS * COST.copiedMsPerS,
  )
}

/** The budget of a run doing `work`: its estimate, its CPU budget and its wall-clock backstop. */
export function budgetFor(work: Work, settings: BudgetSettings): Budget & { estimateMs: number } {
  const estimate = estimateMs(work)
  const cpuMs = Math.max(settings.minCpuMs, Math.round(settings.factor * estimate))
  return { estimateMs: estimate, cpuMs, wallMs: WALL_BASE_MS + 2 * cpuMs }
}

/** One line for the log: what a run is estimated to do and may use. */
export function describeBudget(work: Work, budget: Budget & { estimateMs: number }): string {
  const s = (ms: number) => (ms / 1000).toFixed(1)
  return `estimate ${Math.round(work.madeMpx)} Mpx made, ${Math.round(work.decodedMpx)} Mpx decoded, ${Math.round(work.audioS)} s audio, ${Math.round(work.copiedS)} s copied: ${s(budget.estimateMs)} CPU-s; budget ${s(budget.cpuMs ?? 0)} CPU-s, ${s(budget.wallMs ?? 0)} s wall-clock`
}

/** Decoding a whole file: its pictures and its audio. */
export function decoding(info: MediaInfo): Work {
  const seconds = info.durationMs / 1000
  const v = info.video
  return addWork({
    inputs: 1,
    decodedMpx: v ? (v.width * v.height * fpsValue(v.fps) * seconds) / 1e6 : 0,
    audioS: info.audio ? seconds : 0,
  })
}

/** Encoding `seconds` of `width`x`height` pictures at `fps`. */
export function encoding(width: number, height: number, fps: number, seconds: number): Work {
  return addWork({ madeMpx: (width * height * fps * seconds) / 1e6 })
}

/** How post-processing runs ffmpeg: for the job (its signal), each run within the budget of its work. */
export interface FfmpegRun {
  tools: MediaTools
  budget: BudgetSettings
  /** Aborted when the job is no longer this process's: the run is killed. */
  signal: AbortSignal
  /** Told of every run's estimate and budget (debug logging). */
  onBudget?: (line: string) => void
}

/** Runs `command`, killed past the budget of `work` (BudgetExceeded) or when the job's signal aborts. */
export async function runFfmpeg(
  run: FfmpegRun,
  command: FfmpegCommand,
  work: Work,
  onSpawn?: (child: ChildProcess) => void,
): Promise<void> {
  const budget = budgetFor(work, run.budget)
  run.onBudget?.(describeBudget(work, budget))
  await runTool(run.tools.ffmpeg, command.args(), {
    budget,
    signal: run.signal,
    ...(onSpawn ? { onSpawn } : {}),
  })
}

/** Rethrows `error` when the run was stopped for the job (its lease lost), not by its own fault. */
export function rethrowIfAborted(signal: AbortSignal, error: unknown): void {
  if (signal.aborted) throw signal.reason ?? error
}
