// What a browser's codecs cost in post-processing: a 60 s 640x480 segment of
// VP8 + Opus (what Chrome sends without H.264) made into the MP4 of H.264 and
// AAC that every output is, and one of H.264 + Opus (video copied, audio
// encoded). Measured as media seconds per wall second of the post-processing
// stage (remuxPart); baseline: the bare ffmpeg command that does the same
// encoding. CPU-seconds per media minute are printed beside.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveMediaTools, runTool } from '../packages/server/src/media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../packages/server/src/media/ffmpeg/probe.ts'
import { DEFAULT_BUDGET_SETTINGS } from '../packages/server/src/media/post/budget.ts'
import { remuxPart } from '../packages/server/src/media/post/splice.ts'
import type { Comparison } from './run.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-transcode-'))
const SECONDS = 60

const sources = new Map<string, Promise<string>>()
/** 60 s of 640x480 at 30 fps with a tone, in the codecs of a browser publisher, as Matroska. */
function source(video: 'vp8' | 'h264'): Promise<string> {
  let made = sources.get(video)
  if (made === undefined) {
    made = (async () => {
      const file = join(dir, `${video}-opus.mkv`)
      await runTool(tools.ffmpeg, [
        ...['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=30'],
        ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(SECONDS)],
        ...(video === 'vp8'
          ? ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '800k']
          : ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-b:v', '800k']),
        ...['-g', '60', '-c:a', 'libopus', '-ac', '2', '-f', 'matroska', file],
      ])
      return file
    })()
    sources.set(video, made)
  }
  return made
}

/** CPU seconds of this process's finished (waited-for) children so far: cutime + cstime. */
const childCpu = () => {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[13]) + Number(fields[14])) / 100
}
let round = 0

/** Media seconds per wall second of `work`; prints its CPU-seconds per media minute. */
async function timed(label: string, work: (out: string) => Promise<void>): Promise<number> {
  const out = join(dir, `out-${round++}.mp4`)
  const cpuBefore = childCpu()
  const started = performance.now()
  await work(out)
  const seconds = (performance.now() - started) / 1000
  const info = await probe(tools.ffprobe, out)
  if (info.video?.codec !== 'h264' || info.audio?.codec !== 'aac')
    throw new Error(`${label}: ${info.video?.codec}/${info.audio?.codec}`)
  rmSync(out, { force: true })
  console.error(
    `transcode.bench: ${label}: ${(SECONDS / seconds).toFixed(1)}× real time, ${(((childCpu() - cpuBefore) / SECONDS) * 60).toFixed(1)} CPU-s per media minute`,
  )
  return SECONDS / seconds
}

const stage = (video: 'vp8' | 'h264') => async () => {
  const path = await source(video)
  const info = await probe(tools.ffprobe, path)
  mkdirSync(join(dir, 'work'), { recursive: true })
  return timed(`${video} + opus, post-processing`, (out) =>
    remuxPart({ path, info, at: 0 }, out, {
      tools,
      budget: DEFAULT_BUDGET_SETTINGS,
      signal: new AbortController().signal,
      work: join(dir, 'work'),
      prefix: 'p',
      padImage: undefined,
      log: () => {},
    }),
  )
}

const bare = (video: 'vp8' | 'h264') => async () => {
  const path = await source(video)
  return timed(`${video} + opus, ffmpeg alone`, (out) =>
    runTool(tools.ffmpeg, [
      ...['-loglevel', 'error', '-y', '-i', path, '-map', '0:v', '-map', '0:a'],
      ...(video === 'vp8'
        ? ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p']
        : ['-c:v', 'copy']),
      ...['-c:a', 'aac', '-movflags', '+faststart', out],
    ]).then(() => {}),
  )
}

export const comparisons: Comparison[] = [
  {
    name: `VP8 + Opus (60 s, 640x480) to H.264 + AAC`,
    rounds: 3,
    baseline: { name: 'media s/s: ffmpeg alone', measure: bare('vp8') },
    subject: { name: 'media s/s: the post-processing stage', measure: stage('vp8') },
  },
  {
    name: `H.264 + Opus (60 s, 640x480): video copied, audio to AAC`,
    rounds: 3,
    baseline: { name: 'media s/s: ffmpeg alone', measure: bare('h264') },
    subject: { name: 'media s/s: the post-processing stage', measure: stage('h264') },
    teardown: async () => rmSync(dir, { recursive: true, force: true }),
  },
]
