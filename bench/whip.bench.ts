// WHIP ingest: what recording browser publishers costs the service.
//
// 1. CPU per stream: STREAMS publishers from one headless chromium (one peer
//    connection each, the fake camera and microphone, H.264 + Opus), one room
//    and task each, recorded by a real service process; the CPU of the service
//    and its children (the media worker, the recording processes) over a
//    window, per stream, at 640x480 and at 1280x720. Baseline, in the same
//    run: the same number of RTMP publishers at the same size (ffmpeg copying
//    a pre-encoded H.264 + AAC file at a similar bitrate), the RTMP ingest's
//    cost. Target: ≤ 3 % of a core per 720p stream (LiveKit budgets its track
//    egress at 50 %).
// 2. From the POST to the first frame handed to a recording process (the
//    task already recording), p50/p95/max of CYCLES publishes. Target: p95 ≤ 1.5 s.
// What post-processing a browser's codecs costs (VP8 → H.264, Opus → AAC) is
// transcode.bench.ts's.
// Needs /usr/bin/chromium (Debian's; apt-get install chromium) for 1 and 2.
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { chromium } from 'playwright-core'
import { genUserSig } from '../packages/server/src/apps/usersig.ts'
import { resolveMediaTools, runTool } from '../packages/server/src/media/ffmpeg/ffmpeg-tools.ts'
import { chromiumArgs } from '../packages/server/test/browser.ts'
import { TEST_APP, tiwClient } from '../packages/server/test/server-process.ts'
import { publishFrom, unpublishFrom } from '../packages/server/test/whip-helpers.ts'
import { children, cpuOver } from './proc.ts'
import type { Measurement } from './run.ts'
import { cli, spawnService } from './service-process.ts'

const STREAMS = Number(process.env.BENCH_WHIP_STREAMS ?? 4)
const ROUNDS = 3
const WINDOW_MS = 12_000
const CYCLES = 12
const APP = TEST_APP
const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-whip-'))
const hasChromium = existsSync('/usr/bin/chromium')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sig = (user: string) => genUserSig(APP.sdkAppId, APP.userSigKey, user, 86_400)
const spread = (xs: number[], digits = 1) => {
  const s = [...xs].sort((a, b) => a - b)
  return `${(s[0] as number).toFixed(digits)}/${(s[Math.floor(s.length / 2)] as number).toFixed(digits)}/${(s.at(-1) as number).toFixed(digits)}`
}

async function startService(name: string) {
  const server = await spawnService(
    [cli, 'serve'],
    {
      ONLINE_RECORD_DATA_DIR: join(dir, name),
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_LOG_LEVEL: 'silent',
      ONLINE_RECORD_RATE_LIMIT: '10000',
      ONLINE_RECORD_WHIP_MAX_CPU: '1',
      ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
      ONLINE_RECORD_APPS: JSON.stringify([{ ...APP, maxConcurrentTasks: 10_000 }]),
    },
    /WHIP ingest listening on/,
  )
  const output = server.output()
  const url = (/API listening on (\S+)/.exec(output) as RegExpExecArray)[1] as string
  const rtmp = (/RTMP ingest listening on (rtmp:\/\/[^/\s]+)/.exec(output) as RegExpExecArray)[1]
  return { child: server.child, url, rtmp: rtmp as string, client: tiwClient(url) }
}

type Service = Awaited<ReturnType<typeof startService>>

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN)
}

let browser: Browser | undefined
/** A page of the test WHIP client, on `origin` (a secure context: 127.0.0.1 over http). */
async function chromiumPage(origin: string): Promise<Page> {
  browser ??= await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: chromiumArgs({ media: true }),
  })
  const page = await browser.newPage()
  await page.goto(`${origin}/healthz`)
  const html = readFileSync(
    new URL('../packages/server/test/pages/whip-client.html', import.meta.url),
    'utf8',
  )
  await page.setContent(html)
  return page
}

/** Starts one task per room, records the window, stops them and waits until they are finished. */
async function recordRounds(
  s: Service,
  rooms: number[],
): Promise<{ perStream: number[]; kbps: number[] }> {
  const perStream: number[] = []
  const kbps: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    const tasks: string[] = []
    for (const room of rooms) {
      const user = `tic_record_user_${room}_${round}`
      const { TaskId } = await s.client.StartOnlineRecord({
        SdkAppId: APP.sdkAppId,
        RoomId: room,
        RecordUserId: user,
        RecordUserSig: sig(user),
      })
      tasks.push(TaskId as string)
    }
    await sleep(3000) // every stream past its first key frame
    const recording = await metric(s.url, 'online_record_recording_processes')
    if (recording !== rooms.length)
      console.error(`whip.bench: ${recording}/${rooms.length} streams recording`)
    const pid = s.child.pid as number
    const used = await cpuOver(WINDOW_MS, () => [pid, ...children(pid)])
    perStream.push((used / (WINDOW_MS / 1000) / rooms.length) * 100)
    for (const TaskId of tasks) await s.client.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId })
    for (const TaskId of tasks) {
      for (;;) {
        const d = await s.client.DescribeOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId })
        if (d.Status === 'FINISHED') {
          for (const v of d.VideoInfos ?? [])
            if ((v.VideoDuration ?? 0) > 0)
              kbps.push(((v.VideoSize ?? 0) * 8) / (v.VideoDuration as number))
          break
        }
        await sleep(200)
      }
    }
  }
  return { perStream, kbps }
}

/** A 10 s H.264 + AAC file to loop into RTMP, at about the browser's bitrate. */
async function rtmpSource(width: number, height: number, kbps: number): Promise<string> {
  const file = join(dir, `source-${width}x${height}.flv`)
  await runTool(tools.ffmpeg, [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=30:duration=10`],
    ...['-f', 'lavfi', '-i', 'sine=frequency=440:duration=10'],
    ...['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60'],
    ...['-b:v', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${kbps}k`, '-pix_fmt', 'yuv420p'],
    ...['-c:a', 'aac', '-b:a', '64k', file],
  ])
  return file
}

async function liveCost(width: number, height: number) {
  // WHIP: chromium publishers, one room each.
  const whip = await startService(`whip-${width}`)
  const pages: Page[] = []
  const rooms = Array.from({ length: STREAMS }, (_, i) => 31_000 + i)
  try {
    for (const room of rooms) {
      const page = await chromiumPage(whip.url)
      pages.push(page)
      const user = `cam${room}`
      const r = await publishFrom(page, {
        url: `${whip.url}/whip/${room}?sdkappid=${APP.sdkAppId}&userid=${user}`,
        token: sig(user),
        codec: 'H264',
        width,
        height,
        maintain: true,
      })
      if (r.status !== 201) throw new Error(`publish refused: ${r.status} ${r.reason}`)
    }
    await sleep(5000) // past the bandwidth estimate's ramp-up
    const subject = await recordRounds(whip, rooms)
    const bitrate = subject.kbps.reduce((a, b) => a + b, 0) / subject.kbps.length
    for (const page of pages) await page.close()
    whip.child.kill('SIGTERM')

    // RTMP: the same number of ffmpeg publishers copying a file at that bitrate.
    const file = await rtmpSource(width, height, Math.max(200, Math.round(bitrate - 64)))
    const rtmp = await startService(`rtmp-${width}`)
    const publishers: ChildProcess[] = rooms.map((room) =>
      spawn(
        tools.ffmpeg,
        [
          ...['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', file],
          ...['-c', 'copy', '-f', 'flv'],
          `${rtmp.rtmp}/push/${room}?sdkappid=${APP.sdkAppId}&userid=cam${room}&usersig=${sig(`cam${room}`)}`,
        ],
        { stdio: 'ignore' },
      ),
    )
    await sleep(3000)
    const baseline = await recordRounds(rtmp, rooms)
    for (const p of publishers) p.kill('SIGKILL')
    rtmp.child.kill('SIGTERM')
    const median = (xs: number[]) =>
      [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
    return {
      subject: subject.perStream,
      baseline: baseline.perStream,
      bitrate,
      ratio: median(subject.perStream) / median(baseline.perStream),
    }
  } finally {
    for (const page of pages) await page.close().catch(() => {})
    whip.child.kill('SIGTERM')
  }
}

async function firstFrame(): Promise<number[]> {
  const s = await startService('first-frame')
  const room = 32_000
  const user = `tic_record_user_${room}_first`
  const { TaskId } = await s.client.StartOnlineRecord({
    SdkAppId: APP.sdkAppId,
    RoomId: room,
    RecordUserId: user,
    RecordUserSig: sig(user),
  })
  const times: number[] = []
  try {
    for (let i = 0; i < CYCLES; i++) {
      const page = await chromiumPage(s.url)
      const before = await metric(s.url, 'online_record_recording_processes')
      const r = await publishFrom(page, {
        url: `${s.url}/whip/${room}?sdkappid=${APP.sdkAppId}&userid=cam`,
        token: sig('cam'),
        codec: 'H264',
      })
      if (r.status !== 201) throw new Error(`publish refused: ${r.status} ${r.reason}`)
      while ((await metric(s.url, 'online_record_recording_processes')) <= before) {
        if (Date.now() - (r.postedAt as number) > 10_000) throw new Error('no frame in 10 s')
        await sleep(20)
      }
      times.push(Date.now() - (r.postedAt as number))
      await unpublishFrom(page, r.location as string)
      await page.close()
      while ((await metric(s.url, 'online_record_recording_processes')) > before) await sleep(50)
    }
  } finally {
    await s.client.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: TaskId as string })
    s.child.kill('SIGTERM')
  }
  return times
}

export const measurements: Measurement[] = [
  ...[
    [640, 480],
    [1280, 720],
  ].map(
    ([w, h]): Measurement => ({
      name: `WHIP recording, CPU per ${w}x${h} stream (${STREAMS} chromium publishers), % of a core min/median/max`,
      target: h === 720 ? '≤ 3 % a stream' : 'reported',
      async run() {
        if (!hasChromium) return { figure: 'not run: no /usr/bin/chromium', met: false }
        const r = await liveCost(w as number, h as number)
        const median = [...r.subject].sort((a, b) => a - b)[1] as number
        return {
          figure: `${spread(r.subject, 2)} % (${Math.round(r.bitrate)} kbit/s); RTMP at that bitrate ${spread(r.baseline, 2)} %; WHIP/RTMP ${r.ratio.toFixed(2)}`,
          met: h === 720 ? median <= 3 : true,
        }
      },
    }),
  ),
  {
    name: `WHIP, POST to the first frame handed to a recording process (${CYCLES} publishes), ms p50/p95/max`,
    target: 'p95 ≤ 1500 ms',
    async run() {
      if (!hasChromium) return { figure: 'not run: no /usr/bin/chromium', met: false }
      const times = (await firstFrame()).sort((a, b) => a - b)
      const at = (q: number) =>
        times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)] as number
      await browser?.close()
      rmSync(dir, { recursive: true, force: true })
      return {
        figure: `${at(0.5)}/${at(0.95)}/${times.at(-1)} ms`,
        met: at(0.95) <= 1500,
      }
    },
  },
]
