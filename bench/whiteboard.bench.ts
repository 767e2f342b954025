// The whiteboard: rendering a busy 10-minute class into its video, and the
// relay between clients of one board.
//
// Rendering: 600 s at 1280x960 with an update every 200 ms (3,000 changed
// frames: pen strokes, shapes, a text every 30 s, a new page every 2 min).
// Subject: the whiteboard stage's renderer, in its own process as the stage
// runs it (only changed frames drawn and encoded, variable frame rate). Baseline: the same history drawn and encoded
// at every 15 fps tick (the naive constant-rate way). Media seconds per wall
// second; CPU-seconds per media minute printed beside.
//
// Relay: 30 clients on one board of one service process (PGlite, or the
// PostgreSQL of BENCH_WHITEBOARD_DATABASE_URL), each sending 50 updates a
// second (a point appended to its stroke); the time from a send to its
// arrival at three of the others, p50/p99/max.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { genUserSig } from '../packages/server/src/apps/usersig.ts'
import { resolveMediaTools } from '../packages/server/src/media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../packages/server/src/media/ffmpeg/probe.ts'
import { renderInProcess } from '../packages/server/src/whiteboard/render-process.ts'
import type { StoredUpdate } from '../packages/server/src/whiteboard/store.ts'
import type { Comparison, Measurement } from './run.ts'
import { cli, spawnService } from './service-process.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-bench-board-'))
const SECONDS = 600
const T0 = Date.UTC(2026, 11, 2, 9)

/** The history of a busy class: one update every 200 ms. */
export function busyClass(): StoredUpdate[] {
  const doc = new Y.Doc()
  const updates: StoredUpdate[] = []
  let seq = 0
  const record = (atMs: number, change: () => void) => {
    const sv = Y.encodeStateVector(doc)
    doc.transact(change)
    updates.push({ seq: ++seq, atMs, update: Y.encodeStateAsUpdate(doc, sv) })
  }
  const meta = doc.getMap('meta')
  const pages = doc.getMap('pages')
  const newPage = (id: string) => {
    const p = new Y.Map<unknown>()
    p.set('bg', { color: '#FFFFFF' })
    p.set('els', new Y.Map())
    p.set('order', new Y.Array())
    pages.set(id, p)
    meta.set('page', id)
  }
  const current = () => pages.get(meta.get('page') as string) as Y.Map<unknown>
  const add = (id: string, fields: Record<string, unknown>) => {
    const el = new Y.Map<unknown>()
    for (const [k, v] of Object.entries(fields)) el.set(k, v)
    ;(current().get('els') as Y.Map<unknown>).set(id, el)
    ;(current().get('order') as Y.Array<string>).push([id])
    return el
  }
  record(T0, () => {
    meta.set('v', 1)
    meta.set('ratio', '4:3')
    newPage('p0')
  })
  let stroke: Y.Array<number> | undefined
  for (let i = 1; i < (SECONDS * 1000) / 200; i++) {
    const at = T0 + i * 200
    const t = i / 5
    record(at, () => {
      if (i % 600 === 0) newPage(`p${i}`)
      else if (i % 150 === 0)
        add(`t${i}`, {
          kind: 'text',
          color: '#1D1F23',
          x: 0.05,
          y: (i % 900) / 1000,
          size: 0.04,
          text: `Step ${i / 150}: 分数 ½ + ¼ = ¾`,
        })
      else if (i % 40 === 0)
        add(`r${i}`, {
          kind: i % 80 ? 'rect' : 'ellipse',
          color: '#CC0000',
          width: 0.004,
          x: (i % 700) / 1000,
          y: (i % 500) / 1000,
          w: 0.15,
          h: 0.1,
        })
      else if (i % 10 === 1 || stroke === undefined) {
        stroke = new Y.Array<number>()
        stroke.push([0.1 + (t % 60) / 80, 0.2 + ((t * 7) % 50) / 80])
        add(`s${i}`, { kind: 'path', color: '#0055AA', width: 0.005, points: stroke })
      } else
        stroke.push([
          0.1 + (t % 60) / 80 + (i % 10) * 0.01,
          0.2 + ((t * 7) % 50) / 80 + Math.sin(i) * 0.02,
        ])
    })
  }
  return updates
}

let history: StoredUpdate[] | undefined
const childCpu = () => {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[13]) + Number(fields[14])) / 100
}
const ownCpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}
let round = 0

const render = (label: string, everyTick: boolean) => async () => {
  history ??= busyClass()
  const out = join(dir, `board-${round++}.mp4`)
  const cpu = childCpu() + ownCpu()
  const started = performance.now()
  const made = await renderInProcess(
    {
      timeline: { startMs: T0 - 1, stopMs: T0 + SECONDS * 1000, pauses: [] },
      before: [],
      during: history,
      width: 1280,
      height: 960,
      ffmpeg: tools.ffmpeg,
      out,
      everyTick,
    },
    join(dir, 'job'),
  )
  const seconds = (performance.now() - started) / 1000
  const info = await probe(tools.ffprobe, out)
  if (made === undefined || Math.abs(info.durationMs + made.playTimeMs - SECONDS * 1000) > 300) {
    throw new Error(`${label}: ${info.durationMs} ms from ${made?.playTimeMs}`)
  }
  rmSync(out, { force: true })
  console.error(
    `whiteboard.bench: ${label}: ${made.frames} frames, ${(SECONDS / seconds).toFixed(1)}× real time, ${(((childCpu() + ownCpu() - cpu) / SECONDS) * 60).toFixed(1)} CPU-s per media minute`,
  )
  return SECONDS / seconds
}

export const comparisons: Comparison[] = [
  {
    name: 'rendering a busy 10-minute class at 1280x960 (3,000 changed frames)',
    targetOps: 15,
    rounds: 3,
    baseline: { name: '× real time: every tick drawn', measure: render('every tick', true) },
    subject: {
      name: '× real time: changed frames only',
      measure: render('changed frames only', false),
    },
    teardown: async () => rmSync(dir, { recursive: true, force: true }),
  },
]

const APP = {
  sdkAppId: 1400000001,
  secretId: 'AKIDbenchboard000000001',
  secretKey: 'bench-board-secret-000000000001',
  userSigKey: 'b'.repeat(64),
}

function frame(write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}
const updateMessage = (update: Uint8Array) =>
  frame((e) => {
    encoding.writeVarUint(e, 0)
    encoding.writeVarUint(e, 2)
    encoding.writeVarUint8Array(e, update)
  })

async function relayLatency(): Promise<{ figure: string; met: boolean }> {
  const data = mkdtempSync(join(tmpdir(), 'online-record-bench-relay-'))
  const server = await spawnService(
    [cli, 'serve'],
    {
      ONLINE_RECORD_DATA_DIR: data,
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
      ONLINE_RECORD_APPS: JSON.stringify([APP]),
      ONLINE_RECORD_LOG_LEVEL: 'warn',
      // BENCH_WHITEBOARD_DATABASE_URL: measure on PostgreSQL instead of PGlite.
      ...(process.env.BENCH_WHITEBOARD_DATABASE_URL
        ? { DATABASE_URL: process.env.BENCH_WHITEBOARD_DATABASE_URL }
        : {}),
    },
    /listening on (\S+)/,
  )
  const url = (/listening on (\S+)/.exec(server.output()) as RegExpExecArray)[1] as string
  const CLIENTS = 30
  const RATE = 50
  const sent = new Map<string, number>()
  const latencies: number[] = []
  let measuring = false
  const open = (i: number) =>
    new Promise<WebSocket>((resolve, reject) => {
      const user = `u${i}`
      const sig = genUserSig(APP.sdkAppId, APP.userSigKey, user, 3600)
      const ws = new WebSocket(
        `${url.replace('http', 'ws')}/whiteboard/bench?sdkappid=${APP.sdkAppId}&userid=${user}&usersig=${sig}`,
      )
      ws.binaryType = 'nodebuffer'
      ws.once('open', () => resolve(ws))
      ws.once('error', reject)
    })
  try {
    // The board: one page; then each client's own stroke.
    const setup = new Y.Doc()
    setup.transact(() => {
      setup.getMap('meta').set('page', 'p1')
      const p = new Y.Map<unknown>()
      p.set('els', new Y.Map())
      p.set('order', new Y.Array())
      setup.getMap('pages').set('p1', p)
    })
    const sockets = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => open(i)))
    sockets[0]?.send(updateMessage(Y.encodeStateAsUpdate(setup)))
    const docs = sockets.map((ws, i) => {
      const doc = new Y.Doc()
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(setup))
      const sv = Y.encodeStateVector(doc)
      const points = new Y.Array<number>()
      points.push([0.5, 0.5])
      const el = new Y.Map<unknown>()
      el.set('kind', 'path')
      el.set('color', '#000000')
      el.set('points', points)
      ;((doc.getMap('pages').get('p1') as Y.Map<unknown>).get('els') as Y.Map<unknown>).set(
        `s${i}`,
        el,
      )
      ws.send(updateMessage(Y.encodeStateAsUpdate(doc, sv)))
      return { doc, points }
    })
    // Three receivers decode what they get and match it to its send.
    for (const ws of sockets.slice(-3)) {
      ws.on('message', (buf: Buffer) => {
        if (!measuring) return
        const d = decoding.createDecoder(new Uint8Array(buf.buffer, buf.byteOffset, buf.length))
        if (decoding.readVarUint(d) !== 0 || decoding.readVarUint(d) !== 2) return
        const { structs } = Y.decodeUpdate(decoding.readVarUint8Array(d))
        const now = performance.now()
        for (const s of structs) {
          const at = sent.get(`${s.id.client}:${s.id.clock}`)
          if (at !== undefined) latencies.push(now - at)
        }
      })
    }
    await new Promise((r) => setTimeout(r, 1000))
    const stop = performance.now() + 12_000
    let tick = 0
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        tick++
        measuring = tick > 50 // a second to warm up
        if (performance.now() > stop) {
          clearInterval(timer)
          resolve()
          return
        }
        for (const [i, c] of docs.entries()) {
          const sv = Y.encodeStateVector(c.doc)
          const clock = Y.getState(c.doc.store, c.doc.clientID)
          c.points.push([0.5 + ((tick % 100) - 50) / 200, 0.5 + Math.sin(tick / 10 + i) / 4])
          sent.set(`${c.doc.clientID}:${clock}`, performance.now())
          sockets[i]?.send(updateMessage(Y.encodeStateAsUpdate(c.doc, sv)))
        }
      }, 1000 / RATE)
    })
    for (const ws of sockets) ws.close()
  } finally {
    server.child.kill('SIGTERM')
    await new Promise((r) => server.child.once('exit', r))
    rmSync(data, { recursive: true, force: true })
  }
  latencies.sort((a, b) => a - b)
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN
  const p99 = q(0.99)
  return {
    figure: `p50 ${q(0.5).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${(latencies.at(-1) ?? Number.NaN).toFixed(1)} ms over ${latencies.length} arrivals`,
    met: p99 <= 20,
  }
}

export const measurements: Measurement[] = [
  {
    name: 'whiteboard relay: 30 clients × 50 updates/s on one board, send to arrival',
    target: 'p99 ≤ 20 ms',
    run: relayLatency,
  },
]
