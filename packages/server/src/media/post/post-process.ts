// Post-processing of a stopped task: its segments gathered from storage
// (segments.ts), then stages in order, each producing outputs that are probed,
// stored and recorded as done at once, so a re-run after a crash redoes only
// what was not finished:
//   streams    — one video per stream (Concat: spliced, paused spans cut,
//                absences padded) or per segment (splice.ts)
//   audio      — an mp3 of each video (AudioFileNeeded; audio.ts)
//   whiteboard — the board's video (whiteboard/stage.ts, added by the service)
//   mix        — the class's mixed video (MixStream; mix.ts)
// Every ffmpeg run has a CPU budget from its estimated work (budget.ts); one
// over it is killed and counted among the task's problems (ExceptionCnt + 1)
// with the other videos kept. The job's lease (JobLease) aborts the runs
// when another process takes the job over, and is held before every store.
import { createHmac } from 'node:crypto'
import { rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { VideoInfo } from '@online-record/protocol'
import type { FinishSpec, JobLease, RecordingResult } from '../../engine/ports.ts'
import { fetchLimited } from '../../net/outbound.ts'
import type { AddressPolicy } from '../../net/url-policy.ts'
import type { Manifest, TaskProblem } from '../capture/manifest.ts'
import { BudgetExceeded, type MediaTools } from '../ffmpeg/ffmpeg-tools.ts'
import { type MediaInfo, probe } from '../ffmpeg/probe.ts'
import { type ObjectStorage, recordingKey } from '../storage/object-storage.ts'
import { extractMp3 } from './audio.ts'
import {
  type BudgetSettings,
  DEFAULT_BUDGET_SETTINGS,
  type FfmpegRun,
  rethrowIfAborted,
} from './budget.ts'
import { DEFAULT_MIX_SETTINGS, type MixSettings, MixSlots, mixStage } from './mix.ts'
import { type Prepared, type PreparedStream, prepareSegments } from './segments.ts'
import { remuxPart, splice, spliceItems } from './splice.ts'
import { omittedDurations, type Timeline, totalTime } from './timeline.ts'

const MAX_PAD_IMAGE_BYTES = 20 * 1024 * 1024

export type MediaLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void

export interface PostProcessorOptions {
  manifest: Manifest
  tools: MediaTools
  storage: ObjectStorage
  /** This process's media directory: its `work/` holds each task's work files. */
  mediaDir: string
  log: MediaLog
  /** Which tenant URLs (Concat.Image) may be fetched. */
  urlPolicy: AddressPolicy
  /** A recording process's heartbeat older than this: it is gone. Default 15 s. */
  staleMs?: number
  /** How long a segment a dead process never stored is waited for after the stop. Default 2 min. */
  lostAfterMs?: number
  now?: () => number
  /** The CPU budget of every ffmpeg run, from its estimated work. */
  budget?: Partial<BudgetSettings>
  /** The mix stage's frame rate, slots and threads (and its own budget, over `budget`). */
  mix?: Partial<MixSettings>
  /** Stages between the per-stream videos and the mix (the whiteboard's). */
  stages?: readonly ((post: PostProcessor) => Stage)[]
}

/** How far post-processing of a task has come, for Describe and the operators. */
export type Progress = (stage: string, fraction: number) => void

/** An output made in this run, before it is stored. */
export interface Made {
  key: string
  file: string
  format: 'mp4' | 'mp3'
  userId: string
  videoType: VideoInfo['VideoType']
  playTime: number
  info: MediaInfo
}

/** What every stage gets: the task, its prepared segments, and how to name and keep outputs. */
export interface StageContext {
  spec: FinishSpec
  timeline: Timeline
  prepared: Prepared
  work: string
  /** Outputs stored so far (this run and earlier ones), by output key. */
  done: Map<string, VideoInfo>
  /** Probes, stores and records `made` together (a video and its mp3 are one unit). */
  keep(made: readonly Made[]): Promise<void>
  progress(fraction: number): void
  /** Aborted when the job's lease is lost: stop, and store nothing more. */
  signal: AbortSignal
  /** How the stage runs ffmpeg: each run within the budget of its work, killed by `signal`. */
  run: FfmpegRun
  /**
   * Counts what could not be made (ExceptionCnt + 1, in the task's problems)
   * and logs it; `lostMs` is the replay time it leaves out.
   */
  problem(streamId: string, message: string, lostMs?: number): void
}

export interface Stage {
  readonly name: string
  run(ctx: StageContext): Promise<void>
}

export class PostProcessor {
  readonly #o: PostProcessorOptions
  readonly #stages: Stage[]
  readonly #budget: BudgetSettings
  /** The mixes this process runs at once (MixSettings.concurrency). */
  readonly mixSlots: MixSlots

  constructor(options: PostProcessorOptions) {
    this.#o = options
    this.#budget = { ...DEFAULT_BUDGET_SETTINGS, ...options.budget }
    const mix = {
      ...DEFAULT_MIX_SETTINGS,
      ...options.mix,
      budget: { ...this.#budget, ...options.mix?.budget },
    }
    this.mixSlots = new MixSlots(mix.concurrency, mix.perApp)
    this.#stages = [
      streamsStage(this),
      audioStage(this),
      ...(options.stages ?? []).map((make) => make(this)),
      mixStage(this, mix, this.mixSlots),
    ]
  }

  get tools(): MediaTools {
    return this.#o.tools
  }

  get storage(): ObjectStorage {
    return this.#o.storage
  }

  /** Which tenant URLs may be fetched (Concat.Image, board images). */
  get urlPolicy(): AddressPolicy {
    return this.#o.urlPolicy
  }

  log(level: Parameters<MediaLog>[0], message: string): void {
    this.#o.log(level, message)
  }

  /**
   * Runs every stage of a stopped task and returns its result. Throws
   * NotReady while another process still writes or stores its segments, and
   * the lease's LeaseLost once `lease` is lost (its runs killed, nothing more
   * stored).
   */
  async finish(
    spec: FinishSpec,
    progress: Progress = () => {},
    lease?: JobLease,
  ): Promise<RecordingResult> {
    const { taskId } = spec
    const signal = lease?.signal ?? new AbortController().signal
    const hold = async () => {
      if (lease) await lease.hold()
      else if (signal.aborted) throw signal.reason
    }
    const run: FfmpegRun = {
      tools: this.#o.tools,
      budget: this.#budget,
      signal,
      onBudget: (line) => this.#o.log('debug', `task ${taskId}: ffmpeg: ${line}`),
    }
    if (spec.recordStartMs === null) return { videoInfos: [], omittedDurations: [], totalTimeMs: 0 }
    const now = this.#o.now?.() ?? Date.now()
    const timeline: Timeline = {
      startMs: spec.recordStartMs,
      stopMs: spec.recordStopMs ?? spec.recordStartMs,
      pauses: spec.pauses,
    }
    const work = join(this.#o.mediaDir, 'work', taskId)
    progress('segments', 0)
    const prepared = await prepareSegments(taskId, timeline, {
      ...run,
      manifest: this.#o.manifest,
      storage: this.#o.storage,
      mediaDir: this.#o.mediaDir,
      work,
      nowMs: now,
      staleMs: this.#o.staleMs ?? 15_000,
      lostAfterMs: this.#o.lostAfterMs ?? 120_000,
      log: (m) => this.#o.log('warn', m),
    })
    const started = performance.now()
    const done = await this.#o.manifest.outputs(taskId)
    const key = await this.#o.manifest.mediaKey(taskId)
    const ctx: StageContext = {
      spec,
      timeline,
      prepared,
      work,
      done,
      keep: (made) => this.#keep(taskId, key, made, done, hold),
      progress: () => {},
      signal,
      run,
      problem: (streamId, message, lostMs) => {
        this.#o.log('error', `task ${taskId}: ${streamId}: ${message}; the other videos are kept`)
        prepared.problems.push({
          atMs: this.#o.now?.() ?? Date.now(),
          streamId,
          message: message.slice(0, 500),
          ...(lostMs !== undefined ? { lostMs } : {}),
        })
      },
    }
    for (const [i, stage] of this.#stages.entries()) {
      ctx.progress = (f) =>
        progress(stage.name, (i + Math.min(1, Math.max(0, f))) / this.#stages.length)
      ctx.progress(0)
      await stage.run(ctx)
      // A stage that went on after its runs were killed still ends here.
      if (signal.aborted) throw signal.reason
    }
    // The raw segments and work files go only while the job is still this run's.
    await hold()
    await this.#o.manifest.addProblems(taskId, prepared.problems)
    // Everything is stored: the raw segments and the work files can go.
    await this.#o.manifest.consumeSegments(taskId)
    for (const s of prepared.segments) {
      if (s.storageKey) await this.#o.storage.delete(s.storageKey).catch(() => {})
      else if (s.format === 'mp4') await rm(join(this.#o.mediaDir, s.file), { force: true })
    }
    await rm(work, { recursive: true, force: true })
    const videoInfos = [...done.values()].sort(
      (a, b) =>
        a.VideoPlayTime - b.VideoPlayTime ||
        (a.UserId < b.UserId ? -1 : a.UserId > b.UserId ? 1 : 0) ||
        a.VideoType - b.VideoType,
    )
    if (prepared.segments.length > 0) {
      this.#o.log(
        'info',
        `post-processing task ${taskId}: ${videoInfos.length} file(s) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      )
    }
    return {
      videoInfos,
      omittedDurations: spec.request.Concat?.Enabled ? omittedDurations(timeline) : [],
      totalTimeMs: totalTime(timeline),
      exceptionCnt: prepared.problems.length,
    }
  }

  /** The outputs stored so far: what a task that cannot be finished still reports. */
  async partial(spec: FinishSpec): Promise<RecordingResult> {
    const done = await this.#o.manifest.outputs(spec.taskId)
    return { videoInfos: [...done.values()], omittedDurations: [] }
  }

  /** Deletes outputs older than `beforeMs` from storage (retention). */
  async expire(beforeMs: number): Promise<number> {
    const expired = await this.#o.manifest.expiredOutputs(beforeMs, 500)
    for (const o of expired) {
      await this.#o.storage.delete(o.storageKey)
      await this.#o.manifest.markDeleted(o.taskId, o.outputKey)
    }
    return expired.length
  }

  /**
   * A video, and its mp3 made beside it when the task asks for one
   * (AudioFileNeeded) and it has audio. An mp3 over its budget is counted
   * and the video kept without it.
   */
  async withMp3(ctx: StageContext, video: Made): Promise<Made[]> {
    if (!ctx.spec.request.AudioFileNeeded || !video.info.audio) return [video]
    const mp3 = join(ctx.work, `${video.key}.mp3`)
    try {
      await extractMp3(ctx.run, video.file, mp3, video.info.durationMs)
    } catch (error) {
      rethrowIfAborted(ctx.signal, error)
      if (!(error instanceof BudgetExceeded)) throw error
      ctx.problem(video.userId, `its mp3 was not made: ${error.message}`)
      return [video]
    }
    return [
      video,
      {
        ...video,
        key: `${video.key}.mp3`,
        file: mp3,
        format: 'mp3',
        videoType: 4,
        info: await probe(this.tools.ffprobe, mp3),
      },
    ]
  }

  /** Downloads Concat.Image once per run; undefined (black) when absent or unusable. */
  async padImage(url: string | undefined, work: string): Promise<string | undefined> {
    if (url === undefined) return undefined
    try {
      const { body } = await fetchLimited(url, this.#o.urlPolicy, {
        maxBytes: MAX_PAD_IMAGE_BYTES,
        deadlineMs: 15_000,
      })
      if (body.length === 0) throw new Error('empty')
      const file = join(work, 'pad-image')
      await writeFile(file, body)
      return file
    } catch (error) {
      this.#o.log(
        'warn',
        `Concat.Image ${url} cannot be used, black instead: ${(error as Error).message}`,
      )
      return undefined
    }
  }

  async #keep(
    taskId: string,
    mediaKey: string,
    made: readonly Made[],
    done: Map<string, VideoInfo>,
    hold: () => Promise<void>,
  ): Promise<void> {
    const saved: { key: string; info: VideoInfo; storageKey: string }[] = []
    const now = this.#o.now?.() ?? Date.now()
    for (const m of made) {
      const videoId = videoIdOf(mediaKey, m.key)
      const storageKey = recordingKey(taskId, videoId, m.format)
      const { size } = await stat(m.file)
      // Fencing: a run whose job was taken over stores nothing.
      await hold()
      await this.#o.storage.put(storageKey, m.file, m.format === 'mp4' ? 'video/mp4' : 'audio/mpeg')
      saved.push({
        key: m.key,
        storageKey,
        info: {
          UserId: m.userId,
          VideoDuration: m.info.durationMs,
          VideoFormat: m.format,
          VideoId: videoId,
          VideoPlayTime: m.playTime,
          VideoSize: size,
          VideoType: m.videoType,
          VideoUrl: await this.#o.storage.url(storageKey, now),
          Width: m.info.video?.width ?? 0,
          Height: m.info.video?.height ?? 0,
        },
      })
    }
    await hold()
    await this.#o.manifest.saveOutputs(taskId, saved)
    for (const s of saved) done.set(s.key, s.info)
  }
}

/**
 * A VideoId: 128 bits of an HMAC of the output's key under the task's random
 * media key. The same on a re-run; not computable from a TaskId and a user id.
 */
export function videoIdOf(mediaKey: string, outputKey: string): string {
  return createHmac('sha256', mediaKey).update(outputKey).digest('hex').slice(0, 32)
}

/** One video per stream (Concat) or per segment, each with its mp3 made beside it when asked. */
function streamsStage(post: PostProcessor): Stage {
  return {
    name: 'streams',
    async run(ctx) {
      const concat = ctx.spec.request.Concat?.Enabled === true
      const taskId = ctx.spec.taskId
      const units = [...ctx.prepared.streams.values()].flatMap((stream) =>
        concat ? [{ key: stream.streamId, stream, parts: stream.parts }] : bySegment(stream),
      )
      let padImage: string | undefined | null = null
      for (const [i, unit] of units.entries()) {
        ctx.progress(i / units.length)
        if (ctx.done.has(unit.key)) continue
        post.log(
          'info',
          `post-processing task ${taskId}: ${i + 1}/${units.length} ${unit.stream.streamId} (${unit.parts.length} segment(s))`,
        )
        const file = join(ctx.work, `${unit.key}.mp4`)
        const first = unit.parts[0]
        if (first === undefined) continue
        const items = spliceItems(unit.parts.map((p) => p.part))
        const options = {
          ...ctx.run,
          work: ctx.work,
          prefix: unit.key,
          padImage: undefined as string | undefined,
          log: (m: string) => post.log('warn', m),
        }
        try {
          if (items.length === 1) await remuxPart(first.part, file, options)
          else {
            // Only spliced videos have pads: the image is fetched for the first.
            padImage ??= await post.padImage(ctx.spec.request.Concat?.Image, ctx.work)
            options.padImage = padImage
            const begun = performance.now()
            const how = await splice(items, file, options)
            post.log(
              'info',
              `task ${taskId}: ${unit.stream.streamId}: spliced ${unit.parts.length} part(s) and ${items.length - unit.parts.length} pad(s) ${how === 'copy' ? 'by stream copy' : how === 'audio' ? 'with the video copied and the audio encoded' : 're-encoded'} in ${((performance.now() - begun) / 1000).toFixed(2)} s`,
            )
          }
        } catch (error) {
          rethrowIfAborted(ctx.signal, error)
          if (!(error instanceof BudgetExceeded)) throw error
          const spanMs = unit.parts.reduce((ms, p) => ms + p.part.info.durationMs, 0)
          ctx.problem(unit.stream.streamId, `its video was not made: ${error.message}`, spanMs)
          continue
        }
        const made: Made = {
          key: unit.key,
          file,
          format: 'mp4',
          userId: unit.stream.streamId,
          videoType: unit.stream.videoType as VideoInfo['VideoType'],
          playTime: first.part.at,
          info: await probe(post.tools.ffprobe, file),
        }
        await ctx.keep(await post.withMp3(ctx, made))
      }
      ctx.progress(1)
    },
  }
}

/**
 * The mp3 of a video stored in an earlier run whose mp3 was not (a crash
 * between the two): made from the stored video.
 */
function audioStage(post: PostProcessor): Stage {
  return {
    name: 'audio',
    async run(ctx) {
      if (!ctx.spec.request.AudioFileNeeded) return
      const missing = [...ctx.done.entries()].filter(
        ([key, v]) => v.VideoFormat === 'mp4' && !ctx.done.has(`${key}.mp3`),
      )
      for (const [i, [key, video]] of missing.entries()) {
        ctx.progress(i / missing.length)
        const stored = await post.storage.fetch(
          recordingKey(ctx.spec.taskId, video.VideoId, 'mp4'),
          join(ctx.work, 'stored'),
        )
        const info = await probe(post.tools.ffprobe, stored)
        if (!info.audio) continue
        const mp3 = join(ctx.work, `${key}.mp3`)
        try {
          await extractMp3(ctx.run, stored, mp3, info.durationMs)
        } catch (error) {
          rethrowIfAborted(ctx.signal, error)
          if (!(error instanceof BudgetExceeded)) throw error
          ctx.problem(video.UserId, `its mp3 was not made: ${error.message}`)
          continue
        }
        await ctx.keep([
          {
            key: `${key}.mp3`,
            file: mp3,
            format: 'mp3',
            userId: video.UserId,
            videoType: 4,
            playTime: video.VideoPlayTime,
            info: await probe(post.tools.ffprobe, mp3),
          },
        ])
      }
    },
  }
}

function bySegment(stream: PreparedStream) {
  return stream.parts.map((p) => ({ key: p.segment.segmentId, stream, parts: [p] }))
}

export type { TaskProblem }
