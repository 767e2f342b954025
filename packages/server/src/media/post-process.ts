// Post-processing of a stopped task, from the manifest and the files on disk:
// one video per segment, or (Concat) one per stream with paused spans cut out
// and absences filled with the pad image and silence; an mp3 per video when
// AudioFileNeeded. Every output is probed, stored, and recorded as done, so a
// re-run after a crash redoes only what was not finished.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { VideoInfo } from '@online-record/protocol'
import type { FinishSpec, RecordingResult } from '../engine/ports.ts'
import { fetchLimited } from '../net/outbound.ts'
import type { AddressPolicy } from '../net/url-policy.ts'
import { type MediaTools, runTool } from './ffmpeg-tools.ts'
import type { Manifest, SegmentRow } from './manifest.ts'
import {
  fpsValue,
  type MediaInfo,
  probe,
  sameCodecParameters,
  type VideoStreamInfo,
} from './probe.ts'
import type { MediaLog } from './recorder.ts'
import type { ObjectStorage } from './storage.ts'
import { omittedDurations, replayTime, type Timeline, totalTime } from './timeline.ts'
import { readX264Options, x264ParamsFor } from './x264-sei.ts'

/** Gaps shorter than this (about a frame) are not worth a pad. */
const MIN_GAP_MS = 40
const MAX_PAD_IMAGE_BYTES = 20 * 1024 * 1024
const FFMPEG_TIMEOUT_MS = 6 * 3_600_000

export interface PostProcessorOptions {
  manifest: Manifest
  tools: MediaTools
  storage: ObjectStorage
  mediaDir: string
  log: MediaLog
  /** Waits until no segment of the task is still being written. */
  settle: (taskId: string) => Promise<void>
  /** Which tenant URLs (Concat.Image) may be fetched. */
  urlPolicy: AddressPolicy
}

interface Part {
  segment: SegmentRow
  path: string
  info: MediaInfo
  /** Position on the replay timeline where it starts, ms. */
  at: number
}

interface Unit {
  /** Output key: the stream (Concat) or the segment. */
  key: string
  streamId: string
  videoType: number
  segments: SegmentRow[]
}

type Item = { part: Part } | { gapMs: number }

/** 32 hex characters, the same on every run for the same output. */
export function videoIdOf(taskId: string, outputKey: string): string {
  return createHash('md5').update(`${taskId}/${outputKey}`).digest('hex')
}

/** The items of a spliced video: parts in order, with the absences between them as gaps. */
export function spliceItems(parts: readonly Part[]): Item[] {
  const items: Item[] = []
  const first = parts[0]
  if (first === undefined) return items
  let position = 0
  for (const part of parts) {
    // The gap is measured against what the output holds so far, so a part a
    // little longer or shorter than its wall-clock slot does not shift the rest.
    const gapMs = part.at - first.at - position
    if (gapMs >= MIN_GAP_MS) {
      items.push({ gapMs })
      position += gapMs
    }
    items.push({ part })
    position += part.info.durationMs
  }
  return items
}

/**
 * x264 settings to try for a pad whose SPS/PPS equal the publisher's, most
 * likely first: the publisher's own x264 settings when its stream names them.
 */
export function padEncoderCandidates(v: VideoStreamInfo, x264Params?: string): string[][] {
  if (v.codec !== 'h264') return []
  const profile = (
    { High: 'high', Main: 'main', Baseline: 'baseline', 'Constrained Baseline': 'baseline' } as
      | Record<string, string>
      | undefined
  )?.[v.profile]
  const common = [
    ...(profile ? ['-profile:v', profile] : []),
    ...(v.level > 0 ? ['-level:v', String(v.level / 10)] : []),
    '-pix_fmt',
    v.pixFmt || 'yuv420p',
  ]
  return [
    // Whether the SPS says the frame rate is fixed depends on how the
    // publisher's encoder was fed; x264 does not write it among its options.
    ...(x264Params
      ? [`${x264Params}:force-cfr=1`, x264Params].map((p) => [
          '-preset',
          'veryfast',
          ...common,
          '-x264-params',
          p,
        ])
      : []),
    ['-preset', 'veryfast', '-tune', 'zerolatency', ...common],
    ['-preset', 'veryfast', ...common],
    ['-preset', 'superfast', '-tune', 'zerolatency', ...common],
  ]
}

interface Target {
  video: { width: number; height: number; fps: string; args: string[] } | undefined
  audio: { sampleRate: number; channels: number } | undefined
}

/** Encoder settings every part is re-encoded to when the parts cannot be joined as they are. */
const NORMALISE_VIDEO = ['-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p']

export class PostProcessor {
  readonly #o: PostProcessorOptions

  constructor(options: PostProcessorOptions) {
    this.#o = options
  }

  async finish(spec: FinishSpec): Promise<RecordingResult> {
    const { taskId } = spec
    const log = this.#o.log
    if (spec.recordStartMs === null) return { videoInfos: [], omittedDurations: [], totalTimeMs: 0 }
    const timeline: Timeline = {
      startMs: spec.recordStartMs,
      stopMs: spec.recordStopMs ?? spec.recordStartMs,
      pauses: spec.pauses,
    }
    await this.#o.settle(taskId)
    const concat = spec.request.Concat?.Enabled === true
    const segments = await this.#o.manifest.segments(taskId)
    // Nothing recorded (no publisher came): no outputs to look for either.
    const done = segments.length === 0 ? new Map() : await this.#o.manifest.outputs(taskId)
    const units = concat ? byStream(segments) : bySegment(segments)
    const work = join(this.#o.mediaDir, 'work', taskId)
    const started = Date.now()
    let padImage: string | undefined | null = null
    for (const [i, unit] of units.entries()) {
      if (done.has(unit.key)) continue
      log(
        'info',
        `post-processing task ${taskId}: ${i + 1}/${units.length} ${unit.streamId} (${unit.segments.length} segment(s))`,
      )
      await mkdir(work, { recursive: true })
      // Only spliced videos have pads.
      if (padImage === null)
        padImage = concat ? await this.#padImage(spec.request.Concat?.Image, work) : undefined
      const built = await this.#build(taskId, unit, timeline, work, padImage)
      if (built === undefined) continue
      const outputs: { key: string; file: string; format: 'mp4' | 'mp3' }[] = [
        { key: unit.key, file: built.file, format: 'mp4' },
      ]
      if (spec.request.AudioFileNeeded && built.info.audio) {
        const mp3 = join(work, `${videoIdOf(taskId, `${unit.key}.mp3`)}.mp3`)
        await this.#ffmpeg(['-i', built.file, '-vn', '-c:a', 'libmp3lame', '-q:a', '4', mp3])
        outputs.push({ key: `${unit.key}.mp3`, file: mp3, format: 'mp3' })
      }
      const saved: { key: string; info: VideoInfo; storageKey: string }[] = []
      for (const o of outputs) {
        const info = o.format === 'mp4' ? built.info : await probe(this.#o.tools.ffprobe, o.file)
        const videoId = videoIdOf(taskId, o.key)
        const storageKey = `${taskId}/${videoId}.${o.format}`
        const { size } = await stat(o.file)
        const videoInfo: VideoInfo = {
          UserId: unit.streamId,
          VideoDuration: info.durationMs,
          VideoFormat: o.format,
          VideoId: videoId,
          VideoPlayTime: built.playTime,
          VideoSize: size,
          VideoType: (o.format === 'mp3' ? 4 : unit.videoType) as VideoInfo['VideoType'],
          VideoUrl: this.#o.storage.url(storageKey),
          Width: info.video?.width ?? 0,
          Height: info.video?.height ?? 0,
        }
        await this.#o.storage.put(
          storageKey,
          o.file,
          o.format === 'mp4' ? 'video/mp4' : 'audio/mpeg',
        )
        saved.push({ key: o.key, info: videoInfo, storageKey })
      }
      await this.#o.manifest.saveOutputs(taskId, saved)
      for (const s of saved) done.set(s.key, s.info)
    }
    // Everything is stored: the raw segments and work files can go (a task
    // nobody published in has neither, and a recursive rm costs stat calls).
    if (segments.length > 0) {
      await rm(join(this.#o.mediaDir, 'segments', taskId), { recursive: true, force: true })
      await rm(work, { recursive: true, force: true })
    }
    const videoInfos = [...done.values()].sort(
      (a, b) =>
        a.VideoPlayTime - b.VideoPlayTime ||
        (a.UserId < b.UserId ? -1 : a.UserId > b.UserId ? 1 : 0) ||
        a.VideoType - b.VideoType,
    )
    if (units.length > 0) {
      log(
        'info',
        `post-processing task ${taskId}: ${videoInfos.length} file(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      )
    }
    return {
      videoInfos,
      omittedDurations: concat ? omittedDurations(timeline) : [],
      totalTimeMs: totalTime(timeline),
    }
  }

  /** Deletes outputs older than `beforeMs` from storage (retention). */
  async expire(beforeMs: number, storage: ObjectStorage): Promise<number> {
    const expired = await this.#o.manifest.expiredOutputs(beforeMs, 500)
    for (const o of expired) {
      await storage.delete(o.storageKey)
      await this.#o.manifest.markDeleted(o.taskId, o.outputKey)
    }
    return expired.length
  }

  async #build(
    taskId: string,
    unit: Unit,
    timeline: Timeline,
    work: string,
    padImage: string | undefined,
  ): Promise<{ file: string; info: MediaInfo; playTime: number } | undefined> {
    const parts: Part[] = []
    // Probed side by side: a few hundred ms each, mostly process start-up.
    const probed = await Promise.all(
      unit.segments.map(async (segment) => {
        const path = join(this.#o.mediaDir, segment.file)
        if (!existsSync(path)) {
          this.#o.log('warn', `task ${taskId}: segment ${segment.segmentId} is missing on disk`)
          return undefined
        }
        const info = await probe(this.#o.tools.ffprobe, path).catch((error: Error) => {
          this.#o.log('warn', `task ${taskId}: segment ${segment.segmentId}: ${error.message}`)
          return undefined
        })
        // A writer killed before its first fragment leaves nothing playable.
        if (info === undefined || info.durationMs <= 0 || (!info.video && !info.audio)) return
        return { segment, path, info, at: replayTime(timeline, segment.startMs) }
      }),
    )
    for (const p of probed) if (p) parts.push(p)
    const first = parts[0]
    if (first === undefined) return undefined
    const file = join(work, `${videoIdOf(taskId, unit.key)}.mp4`)
    const items = spliceItems(parts)
    if (items.length === 1) {
      await this.#ffmpeg(['-i', first.path, ...COPY_ALL, '-movflags', '+faststart', file])
    } else {
      await this.#splice(taskId, unit, items, work, file, padImage)
    }
    const info = await probe(this.#o.tools.ffprobe, file)
    return { file, info, playTime: first.at }
  }

  /** Joins parts and pads by stream copy: as they are when they can, else re-encoded alike. */
  async #splice(
    taskId: string,
    unit: Unit,
    items: Item[],
    work: string,
    file: string,
    padImage: string | undefined,
  ): Promise<void> {
    const started = Date.now()
    const parts = items.flatMap((i) => ('part' in i ? [i.part] : []))
    const ref = (parts[0] as Part).info
    const prefix = join(work, videoIdOf(taskId, unit.key))
    let target: Target | undefined
    const firstGap = items.findIndex((i) => 'gapMs' in i)
    const firstPad = `${prefix}-${firstGap}.mp4`
    if (parts.every((p) => sameCodecParameters(p.info, ref))) {
      const gap = items[firstGap]
      target = await this.#matchingPadTarget(
        ref,
        (parts[0] as Part).path,
        gap && 'gapMs' in gap ? { file: firstPad, ms: gap.gapMs } : undefined,
        padImage,
      )
    }
    const copy = target !== undefined
    target ??= normalisedTarget(parts)
    const list: string[] = []
    for (const [n, item] of items.entries()) {
      const out = `${prefix}-${n}.mp4`
      let input = out
      if ('gapMs' in item) {
        // The matching step already made the first pad.
        if (!(copy && n === firstGap)) await this.#pad(out, item.gapMs, target, padImage)
      } else if (copy) {
        // Segments start at 0 (the recorder rebases them): joined as they are.
        input = item.part.path
      } else await this.#normalise(item.part, out, target)
      list.push(`file '${input.replaceAll("'", "'\\''")}'`)
    }
    const listFile = `${prefix}.txt`
    await writeFile(listFile, `${list.join('\n')}\n`)
    await this.#ffmpeg([
      '-f',
      'concat',
      '-safe',
      '0',
      '-i',
      listFile,
      ...COPY_ALL,
      '-movflags',
      '+faststart',
      file,
    ])
    this.#o.log(
      'info',
      `task ${taskId}: ${unit.streamId}: spliced ${parts.length} part(s) and ${items.length - parts.length} pad(s) ${copy ? 'by stream copy' : 're-encoded'} in ${((Date.now() - started) / 1000).toFixed(2)} s`,
    )
  }

  /**
   * Encoder settings under which a pad joins `ref` by stream copy, if some
   * exist. Each candidate encodes the first pad itself (`pad`), so the one
   * that matches has already made it.
   */
  async #matchingPadTarget(
    ref: MediaInfo,
    refFile: string,
    pad: { file: string; ms: number } | undefined,
    padImage: string | undefined,
  ): Promise<Target | undefined> {
    const audio = ref.audio && { sampleRate: ref.audio.sampleRate, channels: ref.audio.channels }
    if (pad === undefined) return { video: undefined, audio }
    if (ref.audio && ref.audio.codec !== 'aac') return undefined
    const v = ref.video
    if (v === undefined) {
      await this.#pad(pad.file, pad.ms, { video: undefined, audio }, padImage)
      return { video: undefined, audio }
    }
    const x264 = await readX264Options(refFile).catch(() => undefined)
    for (const args of padEncoderCandidates(v, x264 && x264ParamsFor(x264))) {
      const target: Target = {
        video: { width: v.width, height: v.height, fps: v.fps, args },
        audio,
      }
      await this.#pad(pad.file, pad.ms, target, padImage)
      if (sameCodecParameters(await probe(this.#o.tools.ffprobe, pad.file), ref)) return target
    }
    await rm(pad.file, { force: true })
    return undefined
  }

  /** Black (or the pad image) and silence, `ms` long, encoded for `target`. */
  async #pad(out: string, ms: number, target: Target, image: string | undefined): Promise<void> {
    const { video, audio } = target
    const seconds = (ms / 1000).toFixed(3)
    const args: string[] = []
    if (video) {
      const size = `${video.width}x${video.height}`
      if (image) args.push('-loop', '1', '-framerate', String(video.fps), '-i', image)
      else args.push('-f', 'lavfi', '-i', `color=c=black:s=${size}:r=${video.fps}`)
    }
    if (audio) {
      const layout = audio.channels === 1 ? 'mono' : 'stereo'
      args.push('-f', 'lavfi', '-i', `anullsrc=r=${audio.sampleRate}:cl=${layout}`)
    }
    args.push('-t', seconds)
    if (video) {
      const fit = `scale=${video.width}:${video.height}:force_original_aspect_ratio=decrease,pad=${video.width}:${video.height}:(ow-iw)/2:(oh-ih)/2,setsar=1`
      args.push('-vf', image ? fit : 'setsar=1', '-r', String(video.fps))
      args.push('-c:v', 'libx264', ...video.args)
      // The publisher's own settings carry its GOP length.
      if (!video.args.includes('-x264-params'))
        args.push('-g', String(Math.round(fpsValue(video.fps) * 2)))
    }
    if (audio)
      args.push('-c:a', 'aac', '-ar', String(audio.sampleRate), '-ac', String(audio.channels))
    args.push(out)
    try {
      await this.#ffmpeg(args)
    } catch (error) {
      if (image === undefined) throw error
      this.#o.log(
        'warn',
        `the pad image cannot be used, black instead: ${(error as Error).message}`,
      )
      await this.#pad(out, ms, target, undefined)
    }
  }

  /** Re-encodes a part to `target`, adding silence or black for a stream it lacks. */
  async #normalise(part: Part, out: string, target: Target): Promise<void> {
    const { video, audio } = target
    const args = ['-i', part.path]
    let input = 1
    let v = '0:v:0'
    let a = '0:a:0'
    if (video && !part.info.video) {
      args.push(
        '-f',
        'lavfi',
        '-i',
        `color=c=black:s=${video.width}x${video.height}:r=${video.fps}`,
      )
      v = `${input++}:v:0`
    }
    if (audio && !part.info.audio) {
      const layout = audio.channels === 1 ? 'mono' : 'stereo'
      args.push('-f', 'lavfi', '-i', `anullsrc=r=${audio.sampleRate}:cl=${layout}`)
      a = `${input++}:a:0`
    }
    args.push('-t', (part.info.durationMs / 1000).toFixed(3))
    if (video) {
      args.push(
        '-map',
        v,
        '-vf',
        `scale=${video.width}:${video.height}:force_original_aspect_ratio=decrease,pad=${video.width}:${video.height}:(ow-iw)/2:(oh-ih)/2,setsar=1`,
        '-r',
        String(video.fps),
        '-c:v',
        'libx264',
        ...video.args,
        '-g',
        String(Math.round(fpsValue(video.fps) * 2)),
      )
    }
    if (audio) {
      args.push(
        '-map',
        a,
        '-c:a',
        'aac',
        '-ar',
        String(audio.sampleRate),
        '-ac',
        String(audio.channels),
      )
    }
    args.push(out)
    await this.#ffmpeg(args)
  }

  /** Downloads Concat.Image once per run; undefined (black) when absent or unusable. */
  async #padImage(url: string | undefined, work: string): Promise<string | undefined> {
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

  async #ffmpeg(args: readonly string[]): Promise<void> {
    await runTool(this.#o.tools.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', ...args], {
      timeoutMs: FFMPEG_TIMEOUT_MS,
    })
  }
}

const COPY_ALL = ['-map', '0:v?', '-map', '0:a?', '-c', 'copy']

/** Common parameters for parts that differ: the first video's size and rate, the first audio's format. */
function normalisedTarget(parts: readonly Part[]): Target {
  const v = parts.find((p) => p.info.video)?.info.video
  const a = parts.find((p) => p.info.audio)?.info.audio
  const even = (n: number) => Math.max(2, n - (n % 2))
  return {
    video: v && {
      width: even(v.width),
      height: even(v.height),
      fps: fpsValue(v.fps) <= 60 ? v.fps : '60/1',
      args: NORMALISE_VIDEO,
    },
    audio: a && { sampleRate: a.sampleRate || 48_000, channels: Math.min(2, a.channels || 2) },
  }
}

function byStream(segments: readonly SegmentRow[]): Unit[] {
  const units = new Map<string, Unit>()
  for (const s of segments) {
    let unit = units.get(s.streamId)
    if (unit === undefined) {
      unit = { key: s.streamId, streamId: s.streamId, videoType: s.videoType, segments: [] }
      units.set(s.streamId, unit)
    }
    unit.segments.push(s)
  }
  return [...units.values()]
}

function bySegment(segments: readonly SegmentRow[]): Unit[] {
  return segments.map((s) => ({
    key: s.segmentId,
    streamId: s.streamId,
    videoType: s.videoType,
    segments: [s],
  }))
}
