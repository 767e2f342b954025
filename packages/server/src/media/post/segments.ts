// Before any stage runs: every segment of the task, from the manifest and
// object storage, made readable and placed on the replay timeline. A task is
// not ready while a live process still writes or stores one of its segments.
// A segment that cannot be read is repaired (remuxed) if it can be; one that
// cannot, or that a dead process never stored, is counted as lost, with its
// span, instead of being left out silently.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Manifest, SegmentRow, TaskProblem } from '../capture/manifest.ts'
import { FfmpegCommand } from '../ffmpeg/command.ts'
import { BudgetExceeded } from '../ffmpeg/ffmpeg-tools.ts'
import { type MediaInfo, probe } from '../ffmpeg/probe.ts'
import type { ObjectStorage } from '../storage/object-storage.ts'
import { type FfmpegRun, rethrowIfAborted, runFfmpeg } from './budget.ts'
import type { Part } from './splice.ts'
import { replayTime, type Timeline } from './timeline.ts'

/** The task cannot be post-processed yet; try again after `retryMs`. */
export class NotReady extends Error {
  override name = 'NotReady'
  readonly retryMs: number
  constructor(message: string, retryMs: number) {
    super(message)
    this.retryMs = retryMs
  }
}

export interface PreparedStream {
  streamId: string
  videoType: number
  /** Readable parts in timeline order, each with its segment row. */
  parts: { segment: SegmentRow; part: Part }[]
}

export interface Prepared {
  /** Every segment's row (readable or not), in start order. */
  segments: SegmentRow[]
  streams: Map<string, PreparedStream>
  /** What was lost, for the task's record; each counts one in ExceptionCnt. */
  problems: TaskProblem[]
}

/** What segments are prepared with; repairs are ffmpeg runs of the job (FfmpegRun). */
export interface PrepareOptions extends FfmpegRun {
  manifest: Manifest
  storage: ObjectStorage
  /** This process's media directory (segments of older versions are read from it). */
  mediaDir: string
  /** Where fetched and repaired segments go. */
  work: string
  nowMs: number
  /** A heartbeat older than this: the process is gone. */
  staleMs: number
  /**
   * How long after the stop a segment a dead process never stored is waited
   * for (that process may come back and store it); then it is lost. 0 where
   * no other process can (PGlite).
   */
  lostAfterMs: number
  log: (message: string) => void
}

const REPAIR_REASONS = new Set(['fault', 'crash'])

export async function prepareSegments(
  taskId: string,
  timeline: Timeline,
  o: PrepareOptions,
): Promise<Prepared> {
  const segments = await o.manifest.segments(taskId)
  const live = await o.manifest.liveInstances(o.staleMs)
  live.add(o.manifest.instanceId)
  const problems: TaskProblem[] = []
  const lost = (segment: SegmentRow, why: string) => {
    const lostMs = Math.max(0, (segment.endMs ?? timeline.stopMs) - segment.startMs)
    o.log(`task ${taskId}: segment ${segment.segmentId} of ${segment.streamId} is lost: ${why}`)
    problems.push({
      atMs: o.nowMs,
      streamId: segment.streamId,
      message: `a segment is lost: ${why}`,
      lostMs,
    })
  }
  const waited = o.nowMs - timeline.stopMs >= o.lostAfterMs
  for (const s of segments) {
    if (s.endMs === null) throw new NotReady(`segment ${s.segmentId} is still being written`, 500)
    const stored = s.storageKey !== null || s.format === 'mp4'
    if (!stored && (live.has(s.instanceId) || !waited)) {
      throw new NotReady(`segment ${s.segmentId} is not stored yet`, 1000)
    }
  }
  await mkdir(o.work, { recursive: true })
  const prepared = await Promise.all(
    segments.map(async (segment) => {
      const path = await locate(segment, o)
      if (path === undefined) {
        lost(segment, 'its process ended before storing it')
        return undefined
      }
      const info = await readable(taskId, segment, path, o)
      if (typeof info === 'string') {
        lost(segment, info)
        return undefined
      }
      return { segment, part: { ...info, at: replayTime(timeline, segment.startMs) } }
    }),
  )
  const streams = new Map<string, PreparedStream>()
  for (const p of prepared) {
    if (p === undefined) continue
    let stream = streams.get(p.segment.streamId)
    if (stream === undefined) {
      stream = { streamId: p.segment.streamId, videoType: p.segment.videoType, parts: [] }
      streams.set(p.segment.streamId, stream)
    }
    stream.parts.push(p)
  }
  return { segments, streams, problems }
}

/**
 * A local path with the segment's bytes, or undefined when storage says they
 * are gone. Any other failure (a network, a full disk) is thrown: the attempt
 * fails and is tried again, nothing is counted lost for it.
 */
async function locate(segment: SegmentRow, o: PrepareOptions): Promise<string | undefined> {
  if (segment.storageKey !== null) {
    try {
      return await o.storage.fetch(segment.storageKey, join(o.work, 'segments'))
    } catch (error) {
      if (!isMissing(error)) throw error
      o.log(`segment ${segment.segmentId}: ${(error as Error).message}`)
      return undefined
    }
  }
  // A segment of an older version: in the data directory of the process that wrote it.
  const local = join(o.mediaDir, segment.file)
  return existsSync(local) ? local : undefined
}

/**
 * The segment's file and probe, remuxed first when it was cut or does not
 * probe whole; or why it cannot be used.
 */
async function readable(
  taskId: string,
  segment: SegmentRow,
  path: string,
  o: PrepareOptions,
): Promise<{ path: string; info: MediaInfo } | string> {
  const unreadable = 'it cannot be read, even remuxed'
  const usable = (info: MediaInfo | undefined) =>
    info !== undefined &&
    info.durationMs > 0 &&
    (info.video !== undefined || info.audio !== undefined)
  if (!REPAIR_REASONS.has(segment.endReason ?? '')) {
    const info = await probe(o.tools.ffprobe, path).catch(() => undefined)
    if (info && usable(info)) return { path, info }
  }
  // Cut by a killed writer, or unreadable as it is: what is there is remuxed.
  const repaired = join(o.work, `${segment.segmentId}-repaired.mkv`)
  const spanS = Math.max(0, (segment.endMs ?? segment.startMs) - segment.startMs) / 1000
  try {
    await runFfmpeg(
      o,
      new FfmpegCommand().input({ url: path }).output({
        url: repaired,
        format: 'matroska',
        maps: ['0:v?', '0:a?'],
        options: ['-c', 'copy'],
      }),
      { inputs: 1, copiedS: spanS, madeMpx: 0, decodedMpx: 0, audioS: 0 },
    )
    const info = await probe(o.tools.ffprobe, repaired)
    if (!usable(info)) return unreadable
    o.log(`task ${taskId}: segment ${segment.segmentId} repaired (${info.durationMs} ms)`)
    return { path: repaired, info }
  } catch (error) {
    rethrowIfAborted(o.signal, error)
    if (error instanceof BudgetExceeded) {
      o.log(`task ${taskId}: segment ${segment.segmentId}: repairing it ${error.message}`)
      return `repairing it ${error.message.replace(/^ffmpeg /, '')}`
    }
    // The machine, not the segment: the attempt fails and is tried again.
    if (
      MACHINE_TROUBLE.test(
        String((error as { stderr?: string }).stderr ?? (error as Error).message),
      )
    )
      throw error
    o.log(`task ${taskId}: segment ${segment.segmentId}: ${(error as Error).message}`)
    return unreadable
  }
}

/** ffmpeg failing because of where it writes, not because of what it reads. */
const MACHINE_TROUBLE =
  /No space left on device|Disk quota exceeded|Read-only file system|Input\/output error|Too many open files|Cannot allocate memory/i

/** Storage answering that the object (or file) does not exist. */
function isMissing(error: unknown): boolean {
  const e = error as { code?: unknown; name?: unknown; $metadata?: { httpStatusCode?: number } }
  return e.code === 'ENOENT' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404
}
