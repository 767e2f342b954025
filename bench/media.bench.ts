// The media plane's two costs:
// 1. Live recording: N 720p30 publishers (2 Mbit/s CBR, x264 zerolatency)
//    into a real server process, one task per room; the CPU of the server and
//    its per-stream ffmpeg processes over a window, as streams per core.
//    Baseline: the same N streams copied by ffmpeg alone from a file to
//    Matroska (the recording process without ingest, recorder or store).
// 2. Splicing: a 720p30 stream recorded as three 1-minute segments with a
//    pause and an absence, spliced by post-processing (Concat), as media
//    seconds per wall second. Baseline: ffmpeg's concat demuxer over the same segments, alone.
// Targets: ≥ 50 streams per core (≤ 0.02 cores a stream), splicing ≥ 50×
// real time (≤ 2% of the media's length).
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Apps } from '../packages/server/src/apps/apps.ts'
import { genUserSig } from '../packages/server/src/apps/usersig.ts'
import { ManualClock } from '../packages/server/src/clock.ts'
import { Manifest } from '../packages/server/src/media/capture/manifest.ts'
import { segmentCommand } from '../packages/server/src/media/capture/segment-writer.ts'
import { resolveMediaTools, runTool } from '../packages/server/src/media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../packages/server/src/media/ffmpeg/probe.ts'
import { PostProcessor } from '../packages/server/src/media/post/post-process.ts'
import { LocalStorage } from '../packages/server/src/media/storage/local.ts'
import { segmentKey } from '../packages/server/src/media/storage/object-storage.ts'
import { CONCAT_REQUEST } from '../packages/server/src/media/test-media.ts'
import { openDb } from '../packages/server/src/store/db.ts'
import { migrate } from '../packages/server/src/store/migrations.ts'
import { TEST_APP, tiwClient } from '../packages/server/test/server-process.ts'
import { children, cpuOver } from './proc.ts'
import type { Comparison } from './run.ts'
import { cli, spawnService } from './service-process.ts'

const STREAMS = Number(process.env.BENCH_MEDIA_STREAMS ?? 50)
const WINDOW_MS = 10_000
const APP = TEST_APP
const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-media-'))
let clip: Promise<string> | undefined
/** 30 s of 720p30 at 2 Mbit/s CBR with AAC, as FLV: encoded once per run. */
function source(): Promise<string> {
  clip ??= (async () => {
    const file = join(dir, 'clip720.flv')
    await runTool(tools.ffmpeg, [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=1280x720:rate=30',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=440:sample_rate=48000',
      '-t',
      '30',
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-tune',
      'zerolatency',
      '-g',
      '30',
      '-b:v',
      '2M',
      '-minrate',
      '2M',
      '-maxrate',
      '2M',
      '-bufsize',
      '2M',
      '-x264-params',
      'nal-hrd=cbr',
      '-pix_fmt',
      'yuv420p',
      '-c:a',
      'aac',
      '-b:a',
      '64k',
      '-y',
      file,
    ])
    return file
  })()
  return clip
}

let clipMkv: Promise<string> | undefined
/** The same clip as Matroska, the container the recording process reads and writes. */
function sourceMkv(): Promise<string> {
  clipMkv ??= (async () => {
    const file = join(dir, 'clip720.mkv')
    await runTool(tools.ffmpeg, [
      '-loglevel',
      'error',
      '-i',
      await source(),
      '-c',
      'copy',
      '-y',
      file,
    ])
    return file
  })()
  return clipMkv
}

// ---- live recording ------------------------------------------------------------------

interface Live {
  server: ChildProcess
  url: string
  rtmp: string
  publishers: ChildProcess[]
  client: ReturnType<typeof tiwClient>
  round: number
}
let live: Live | undefined

async function setUpLive(): Promise<Live> {
  if (live) return live
  const file = await source()
  const { child: server, output: printed } = await spawnService(
    [cli, 'serve'],
    {
      ONLINE_RECORD_DATA_DIR: join(dir, 'data'),
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_RATE_LIMIT: '10000',
      ONLINE_RECORD_APPS: JSON.stringify([{ ...APP, maxConcurrentTasks: 10_000 }]),
    },
    /RTMP ingest listening on (rtmp:\/\/[^/\s]+)/,
  )
  const output = printed()
  const url = (/listening on (\S+)/.exec(output) as RegExpExecArray)[1] as string
  const rtmp = (
    /RTMP ingest listening on (rtmp:\/\/[^/\s]+)/.exec(output) as RegExpExecArray
  )[1] as string
  const publishers: ChildProcess[] = []
  for (let i = 0; i < STREAMS; i++) {
    const user = `u${i}`
    const sig = genUserSig(APP.sdkAppId, APP.userSigKey, user, 86_400)
    publishers.push(
      spawn(
        tools.ffmpeg,
        [
          '-hide_banner',
          '-loglevel',
          'error',
          '-re',
          '-stream_loop',
          '-1',
          '-i',
          file,
          '-c',
          'copy',
          '-f',
          'flv',
          `${rtmp}/push/${20_000 + i}?sdkappid=${APP.sdkAppId}&userid=${user}&usersig=${sig}`,
        ],
        { stdio: 'ignore' },
      ),
    )
    await new Promise((r) => setTimeout(r, 40))
  }
  const client = tiwClient(url)
  live = { server, url, rtmp, publishers, client, round: 0 }
  return live
}

/** Streams per core while the server records STREAMS 720p streams. */
async function recordLive(ms: number): Promise<number> {
  const s = await setUpLive()
  const round = s.round++
  const taskIds: string[] = []
  for (let i = 0; i < STREAMS; i++) {
    const user = `tic_record_user_${20_000 + i}_${round}`
    const { TaskId } = await s.client.StartOnlineRecord({
      SdkAppId: APP.sdkAppId,
      RoomId: 20_000 + i,
      RecordUserId: user,
      RecordUserSig: genUserSig(APP.sdkAppId, APP.userSigKey, user, 86_400),
    })
    taskIds.push(TaskId as string)
  }
  await new Promise((r) => setTimeout(r, 3000)) // every stream past its first key frame
  const pid = s.server.pid as number
  const writers = () =>
    children(pid).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('pipe:0')
      } catch {
        return false
      }
    })
  const recording = writers().length
  const window = Math.max(ms, WINDOW_MS)
  const publisherCpu = cpuOver(window, () => s.publishers.map((p) => p.pid as number))
  const serverCpu = cpuOver(window, () => [pid])
  const used = await cpuOver(window, () => [pid, ...writers()])
  const cores = used / (window / 1000)
  const server = (await serverCpu) / (window / 1000)
  console.error(
    `media.bench: ${recording}/${STREAMS} streams recording; server + recorders ${cores.toFixed(3)} cores (${((cores / STREAMS) * 1000).toFixed(1)} millicores a stream: the server ${((server / STREAMS) * 1000).toFixed(1)}, its recording processes ${(((cores - server) / STREAMS) * 1000).toFixed(1)}); publishers ${((await publisherCpu) / (window / 1000)).toFixed(2)} cores`,
  )
  for (const TaskId of taskIds) await s.client.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId })
  // Post-processing of the stopped tasks is not part of the measure: wait for it.
  for (const TaskId of taskIds) {
    while (
      (await s.client.DescribeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId })).Status !==
      'FINISHED'
    )
      await new Promise((r) => setTimeout(r, 200))
  }
  return STREAMS / cores
}

/**
 * The recording process's own command with a file instead of its pipe: its
 * input options, then `extra` (before the input), the clip as Matroska input.
 */
function recordingCommand(clip: string, out: string, extra: string[], outputExtra: string[] = []) {
  const args = segmentCommand(out).map((a) => (a === 'pipe:0' ? clip : a))
  args.splice(args.indexOf('-probesize'), 0, ...extra)
  args.splice(args.indexOf('-c'), 0, ...outputExtra)
  return args
}

/** Streams per core of the bare recording processes: ffmpeg copying the clip to Matroska. */
async function recordBare(ms: number): Promise<number> {
  const file = await sourceMkv()
  const out = join(dir, 'bare')
  mkdirSync(out, { recursive: true })
  const procs: ChildProcess[] = []
  for (let i = 0; i < STREAMS; i++) {
    const args = recordingCommand(file, join(out, `${i}.mkv`), ['-re', '-stream_loop', '-1'])
    procs.push(spawn(tools.ffmpeg, args, { stdio: 'ignore' }))
  }
  await new Promise((r) => setTimeout(r, 3000))
  const window = Math.max(ms, WINDOW_MS)
  const used = await cpuOver(window, () => procs.map((p) => p.pid as number))
  for (const p of procs) p.kill('SIGINT')
  await Promise.all(procs.map((p) => (p.exitCode === null ? once(p, 'exit') : undefined)))
  rmSync(out, { recursive: true, force: true })
  return STREAMS / (used / (window / 1000))
}

// ---- splicing ------------------------------------------------------------------------

interface Splice {
  segments: string[]
  /** Probed length of each segment, ms. */
  durations: number[]
  round: number
  post: PostProcessor
  manifest: Manifest
  mediaDir: string
  addTask(taskId: string): Promise<void>
  close(): Promise<void>
}
let splice: Splice | undefined

const SEGMENT_S = [60, 60, 60]
const spliceLog: string[] = []

async function setUpSplice(): Promise<Splice> {
  if (splice) return splice
  const file = await sourceMkv()
  const work = join(dir, 'splice')
  mkdirSync(work, { recursive: true })
  const segments: string[] = []
  const durations: number[] = []
  let offset = 0
  for (const [i, seconds] of SEGMENT_S.entries()) {
    const seg = join(work, `seg${i}.mkv`)
    // The 30 s clip looped: three minutes of one continuous stream, written
    // as the recording process writes. Cut as output options, on whole
    // seconds: key frames (one a second).
    const args = recordingCommand(
      file,
      seg,
      ['-stream_loop', '-1'],
      ['-ss', String(offset), '-t', String(seconds)],
    )
    await runTool(tools.ffmpeg, args)
    segments.push(seg)
    durations.push((await probe(tools.ffprobe, seg)).durationMs)
    offset += seconds
  }
  const clock = new ManualClock()
  const db = await openDb({ dataDir: join(dir, 'splice-db') })
  await migrate(db, clock)
  const manifest = new Manifest(db, clock, 'bench')
  await new Apps(db, clock).create({ sdkAppId: 1 })
  const mediaDir = join(dir, 'splice-media')
  const post = new PostProcessor({
    manifest,
    tools,
    storage: new LocalStorage(mediaDir, () => 'http://bench'),
    mediaDir,
    log: (_level, message) => spliceLog.push(message),
    urlPolicy: { blockPrivate: false },
    now: () => clock.now(),
  })
  const addTask = async (taskId: string) => {
    await db.query(
      `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status, request,
         created_at_ms, last_activity_ms) values ($1, 1, 1, '1', 'rec', 'STOPPED', '{}', 0, 0)`,
      [taskId],
    )
  }
  splice = {
    segments,
    durations,
    round: 0,
    post,
    manifest,
    mediaDir,
    addTask,
    close: () => db.close(),
  }
  return splice
}

/** Media seconds spliced per wall second by post-processing (probe, pad, copy-concat, store). */
async function spliceOurs(): Promise<number> {
  const s = await setUpSplice()
  const taskId = `bench${s.round++}`
  const t0 = Date.UTC(2026, 0, 1)
  const starts = [t0, t0 + 65_000, t0 + 128_000] // 60 s, pause 5 s, 60 s, absent 3 s, 60 s
  mkdirSync(join(s.mediaDir, 'segments', taskId), { recursive: true })
  await s.addTask(taskId)
  for (const [i, seg] of s.segments.entries()) {
    const segmentId = `${String(s.round).padStart(20, '0')}000${i}`
    const key = segmentKey(taskId, segmentId)
    copyFileSync(seg, join(s.mediaDir, key))
    await s.manifest.openSegment({
      segmentId,
      taskId,
      streamId: 'teacher',
      userId: 'teacher',
      videoType: 0,
      file: key,
      startMs: starts[i] as number,
    })
    await s.manifest.closeSegment(
      segmentId,
      (starts[i] as number) + (SEGMENT_S[i] as number) * 1000,
      'pause',
    )
    await s.manifest.markStored(segmentId, key)
  }
  const started = performance.now()
  const result = await s.post.finish({
    taskId,
    sdkAppId: 1,
    request: CONCAT_REQUEST,
    recordStartMs: t0,
    recordStopMs: t0 + 188_000,
    pauses: [{ pauseMs: t0 + 60_000, resumeMs: t0 + 65_000 }],
  })
  const seconds = (performance.now() - started) / 1000
  // The third segment starts 123 s into the replay timeline (60 s, the pause
  // cut, 60 s, 3 s absent), whatever the first two's exact lengths.
  const expected = 123_000 + (s.durations[2] as number)
  const video = result.videoInfos[0]
  if (!video || Math.abs(video.VideoDuration - expected) > 300)
    throw new Error(`spliced ${video?.VideoDuration} ms, expected ${expected}`)
  if (!spliceLog.some((l) => /by stream copy/.test(l))) throw new Error(spliceLog.join('\n'))
  spliceLog.length = 0
  rmSync(join(s.mediaDir, 'files', taskId), { recursive: true, force: true })
  return video.VideoDuration / 1000 / seconds
}

/** Media seconds per wall second of ffmpeg's concat demuxer alone over the same segments. */
async function spliceBare(): Promise<number> {
  const s = await setUpSplice()
  const list = join(dir, 'splice', 'list.txt')
  writeFileSync(list, s.segments.map((f) => `file '${f}'`).join('\n'))
  const out = join(dir, 'splice', 'bare.mp4')
  const started = performance.now()
  await runTool(tools.ffmpeg, [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'concat',
    '-safe',
    '0',
    '-i',
    list,
    '-c',
    'copy',
    '-movflags',
    '+faststart',
    out,
  ])
  const seconds = (performance.now() - started) / 1000
  rmSync(out, { force: true })
  return s.durations.reduce((a, b) => a + b, 0) / 1000 / seconds
}

export const comparisons: Comparison[] = [
  {
    name: `${STREAMS} concurrent 720p30 streams recorded by stream copy`,
    targetOps: 50,
    rounds: 3,
    baseline: { name: 'streams/core: ffmpeg copying to Matroska alone', measure: recordBare },
    subject: { name: 'streams/core: server + per-stream recorders', measure: recordLive },
    teardown: async () => {
      if (!live) return
      for (const p of live.publishers) p.kill('SIGKILL')
      live.server.kill('SIGTERM')
      await once(live.server, 'exit')
      live = undefined
    },
  },
  {
    name: 'splicing 3 min of 720p30 (3 segments, a pause, an absence)',
    targetOps: 50,
    rounds: 5,
    baseline: { name: 'media s/s: concat demuxer alone', measure: spliceBare },
    subject: { name: 'media s/s: post-processing with Concat', measure: spliceOurs },
    teardown: async () => {
      await splice?.close()
      splice = undefined
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true })
    },
  },
]
