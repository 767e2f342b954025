// Helpers of the hostile-tenant suites: a second app that abuses what it is
// allowed, the first app's view of the service while it does (API latency
// through the official client, /healthz), legal but huge boards written
// straight into a store before its server starts, and raw y-protocols
// sockets that send what an attacker sends and do not read what they get.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect as tcpConnect } from 'node:net'
import * as encoding from 'lib0/encoding'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { genUserSig } from '../src/apps/usersig.ts'
import { ManualClock } from '../src/clock.ts'
import { openDb } from '../src/store/db.ts'
import { migrate } from '../src/store/migrations.ts'
import { BoardStore } from '../src/whiteboard/store.ts'
import { sleep } from './media-helpers.ts'
import { TEST_APP, tiwClient } from './server-process.ts'

/** The abusing app: its own valid credentials and UserSig key, nothing more. */
export const ABUSER = {
  sdkAppId: 1400000066,
  secretId: 'AKIDhostiletenant0000066',
  secretKey: 'hostile-tenant-secret-key-000066',
  userSigKey: '6'.repeat(64),
}

/** Both apps, for ONLINE_RECORD_APPS. */
export const TWO_APPS = JSON.stringify([TEST_APP, ABUSER])

/** Percentiles of a list of latencies (ms). */
export function percentiles(ms: readonly number[]): {
  n: number
  p50: number
  p99: number
  max: number
} {
  const sorted = [...ms].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? 0 }
}

/**
 * The other app's view while `during` runs (and `minMs` at least): its API
 * requests through the official client and /healthz, one after another,
 * each timed.
 */
export async function watchOtherApp<T>(
  url: string,
  during: () => Promise<T>,
  /** Watched at least this long (during the abuse and after it). */
  minMs = 5000,
): Promise<{
  result: T
  api: ReturnType<typeof percentiles>
  health: ReturnType<typeof percentiles>
  failures: string[]
  /** The service's own longest event-loop delay meanwhile (its metrics), ms. */
  lagMs: number
}> {
  const client = tiwClient(url)
  await serviceLagMs(url)
  const api: number[] = []
  const health: number[] = []
  const failures: string[] = []
  let done = false
  const until = Date.now() + minMs
  const loop = (async () => {
    while (!done || Date.now() < until) {
      const a = performance.now()
      try {
        await client.DescribeOnlineRecordCallback({ SdkAppId: TEST_APP.sdkAppId })
      } catch (error) {
        failures.push(`api: ${(error as Error).message}`)
      }
      api.push(performance.now() - a)
      const h = performance.now()
      try {
        const r = await fetch(`${url}/healthz`)
        if (r.status !== 200) failures.push(`healthz ${r.status}`)
      } catch (error) {
        failures.push(`healthz: ${(error as Error).message}`)
      }
      health.push(performance.now() - h)
      await sleep(20)
    }
  })()
  try {
    const result = await during()
    done = true
    await loop
    const lagMs = await serviceLagMs(url)
    return { result, api: percentiles(api), health: percentiles(health), failures, lagMs }
  } finally {
    done = true
    await loop
  }
}

/** The service's longest event-loop delay since its metrics were last read, ms. */
export async function serviceLagMs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return (
    Number(/^online_record_nodejs_eventloop_lag_max_seconds ([0-9.e+-]+)$/m.exec(text)?.[1] ?? 0) *
    1000
  )
}

/** Resident memory of a process, MiB (Linux). */
export function rssMib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
  return Number(m?.[1] ?? 0) / 1024
}

/**
 * Updates that make a legal board of about `bytes`: pages of 2,000
 * rectangles, each page written by another client (so its items never
 * merge: the memory-heaviest legal board there is, about 28 times its bytes).
 */
export function bigBoardUpdates(bytes: number, seed = 100): Uint8Array[] {
  const base = new Y.Doc()
  base.clientID = seed
  base.getMap('meta').set('v', 1)
  const baseUpdate = Y.encodeStateAsUpdate(base)
  const baseVector = Y.encodeStateVector(base)
  const updates = [baseUpdate]
  let total = baseUpdate.length
  for (let c = 1; total < bytes; c++) {
    const doc = new Y.Doc()
    Y.applyUpdate(doc, baseUpdate)
    doc.clientID = seed * 100_000 + c
    doc.transact(() => {
      const page = new Y.Map<unknown>()
      doc.getMap('pages').set(`p${c}`, page)
      const els = new Y.Map<unknown>()
      page.set('els', els)
      for (let i = 0; i < 2000; i++) {
        const el = new Y.Map<unknown>()
        els.set(`e${i}`, el)
        el.set('kind', 'rect')
        el.set('color', '#FF0000')
        el.set('x', (i % 50) / 50)
        el.set('y', Math.floor(i / 50) / 40)
        el.set('w', 0.01)
        el.set('h', 0.01)
      }
    })
    const u = Y.encodeStateAsUpdate(doc, baseVector)
    doc.destroy()
    updates.push(u)
    total += u.length
  }
  return updates
}

/** Writes boards straight into the PGlite store of `dataDir`, before its server starts. */
export async function seedBoards(
  dataDir: string,
  boards: { sdkAppId: number; groupId: string; updates: Uint8Array[] }[],
): Promise<void> {
  const db = await openDb({ dataDir })
  try {
    await migrate(db, new ManualClock(Date.now()))
    const store = new BoardStore(db, 'seed')
    for (const b of boards) {
      for (let i = 0; i < b.updates.length; i += 20) {
        await store.append(
          b.updates.slice(i, i + 20).map((update) => ({
            sdkAppId: b.sdkAppId,
            groupId: b.groupId,
            atMs: Date.now() - 3_600_000,
            update,
          })),
        )
      }
    }
  } finally {
    await db.close()
  }
}

export interface RawBoard {
  ws: WebSocket
  opened: Promise<boolean>
  closed: Promise<{ code: number; reason: string }>
  /** Bytes it was sent. */
  received(): number
}

/**
 * A raw board socket of `app` as `userId` (a valid UserSig unless `userSig`
 * is given). `read: false` stops reading once open, as a client that asks
 * and never takes the answer.
 */
export function rawBoard(
  url: string,
  groupId: string,
  userId: string,
  o: { app?: { sdkAppId: number; userSigKey: string }; userSig?: string; read?: boolean } = {},
): RawBoard {
  const app = o.app ?? ABUSER
  const sig = o.userSig ?? genUserSig(app.sdkAppId, app.userSigKey, userId, 3600)
  const ws = new WebSocket(
    `${url.replace('http', 'ws')}/whiteboard/${encodeURIComponent(groupId)}?sdkappid=${app.sdkAppId}&userid=${encodeURIComponent(userId)}&usersig=${encodeURIComponent(sig)}`,
    { perMessageDeflate: false },
  )
  let received = 0
  ws.on('error', () => {})
  ws.on('message', (data: Buffer) => {
    received += data.length
  })
  const opened = new Promise<boolean>((resolve) => {
    ws.once('open', () => {
      if (o.read === false) ws.pause()
      resolve(true)
    })
    ws.once('close', () => resolve(false))
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  return { ws, opened, closed, received: () => received }
}

/** A y-protocols sync message: step 1 (a state vector), or an update. */
export function syncStep1(): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  encoding.writeVarUint(e, 0)
  encoding.writeVarUint8Array(e, new Uint8Array([0]))
  return encoding.toUint8Array(e)
}
export function syncUpdate(update: Uint8Array): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  encoding.writeVarUint(e, 2)
  encoding.writeVarUint8Array(e, update)
  return encoding.toUint8Array(e)
}

/** An update outside the model (meta.v 2) from a client of its own: 23 bytes or so. */
export function badUpdate(client: number): Uint8Array {
  const doc = new Y.Doc()
  doc.clientID = client
  doc.getMap('meta').set('v', 2)
  return Y.encodeStateAsUpdate(doc)
}

/** `count` tiny legal updates of one client, one after another (each moves meta.page). */
export function tinyUpdates(client: number, count: number): Uint8Array[] {
  const doc = new Y.Doc()
  doc.clientID = client
  const out: Uint8Array[] = []
  for (let n = 0; n < count; n++) {
    const before = Y.encodeStateVector(doc)
    doc.getMap('meta').set('page', `p${n % 7}`)
    out.push(Y.encodeStateAsUpdate(doc, before))
  }
  doc.destroy()
  return out
}

/**
 * A WebSocket client by hand, for floods that cost the sender nothing: the
 * upgrade, then `frames` copies of one masked binary frame of `frameBytes`,
 * written as fast as the service takes them, for at most `ms`. Resolves with
 * the close code the service sent (0 if none) and how many frames went out.
 */
export async function floodSocket(
  url: string,
  path: string,
  o: { frames: number; frameBytes: number; ms: number },
): Promise<{ code: number; reason: string; sent: number }> {
  const { hostname, port } = new URL(url)
  const socket = tcpConnect(Number(port), hostname)
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  )
  // One masked frame, sent again and again.
  const payload = Buffer.alloc(o.frameBytes, 1)
  const head = Buffer.alloc(14)
  head[0] = 0x82 // FIN, binary
  head[1] = 0x80 | 127
  head.writeBigUInt64BE(BigInt(o.frameBytes), 2)
  const mask = randomBytes(4)
  mask.copy(head, 10)
  for (let i = 0; i < payload.length; i++)
    payload[i] = (payload[i] as number) ^ (mask[i & 3] as number)
  const frame = Buffer.concat([head, payload])
  let received = Buffer.alloc(0)
  socket.on('data', (d: Buffer) => {
    received = Buffer.concat([received, d]).subarray(-4096)
  })
  let ended = false
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      ended = true
      resolve()
    }),
  )
  const drained = () => new Promise<void>((resolve) => socket.once('drain', resolve))
  const until = Date.now() + o.ms
  let sent = 0
  while (sent < o.frames && !ended && Date.now() < until) {
    if (!socket.write(frame))
      await Promise.race([drained(), closed, sleep(Math.max(0, until - Date.now()))])
    sent++
  }
  await Promise.race([closed, sleep(Math.max(1000, until - Date.now()))])
  socket.destroy()
  // The close frame the service sent, if any: 0x88, length, code, reason.
  const at = received.lastIndexOf(0x88)
  if (at < 0 || at + 4 > received.length) return { code: 0, reason: '', sent }
  const length = (received[at + 1] as number) & 0x7f
  return {
    code: received.readUInt16BE(at + 2),
    reason: received.subarray(at + 4, at + 2 + length).toString(),
    sent,
  }
}
