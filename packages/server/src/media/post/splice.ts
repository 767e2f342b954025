// The splice stage's work for one stream: its parts (segments placed on the
// replay timeline) joined into one MP4 of H.264 and AAC, with the absences
// between them filled by a pad (the Concat image, or black) and silence.
// Whatever can be joined as it is, is: H.264 whose parameters match the
// publisher's is copied, and a pad is encoded with those parameters; what
// cannot (VP8, Opus, differing parameters) is encoded alike first.
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FfmpegCommand } from '../ffmpeg/command.ts'
import {
  audioParameters,
  fpsValue,
  type MediaInfo,
  probe,
  type VideoStreamInfo,
  videoParameters,
} from '../ffmpeg/probe.ts'
import { readX264Options, x264ParamsFor } from '../ffmpeg/x264-sei.ts'
import { addWork, decoding, encoding, type FfmpegRun, runFfmpeg, type Work } from './budget.ts'

/** Gaps shorter than this (about a frame) are not worth a pad. */
export const MIN_GAP_MS = 40

/** A segment ready to be joined: its file, what ffprobe says, and where it starts on the replay timeline. */
export interface Part {
  path: string
  info: MediaInfo
  /** Position on the replay timeline where it starts, ms. */
  at: number
}

export type Item = { part: Part } | { gapMs: number }

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

/** How the video or the audio of every part ends up in the output. */
interface VideoTarget {
  width: number
  height: number
  fps: string
  /** Encoder arguments of a pad (and of parts when not copied). */
  args: string[]
  /** The parts' video is copied as it is (H.264 with matching parameters). */
  copy: boolean
}
interface AudioTarget {
  sampleRate: number
  channels: number
  copy: boolean
}
export interface Target {
  video: VideoTarget | undefined
  audio: AudioTarget | undefined
}

/** Encoder settings every part is re-encoded to when the parts cannot be joined as they are. */
const NORMALISE_VIDEO = ['-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p']

/** Common parameters for parts that differ: the first video's size and rate, the first audio's format. */
export function normalisedTarget(parts: readonly Part[]): Target {
  const v = parts.find((p) => p.info.video)?.info.video
  const a = parts.find((p) => p.info.audio)?.info.audio
  const even = (n: number) => Math.max(2, n - (n % 2))
  return {
    video: v && {
      width: even(v.width),
      height: even(v.height),
      fps: fpsValue(v.fps) <= 60 ? v.fps : '60/1',
      args: NORMALISE_VIDEO,
      copy: false,
    },
    audio: a && {
      sampleRate: a.codec === 'opus' ? 48_000 : a.sampleRate || 48_000,
      channels: Math.min(2, a.channels || 2),
      copy: false,
    },
  }
}

/** How one output is spliced; its ffmpeg runs go by the job's signal and budget (FfmpegRun). */
export interface SpliceOptions extends FfmpegRun {
  /** Work directory of this output; its files are removed by the caller. */
  work: string
  /** Prefix for the work files of this output. */
  prefix: string
  /** The pad image (Concat.Image, downloaded), or black when undefined. */
  padImage: string | undefined
  log: (message: string) => void
}

/**
 * Joins `items` into the MP4 `file`. Returns how: 'copy' (everything joined
 * as it is), 'audio' (video copied, audio encoded) or 'encode'.
 */
export async function splice(
  items: readonly Item[],
  file: string,
  o: SpliceOptions,
): Promise<'copy' | 'audio' | 'encode'> {
  const parts = items.flatMap((i) => ('part' in i ? [i.part] : []))
  const ref = (parts[0] as Part).info
  const sameVideo = parts.every((p) => videoParameters(p.info) === videoParameters(ref))
  const sameAudio = parts.every((p) => audioParameters(p.info) === audioParameters(ref))
  let audioCopy = sameAudio && (ref.audio === undefined || ref.audio.codec === 'aac')
  const firstGap = items.findIndex((i) => 'gapMs' in i)
  const firstPad = join(o.work, `${o.prefix}-${firstGap}.mkv`)
  const gap = items[firstGap]
  // H.264 that matches across parts is copied when a pad can match it too.
  let video: VideoTarget | undefined
  if (sameVideo && ref.video?.codec === 'h264') {
    const matched = await matchingPad(
      ref.video,
      (parts[0] as Part).path,
      gap && 'gapMs' in gap ? { file: firstPad, ms: gap.gapMs } : undefined,
      ref,
      o,
    )
    video = matched.video
    audioCopy &&= matched.audioMatches
  }
  const fallback = normalisedTarget(parts)
  const target: Target = {
    video:
      ref.video === undefined && !parts.some((p) => p.info.video)
        ? undefined
        : (video ?? fallback.video),
    audio: fallback.audio && (audioCopy ? { ...fallback.audio, copy: true } : fallback.audio),
  }
  const how =
    target.video?.copy !== false ? (target.audio?.copy !== false ? 'copy' : 'audio') : 'encode'
  const list: string[] = []
  for (const [n, item] of items.entries()) {
    const out = join(o.work, `${o.prefix}-${n}.mkv`)
    let input = out
    if ('gapMs' in item) {
      // The matching step already made the first pad.
      if (!(video && n === firstGap)) await pad(out, item.gapMs, target, o, o.padImage)
    } else if (how === 'copy') {
      // Segments start at 0 (the recorder rebases them): joined as they are.
      input = item.part.path
    } else await normalise(item.part, out, target, o)
    list.push(`file '${input.replaceAll("'", "'\\''")}'`)
  }
  const listFile = join(o.work, `${o.prefix}.txt`)
  await writeFile(listFile, `${list.join('\n')}\n`)
  const lengthS =
    items.reduce((ms, i) => ms + ('gapMs' in i ? i.gapMs : i.part.info.durationMs), 0) / 1000
  await runFfmpeg(
    o,
    new FfmpegCommand().input({ url: listFile, format: 'concat', options: ['-safe', '0'] }).output({
      url: file,
      maps: ['0:v?', '0:a?'],
      options: ['-c', 'copy', '-movflags', '+faststart'],
    }),
    addWork({ inputs: items.length, copiedS: lengthS }),
  )
  return how
}

/** One part alone as the MP4 `file`: copied where it can be, encoded where it must be. */
export async function remuxPart(part: Part, file: string, o: SpliceOptions): Promise<void> {
  const target = normalisedTarget([part])
  const v = part.info.video
  const a = part.info.audio
  const copyVideo = v?.codec === 'h264'
  const copyAudio = a === undefined || a.codec === 'aac'
  await runFfmpeg(
    o,
    new FfmpegCommand().input({ url: part.path }).output({
      url: file,
      maps: ['0:v?', '0:a?'],
      options: [
        ...(v ? (copyVideo ? ['-c:v', 'copy'] : videoEncode(target.video as VideoTarget)) : []),
        ...(a ? (copyAudio ? ['-c:a', 'copy'] : audioEncode(target.audio as AudioTarget)) : []),
        '-movflags',
        '+faststart',
      ],
    }),
    recodeWork(part, target, { video: !copyVideo, audio: !copyAudio }),
  )
}

/** Reading `part` and encoding what is not copied (the video, the audio) to `target`. */
function recodeWork(part: Part, target: Target, encode: { video: boolean; audio: boolean }): Work {
  const seconds = part.info.durationMs / 1000
  const v = encode.video && target.video
  return addWork(
    { inputs: v ? 0 : 1, copiedS: seconds },
    v ? decoding({ ...part.info, audio: undefined }) : {},
    v ? encoding(v.width, v.height, fpsValue(v.fps), seconds) : {},
    encode.audio && part.info.audio ? { audioS: 2 * seconds } : {},
  )
}

/**
 * Video settings under which a pad joins `ref` by stream copy, if some exist,
 * and whether the pad's audio (AAC at the reference's rate) matches too.
 * Each candidate encodes the first pad itself (`first`), so the one that
 * matches has already made it.
 */
async function matchingPad(
  v: VideoStreamInfo,
  refFile: string,
  first: { file: string; ms: number } | undefined,
  ref: MediaInfo,
  o: SpliceOptions,
): Promise<{ video: VideoTarget | undefined; audioMatches: boolean }> {
  const base = { width: v.width, height: v.height, fps: v.fps, copy: true }
  if (first === undefined) return { video: { ...base, args: [] }, audioMatches: true }
  const x264 = await readX264Options(refFile).catch(() => undefined)
  for (const args of padEncoderCandidates(v, x264 && x264ParamsFor(x264))) {
    const video = { ...base, args }
    await pad(first.file, first.ms, { video, audio: audioOf(ref) }, o, o.padImage)
    const made = await probe(o.tools.ffprobe, first.file)
    if (videoParameters(made) === videoParameters(ref)) {
      return { video, audioMatches: audioParameters(made) === audioParameters(ref) }
    }
  }
  await rm(first.file, { force: true })
  return { video: undefined, audioMatches: false }
}

function audioOf(ref: MediaInfo): AudioTarget | undefined {
  const a = ref.audio
  return (
    a && { sampleRate: a.sampleRate, channels: Math.min(2, a.channels), copy: a.codec === 'aac' }
  )
}

/** Black (or the pad image) and silence, `ms` long, encoded for `target`. */
async function pad(
  out: string,
  ms: number,
  target: Target,
  o: SpliceOptions,
  image: string | undefined,
) {
  const { video, audio } = target
  const command = new FfmpegCommand()
  if (video) {
    if (image)
      command.input({ url: image, options: ['-loop', '1', '-framerate', String(video.fps)] })
    else command.source(`color=c=black:s=${video.width}x${video.height}:r=${video.fps}`)
  }
  if (audio) command.source(`anullsrc=r=${audio.sampleRate}:cl=${layout(audio.channels)}`)
  const fit = `scale=${video?.width}:${video?.height}:force_original_aspect_ratio=decrease,pad=${video?.width}:${video?.height}:(ow-iw)/2:(oh-ih)/2,setsar=1`
  command.output({
    url: out,
    format: 'matroska',
    options: [
      '-t',
      (ms / 1000).toFixed(3),
      ...(video
        ? [
            ...['-vf', image ? fit : 'setsar=1', '-r', String(video.fps)],
            ...['-c:v', 'libx264', ...video.args],
            // The publisher's own settings carry its GOP length.
            ...(video.args.includes('-x264-params')
              ? []
              : ['-g', String(Math.round(fpsValue(video.fps) * 2))]),
          ]
        : []),
      ...(audio ? audioEncode(audio) : []),
    ],
  })
  const seconds = ms / 1000
  try {
    await runFfmpeg(
      o,
      command,
      addWork(
        video ? encoding(video.width, video.height, fpsValue(video.fps), seconds) : {},
        audio ? { audioS: seconds } : {},
        { inputs: image ? 1 : 0 },
      ),
    )
  } catch (error) {
    if (image === undefined || o.signal.aborted) throw error
    o.log(`the pad image cannot be used, black instead: ${(error as Error).message}`)
    await pad(out, ms, target, o, undefined)
  }
}

/** Re-encodes (or copies) a part to `target`, adding silence or black for a stream it lacks. */
async function normalise(part: Part, out: string, target: Target, o: SpliceOptions): Promise<void> {
  const { video, audio } = target
  const command = new FfmpegCommand().input({ url: part.path })
  let v = '0:v:0'
  let a = '0:a:0'
  if (video && !part.info.video) {
    command.source(`color=c=black:s=${video.width}x${video.height}:r=${video.fps}`)
    v = `${command.inputCount - 1}:v:0`
  }
  if (audio && !part.info.audio) {
    command.source(`anullsrc=r=${audio.sampleRate}:cl=${layout(audio.channels)}`)
    a = `${command.inputCount - 1}:a:0`
  }
  const videoArgs = !video
    ? []
    : video.copy && part.info.video
      ? ['-c:v', 'copy']
      : [...['-vf', fitTo(video)], ...['-r', String(video.fps), ...videoEncode(video)]]
  const audioArgs = !audio
    ? []
    : audio.copy && part.info.audio
      ? ['-c:a', 'copy']
      : audioEncode(audio)
  command.output({
    url: out,
    format: 'matroska',
    maps: [...(video ? [v] : []), ...(audio ? [a] : [])],
    options: ['-t', (part.info.durationMs / 1000).toFixed(3), ...videoArgs, ...audioArgs],
  })
  await runFfmpeg(
    o,
    command,
    recodeWork(part, target, {
      video: video !== undefined && !(video.copy && part.info.video),
      audio: audio !== undefined && !(audio.copy && part.info.audio),
    }),
  )
}

function fitTo(v: VideoTarget): string {
  return `scale=${v.width}:${v.height}:force_original_aspect_ratio=decrease,pad=${v.width}:${v.height}:(ow-iw)/2:(oh-ih)/2,setsar=1`
}

function videoEncode(v: VideoTarget): string[] {
  return ['-c:v', 'libx264', ...v.args, '-g', String(Math.round(fpsValue(v.fps) * 2))]
}

function audioEncode(a: AudioTarget): string[] {
  return ['-c:a', 'aac', '-ar', String(a.sampleRate), '-ac', String(a.channels)]
}

const layout = (channels: number) => (channels === 1 ? 'mono' : 'stereo')
