// Helpers of the media end-to-end suites: real ffmpeg publishers with signed
// UserSigs, downloads probed with ffprobe, the events a task produced, and the
// per-stream recording processes of a server.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { genUserSig } from '../src/apps/usersig.ts'
import { resolveMediaTools } from '../src/media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../src/media/ffmpeg/probe.ts'
import { testSourceArgs } from '../src/media/test-media.ts'
import { openDb } from '../src/store/db.ts'
import { type ServerProcess, startServer, TEST_APP, type tiwClient } from './server-process.ts'

export const tools = resolveMediaTools()

export interface RunningPublisher {
  child: ChildProcess
  /** Resolves with ffmpeg's exit code. */
  exited: Promise<number | null>
  /** Ends the publish cleanly (ffmpeg sends deleteStream). */
  stop(): Promise<number | null>
  kill(): Promise<void>
}

/**
 * An ffmpeg publisher the way TRTC's RTMP guide sets one up: testsrc and a
 * sine, x264 zerolatency, one key frame a second, small so that suites running
 * side by side stay light.
 */
export function publish(options: {
  rtmp: string
  room: string | number
  userId: string
  seconds: number
  aux?: boolean
  userSig?: string
  size?: string
  frequency?: number
  /** One solid colour instead of the test pattern. */
  color?: string
  /** Frames between key frames (default 15: one a second). */
  gop?: number
  /** Incompressible noise at 4 Mbit/s. */
  noise?: boolean
  /** The app published to (default TEST_APP). */
  app?: { sdkAppId: number; userSigKey: string }
}): RunningPublisher {
  const app = options.app ?? TEST_APP
  const sig = options.userSig ?? genUserSig(app.sdkAppId, app.userSigKey, options.userId, 3600)
  const url = `${options.rtmp}/push/${options.room}?sdkappid=${app.sdkAppId}&userid=${options.userId}&usersig=${sig}${options.aux ? '&streamtype=aux' : ''}`
  const child = spawn(
    tools.ffmpeg,
    [
      ...testSourceArgs({
        seconds: options.seconds,
        live: true,
        bars: options.aux,
        ...(options.size ? { size: options.size } : {}),
        ...(options.frequency ? { frequency: options.frequency } : {}),
        ...(options.color ? { color: options.color } : {}),
        ...(options.gop ? { gop: options.gop } : {}),
        ...(options.noise ? { noise: true } : {}),
      }),
      '-f',
      'flv',
      url,
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  )
  child.stderr?.resume()
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return {
    child,
    exited,
    async stop() {
      // 'q' on stdin makes ffmpeg finish the output and unpublish.
      if (child.exitCode === null) child.stdin?.write('q')
      return exited
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}

/**
 * Servers of one suite, each with a data directory under one temporary root;
 * all are killed and the root removed when the suite ends, passed or not.
 */
export function suiteServers(prefix: string): {
  root: string
  start(dir: string, env?: Record<string, string>): Promise<ServerProcess>
} {
  const root = mkdtempSync(join(tmpdir(), prefix))
  const servers: ServerProcess[] = []
  after(async () => {
    for (const s of servers) await s.kill()
    rmSync(root, { recursive: true, force: true })
  })
  return {
    root,
    async start(dir, env = {}) {
      const server = await startServer({
        ONLINE_RECORD_DATA_DIR: join(root, dir),
        ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
        ...env,
      })
      servers.push(server)
      return server
    },
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Downloads `url` into `dir` and probes the copy. */
export async function download(
  url: string,
  dir: string,
): Promise<{ bytes: number; durationMs: number; width: number; height: number; file: string }> {
  const response = await fetch(url)
  assert.equal(response.status, 200, url)
  const body = Buffer.from(await response.arrayBuffer())
  const file = join(dir, url.split('/').pop() as string)
  writeFileSync(file, body)
  const info = await probe(tools.ffprobe, file)
  return {
    bytes: body.length,
    durationMs: info.durationMs,
    width: info.video?.width ?? 0,
    height: info.video?.height ?? 0,
    file,
  }
}

/** Black stretches of a video (ffmpeg blackdetect), in seconds. */
export async function blackSpans(file: string): Promise<{ start: number; end: number }[]> {
  const { spawnSync } = await import('node:child_process')
  const run = spawnSync(
    tools.ffmpeg,
    ['-hide_banner', '-i', file, '-vf', 'blackdetect=d=0.2:pix_th=0.05', '-an', '-f', 'null', '-'],
    { encoding: 'utf8' },
  )
  return [...run.stderr.matchAll(/black_start:([\d.]+) black_end:([\d.]+)/g)].map((m) => ({
    start: Number(m[1]),
    end: Number(m[2]),
  }))
}

export interface TaskEvent {
  seq: number
  eventType: string
  eventData: Record<string, unknown>
}

/**
 * The callbacks a task produced, in order. Read from the outbox (the server
 * must be stopped: PGlite admits one process); when callback delivery lands,
 * a receiver replaces this in one place.
 */
export async function taskEvents(dataDir: string, taskId: string): Promise<TaskEvent[]> {
  const db = await openDb({ dataDir })
  try {
    return await db.query<TaskEvent>(
      `select seq, event_type as "eventType", event_data as "eventData" from events
       where task_id = $1 order by seq`,
      [taskId],
    )
  } finally {
    await db.close()
  }
}

/** Why each of a task's segments ended, per stream, in order (from the store of a stopped server). */
export async function segmentEnds(dataDir: string, taskId: string): Promise<Map<string, string[]>> {
  const db = await openDb({ dataDir })
  try {
    const rows = await db.query<{ streamId: string; reason: string | null }>(
      `select stream_id as "streamId", end_reason as reason from media_segments
       where task_id = $1 order by start_ms`,
      [taskId],
    )
    const ends = new Map<string, string[]>()
    for (const r of rows) ends.set(r.streamId, [...(ends.get(r.streamId) ?? []), r.reason ?? ''])
    return ends
  } finally {
    await db.close()
  }
}

type Client = ReturnType<typeof tiwClient>

/** Polls DescribeOnlineRecord until the task has `status`. */
export async function waitForStatus(
  client: Client,
  taskId: string,
  status: string,
  ms = 60_000,
  sdkAppId = TEST_APP.sdkAppId,
): Promise<Awaited<ReturnType<Client['DescribeOnlineRecord']>>> {
  const deadline = Date.now() + ms
  for (;;) {
    const d = await client.DescribeOnlineRecord({ SdkAppId: sdkAppId, TaskId: taskId })
    if (d.Status === status) return d
    if (Date.now() > deadline) throw new Error(`task ${taskId} is ${d.Status}, not ${status}`)
    await sleep(100)
  }
}

/**
 * Records `before` ms, pauses for `paused` ms, records `after` ms more, stops,
 * and waits for the result. Returns when the pause was asked (Unix ms) and
 * the final DescribeOnlineRecord.
 */
export async function pauseResumeStop(
  client: Client,
  taskId: string,
  ms: { before: number; paused: number; after: number },
): Promise<{ pausedAt: number; done: Awaited<ReturnType<Client['DescribeOnlineRecord']>> }> {
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: taskId }
  await sleep(ms.before)
  const pausedAt = Date.now()
  await client.PauseOnlineRecord(ids)
  await sleep(ms.paused)
  await client.ResumeOnlineRecord(ids)
  await sleep(ms.after)
  await client.StopOnlineRecord(ids)
  return { pausedAt, done: await waitForStatus(client, taskId, 'FINISHED') }
}

/** Pids of the server's per-stream recording processes (`ffmpeg … -i pipe:0`). */
export function segmentWriters(serverPid: number): number[] {
  return childProcesses(serverPid, (argv) => argv.includes('pipe:0'))
}

/** Pids of the server's mix processes (an ffmpeg writing a task's mix.mp4). */
export function mixers(serverPid: number): number[] {
  return childProcesses(serverPid, (argv) => argv.some((a) => a.endsWith('/mix.mp4')))
}

/** Whether `pid` runs no more (gone, or a zombie nobody reaped yet). */
export function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/** The child processes of `pid` whose arguments `match` says are wanted. */
export function childProcesses(pid: number, match: (argv: string[]) => boolean): number[] {
  const children: number[] = []
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim()
    if (list) children.push(...list.split(/\s+/).map(Number))
  }
  return children.filter((child) => {
    try {
      return match(readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0'))
    } catch {
      return false
    }
  })
}

/** Duration of a media file, ms. */
export async function durationOf(file: string): Promise<number> {
  return (await probe(tools.ffprobe, file)).durationMs
}

/** Video frames in a file, counted by decoding it. */
export async function frameCount(file: string): Promise<number> {
  const { runTool } = await import('../src/media/ffmpeg/ffmpeg-tools.ts')
  const out = await runTool(tools.ffprobe, [
    ...['-v', 'error', '-count_frames', '-select_streams', 'v:0'],
    ...['-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file],
  ])
  return Number(out.trim())
}
