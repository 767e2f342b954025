// The mix stage's speed: 60 s of ModelId 2 — a 1280x960 board and two 720p30
// H.264 cameras with tones (one joining 20 s late) — composed at 15 fps into
// H.264 + AAC, as media seconds per wall second (× real time). Subject: the
// stage's own ffmpeg command (mixCommand: one decoding thread and no loop
// filter per camera, the encoder on its thread budget). Baseline: the same
// graph with ffmpeg's default decoding and encoder threads, what one would
// write by hand. CPU-seconds per media minute are printed beside.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveMediaTools, runTool } from '../packages/server/src/media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../packages/server/src/media/ffmpeg/probe.ts'
import { type MixInput, mixCommand, mixUnsupported } from '../packages/server/src/media/post/mix.ts'
import { layoutOf } from '../packages/server/src/media/post/mix-layout.ts'
import type { Comparison } from './run.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-mix-'))
const SECONDS = 60
const LAYOUT = layoutOf({ Enabled: true, ModelId: 2, TeacherId: 'teacher' })

let made: Promise<MixInput[]> | undefined
/** The board (slot 0, a picture changing once a second) and two cameras (slots 2 and 3). */
function inputs(): Promise<MixInput[]> {
  made ??= (async () => {
    const why = await mixUnsupported(tools)
    if (why) throw new Error(why)
    const make = async (name: string, source: string, seconds: number, audio?: number) => {
      const file = join(dir, `${name}.mkv`)
      await runTool(tools.ffmpeg, [
        ...['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', source],
        ...(audio ? ['-f', 'lavfi', '-i', `sine=frequency=${audio}:sample_rate=48000`] : []),
        ...['-t', String(seconds), '-c:v', 'libx264', '-preset', 'veryfast', '-g', '30'],
        ...(audio ? ['-c:a', 'aac'] : []),
        ...['-f', 'matroska', file],
      ])
      return file
    }
    return [
      {
        path: await make('board', 'testsrc2=size=1280x960:rate=1', SECONDS),
        at: 0,
        hasVideo: true,
        hasAudio: false,
        slot: 0,
      },
      {
        path: await make('teacher', 'testsrc2=size=1280x720:rate=30', SECONDS, 440),
        at: 0,
        hasVideo: true,
        hasAudio: true,
        slot: 2,
      },
      {
        path: await make('student', 'testsrc=size=1280x720:rate=30', SECONDS - 20, 660),
        at: 20_000,
        hasVideo: true,
        hasAudio: true,
        slot: 3,
      },
    ]
  })()
  return made
}

/** CPU seconds of this process's finished (waited-for) children so far. */
const childCpu = () => {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[13]) + Number(fields[14])) / 100
}
let round = 0

const mix = (label: string, ours: boolean) => async () => {
  const file = join(dir, `mix-${round++}.mp4`)
  const command = mixCommand(LAYOUT, await inputs(), {
    fps: 15,
    // ffmpeg's default: as many encoder threads as it likes.
    threads: ours ? 2 : 0,
    totalMs: SECONDS * 1000,
    audio: true,
    file,
    lightDecoding: ours,
  })
  const cpuBefore = childCpu()
  const started = performance.now()
  await runTool(tools.ffmpeg, command.args())
  const seconds = (performance.now() - started) / 1000
  const info = await probe(tools.ffprobe, file)
  if (Math.abs(info.durationMs - SECONDS * 1000) > 200 || !info.audio) {
    throw new Error(`${label}: ${info.durationMs} ms, audio ${info.audio?.codec}`)
  }
  rmSync(file, { force: true })
  console.error(
    `mix.bench: ${label}: ${(SECONDS / seconds).toFixed(1)}× real time, ${(((childCpu() - cpuBefore) / SECONDS) * 60).toFixed(1)} CPU-s per media minute`,
  )
  return SECONDS / seconds
}

export const comparisons: Comparison[] = [
  {
    name: 'mixing 60 s of ModelId 2 (board + two 720p cameras) at 15 fps',
    targetOps: 4,
    rounds: 3,
    baseline: { name: '× real time: default decoding', measure: mix('default decoding', false) },
    subject: { name: '× real time: the mix stage', measure: mix('the mix stage', true) },
    teardown: async () => rmSync(dir, { recursive: true, force: true }),
  },
]
