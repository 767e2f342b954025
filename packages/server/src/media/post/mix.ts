// The mix stage: one video of the whole class, the task's streams composed
// on a canvas as its layout says (mix-layout.ts), on the replay timeline
// (paused spans cut, as in the other videos). One ffmpeg run per task: the
// canvas is a colour source; every recorded part is shifted to its place on
// the timeline and overlaid in its slot, so a stream that joins late or
// leaves shows the canvas (or its slot's background) while it is absent; the
// audio of every part is delayed to its place and summed. H.264 + AAC MP4,
// VideoType 3, VideoPlayTime 0, as long as the timeline.
//
// Its cost is estimated before it runs — frames × (canvas + rectangles)
// pixels made, every input's pixels decoded, the audio — and the run gets a
// CPU budget from it (budget.ts): a mix over it is killed, counted among the
// task's problems, and the other videos are kept. A process mixes at most
// `concurrency` tasks at once, at most `perApp` of one app, each encoder with
// `threads` threads; a task that finds no slot goes back to the database
// queue (NotReady) for any process to take. A mix that fails otherwise is
// tried again; after the last try it is counted the same way.

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { VideoInfo } from '@online-record/protocol'
import { FfmpegCommand } from '../ffmpeg/command.ts'
import { BudgetExceeded, type MediaTools, runTool } from '../ffmpeg/ffmpeg-tools.ts'
import { probe } from '../ffmpeg/probe.ts'
import { recordingKey } from '../storage/object-storage.ts'
import {
  addWork,
  type BudgetSettings,
  budgetFor,
  DEFAULT_BUDGET_SETTINGS,
  decoding,
  describeBudget,
  NO_WORK,
  rethrowIfAborted,
  runFfmpeg,
  type Work,
} from './budget.ts'
import { assignStreams, type Layout, layoutOf, type Slot } from './mix-layout.ts'
import type { Made, PostProcessor, Stage, StageContext } from './post-process.ts'
import { NotReady } from './segments.ts'
import { totalTime } from './timeline.ts'

export interface MixSettings {
  /** Frames per second of the mixed video. */
  fps: number
  /** Tasks mixed at once in this process. */
  concurrency: number
  /** Tasks of one app mixed at once in this process; default one less than `concurrency` (at least 1). */
  perApp?: number
  /** Encoder threads of one mix. */
  threads: number
  /** Tries of one mix within a post-processing run before it is reported failed. */
  attempts: number
  /** How long a task that found no free mix slot waits in the queue. */
  waitMs: number
  /** The mix's CPU budget, from its estimated work. */
  budget: BudgetSettings
}

export const DEFAULT_MIX_SETTINGS: MixSettings = {
  fps: 15,
  concurrency: 2,
  threads: 2,
  attempts: 2,
  waitMs: 5000,
  budget: DEFAULT_BUDGET_SETTINGS,
}

/** One recorded part as an input of the mix. */
export interface MixInput {
  path: string
  /** Position on the replay timeline, ms. */
  at: number
  hasVideo: boolean
  hasAudio: boolean
  /** The slot its video goes in; undefined: not shown (its audio is still mixed). */
  slot: number | undefined
  /** Reading it whole (its pictures and audio decoded): for the mix's estimate. */
  decoding?: Work
}

/**
 * The estimated work of a mix: every frame of the canvas made, with the
 * rectangles composed on it (those that show a stream or a background), and
 * every input read whole.
 */
export function mixWork(
  layout: Layout,
  inputs: readonly MixInput[],
  o: { fps: number; totalMs: number; audio: boolean },
): Work {
  const seconds = o.totalMs / 1000
  const frames = o.fps * seconds
  const drawn = layout.slots.filter(
    (slot, i) =>
      slot.background !== undefined || inputs.some((input) => input.slot === i && input.hasVideo),
  )
  const pixels =
    layout.width * layout.height +
    drawn.reduce((n, slot) => n + slot.rect.width * slot.rect.height, 0)
  return addWork(
    { madeMpx: (frames * pixels) / 1e6, audioS: o.audio ? seconds : 0 },
    ...inputs.map((input) => input.decoding ?? { ...NO_WORK, inputs: 1 }),
  )
}

const hex = (color: string) => `0x${color.slice(1)}`
const seconds = (ms: number) => (ms / 1000).toFixed(3)
/** yuv420p pictures have even sizes: an odd slot loses its last column or row. */
const even = (n: number) => Math.max(2, n - (n % 2))

/** The picture of a part fitted (letterboxed) or filled (cropped) to its slot. */
function fitted(slot: Slot, canvas: string): string {
  const w = even(slot.rect.width)
  const h = even(slot.rect.height)
  return slot.fill === 1
    ? `scale=${w}:${h}:force_original_aspect_ratio=increase:flags=bilinear,crop=${w}:${h}`
    : `scale=${w}:${h}:force_original_aspect_ratio=decrease:force_divisible_by=2:flags=bilinear,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=${hex(slot.background ?? canvas)}`
}

/**
 * The filter graph of a mix: `inputs[i]` is ffmpeg input i. Returns the graph
 * and the labels of its video and (when anything has audio and audio is
 * wanted) audio outputs.
 */
export function mixGraph(
  layout: Layout,
  inputs: readonly MixInput[],
  o: { fps: number; totalMs: number; audio: boolean },
): { graph: string; video: string; audio: string | undefined } {
  const chains: string[] = [
    `color=c=${hex(layout.background)}:s=${layout.width}x${layout.height}:r=${o.fps}:d=${seconds(o.totalMs)},format=yuv420p[c0]`,
  ]
  let n = 0
  // Slots in drawing order: larger ZOrder on top, equal ones in list order.
  const order = layout.slots.map((slot, i) => ({ slot, i })).sort((a, b) => a.slot.z - b.slot.z)
  for (const { slot, i } of order) {
    const { x, y } = slot.rect
    if (slot.background !== undefined) {
      chains.push(
        `[c${n}]drawbox=x=${x}:y=${y}:w=${slot.rect.width}:h=${slot.rect.height}:color=${hex(slot.background)}:t=fill[c${n + 1}]`,
      )
      n++
    }
    inputs.forEach((input, k) => {
      if (input.slot !== i || !input.hasVideo) return
      chains.push(
        `[${k}:v:0]fps=${o.fps},setpts=PTS-STARTPTS+${seconds(input.at)}/TB,${fitted(slot, layout.background)},setsar=1[v${k}]`,
        `[c${n}][v${k}]overlay=x=${x}:y=${y}:eof_action=pass:repeatlast=0[c${n + 1}]`,
      )
      n++
    })
  }
  const sounding = o.audio ? inputs.flatMap((input, k) => (input.hasAudio ? [k] : [])) : []
  for (const k of sounding) {
    chains.push(
      `[${k}:a:0]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,asetpts=PTS-STARTPTS,adelay=delays=${Math.round(inputs[k]?.at ?? 0)}:all=1[a${k}]`,
    )
  }
  if (sounding.length > 0) {
    chains.push(
      `${sounding.map((k) => `[a${k}]`).join('')}amix=inputs=${sounding.length}:duration=longest:normalize=0,apad[aout]`,
    )
  }
  return {
    graph: chains.join(';'),
    video: `[c${n}]`,
    audio: sounding.length > 0 ? '[aout]' : undefined,
  }
}

const support = new Map<string, Promise<string | undefined>>()

/**
 * Undefined when this ffmpeg can mix; otherwise why not. The graph needs
 * ffmpeg 5.1 or later (`adelay all`, `amix normalize`): distribution builds
 * have them, the static build the npm package ships (2018) does not.
 */
export function mixUnsupported(tools: MediaTools): Promise<string | undefined> {
  let known = support.get(tools.ffmpeg)
  if (known === undefined) {
    known = (async () => {
      const help = async (filter: string) =>
        runTool(tools.ffmpeg, ['-hide_banner', '-h', `filter=${filter}`]).catch(() => '')
      const [amix, adelay] = await Promise.all([help('amix'), help('adelay')])
      return /\bnormalize\b/.test(amix) && /\ball\b/.test(adelay)
        ? undefined
        : `the mixed video needs ffmpeg 5.1 or later (this ffmpeg, from ${tools.source.ffmpeg}, lacks amix normalize or adelay all): install the distribution's ffmpeg or set FFMPEG_PATH`
    })()
    support.set(tools.ffmpeg, known)
  }
  return known
}

/**
 * The ffmpeg command of a mix into the MP4 `o.file` (progress on stdout).
 * `lightDecoding: false` decodes the inputs with ffmpeg's defaults (the
 * benchmark's baseline).
 */
export function mixCommand(
  layout: Layout,
  inputs: readonly MixInput[],
  o: {
    fps: number
    threads: number
    totalMs: number
    audio: boolean
    file: string
    lightDecoding?: boolean
  },
): FfmpegCommand {
  const { graph, video, audio } = mixGraph(layout, inputs, o)
  const command = new FfmpegCommand()
  for (const input of inputs) {
    // One decoding thread and no loop filter per camera: invisible at window size, half the CPU.
    const light = input.hasVideo && o.lightDecoding !== false
    command.input({
      url: input.path,
      options: light ? ['-threads', '1', '-skip_loop_filter', 'all'] : [],
    })
  }
  return command.filter(graph).output({
    url: o.file,
    maps: [video, ...(audio ? [audio] : [])],
    options: [
      ...['-t', seconds(o.totalMs), '-r', String(o.fps)],
      ...['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p'],
      ...['-g', String(o.fps * 10), '-threads', String(o.threads)],
      ...(audio ? ['-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2'] : []),
      ...['-movflags', '+faststart', '-progress', 'pipe:1', '-nostats'],
    ],
  })
}

/** The mixed video's TIW UserId. */
export const mixUserId = (roomId: number, layout: Layout) => `tic_mixstream_${roomId}_${layout.id}`

/**
 * The mixes under way in a process, up to its size; one app's up to
 * `perApp`, so that with more slots than that another app finds one free.
 */
export class MixSlots {
  readonly #busy = new Map<number, number>()
  #total = 0
  readonly size: number
  readonly perApp: number
  constructor(size: number, perApp = Math.max(1, size - 1)) {
    this.size = size
    this.perApp = Math.min(size, perApp)
  }
  /** Takes a slot for a mix of `app`; false when all are busy or the app has its share. */
  take(app: number): boolean {
    const mine = this.#busy.get(app) ?? 0
    if (this.#total >= this.size || mine >= this.perApp) return false
    this.#busy.set(app, mine + 1)
    this.#total++
    return true
  }
  release(app: number): void {
    const mine = this.#busy.get(app) ?? 0
    if (mine === 0) return
    if (mine === 1) this.#busy.delete(app)
    else this.#busy.set(app, mine - 1)
    this.#total--
  }
}

export function mixStage(post: PostProcessor, settings: MixSettings, slots: MixSlots): Stage {
  return {
    name: 'mix',
    async run(ctx) {
      const request = ctx.spec.request
      if (!request.MixStream?.Enabled || ctx.done.has('mix')) return
      if (ctx.prepared.streams.size === 0 && !ctx.done.has('whiteboard')) return
      const layout = layoutOf(request.MixStream)
      const userId = mixUserId(request.RoomId, layout)
      const why = await mixUnsupported(post.tools)
      if (why !== undefined) {
        post.log('error', `task ${ctx.spec.taskId}: no mixed video: ${why}`)
        ctx.prepared.problems.push({ atMs: Date.now(), streamId: userId, message: why })
        return
      }
      const app = ctx.spec.sdkAppId
      if (!slots.take(app)) {
        throw new NotReady(
          `the mix slots are busy (${slots.size} in all, ${slots.perApp} per app)`,
          settings.waitMs,
        )
      }
      try {
        let last: unknown
        for (let attempt = 1; attempt <= settings.attempts; attempt++) {
          try {
            await mixOnce(post, ctx, layout, userId, settings)
            return
          } catch (error) {
            rethrowIfAborted(ctx.signal, error)
            last = error
            post.log(
              'warn',
              `task ${ctx.spec.taskId}: mixing failed (try ${attempt} of ${settings.attempts}): ${(error as Error).message}`,
            )
            // Over its budget is not luck: another try would cost as much again.
            if (error instanceof BudgetExceeded) break
          }
        }
        ctx.problem(
          userId,
          `the mixed video could not be made: ${(last as Error).message}`,
          totalTime(ctx.timeline),
        )
      } finally {
        slots.release(app)
      }
    },
  }
}

async function mixOnce(
  post: PostProcessor,
  ctx: StageContext,
  layout: Layout,
  userId: string,
  settings: MixSettings,
): Promise<void> {
  const streams = [...ctx.prepared.streams.values()]
  const slots = assignStreams(
    layout,
    streams.map((s) => ({
      streamId: s.streamId,
      videoType: s.videoType,
      firstAt: s.parts[0]?.part.at ?? 0,
    })),
  )
  const slotOf = new Map([...slots].map(([slot, streamId]) => [streamId, slot]))
  const inputs: MixInput[] = streams.flatMap((s) =>
    s.parts.map(({ part }) => ({
      path: part.path,
      at: part.at,
      hasVideo: part.info.video !== undefined,
      hasAudio: part.info.audio !== undefined,
      slot: slotOf.get(s.streamId),
      decoding: decoding(part.info),
    })),
  )
  // The whiteboard video (when the task has one) in the board's rectangle.
  const board = ctx.done.get('whiteboard')
  const boardSlot = layout.slots.findIndex((s) => s.source.kind === 'board')
  if (board && boardSlot >= 0) {
    const local = join(ctx.work, 'whiteboard.mp4')
    inputs.push({
      path: existsSync(local)
        ? local
        : await post.storage.fetch(
            recordingKey(ctx.spec.taskId, board.VideoId, 'mp4'),
            join(ctx.work, 'stored'),
          ),
      at: board.VideoPlayTime,
      hasVideo: true,
      hasAudio: false,
      slot: boardSlot,
      decoding: addWork({
        inputs: 1,
        decodedMpx:
          ((board.Width ?? 0) * (board.Height ?? 0) * settings.fps * board.VideoDuration) / 1e9,
      }),
    })
  }
  const used = inputs.filter((i) => (i.hasVideo && i.slot !== undefined) || i.hasAudio)
  const totalMs = totalTime(ctx.timeline)
  const file = join(ctx.work, 'mix.mp4')
  const shape = {
    fps: settings.fps,
    totalMs,
    audio: ctx.spec.request.MixStream?.DisableAudio !== true,
  }
  const command = mixCommand(layout, used, { ...shape, threads: settings.threads, file })
  const work = mixWork(layout, used, shape)
  post.log(
    'info',
    `task ${ctx.spec.taskId}: mixing ${used.length} part(s) of ${streams.length} stream(s) into layout ${layout.id} (${layout.width}x${layout.height}, ${(totalMs / 1000).toFixed(1)} s); ${describeBudget(work, budgetFor(work, settings.budget))}`,
  )
  const begun = performance.now()
  await runFfmpeg(
    { ...ctx.run, budget: settings.budget, onBudget: () => {} },
    command,
    work,
    (child) => {
      child.stdout?.on('data', (chunk: Buffer | string) => {
        const m = /out_time_us=(\d+)\s*$/m.exec(String(chunk))
        if (m && totalMs > 0) ctx.progress(Number(m[1]) / 1000 / totalMs)
      })
    },
  )
  post.log(
    'info',
    `task ${ctx.spec.taskId}: mixed in ${((performance.now() - begun) / 1000).toFixed(1)} s`,
  )
  const made: Made = {
    key: 'mix',
    file,
    format: 'mp4',
    userId,
    videoType: 3 as VideoInfo['VideoType'],
    playTime: 0,
    info: await probe(post.tools.ffprobe, file),
  }
  await ctx.keep(await post.withMp3(ctx, made))
  ctx.progress(1)
}
