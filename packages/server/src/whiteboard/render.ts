// The whiteboard video: a board's history replayed on a task's replay
// timeline and drawn (@napi-rs/canvas, fonts shipped with the project) into
// an MP4. Only the frames where the board changed are drawn and encoded, as
// uncompressed pictures with their times in Matroska piped into ffmpeg
// (variable frame rate, a key frame at least every 10 s); updates made during
// a pause appear at the resume instant, since a pause is cut from the timeline.
// What it costs is estimated before anything is drawn and kept within the
// render's CPU budget (render-cost.ts): a board that could not be drawn within
// it is refused, and frames of a page too costly to draw at every tick are
// gathered into later ones.
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { type Canvas, createCanvas, GlobalFonts, type SKRSContext2D } from '@napi-rs/canvas'
import * as Y from 'yjs'
import { MatroskaWriter } from '../media/capture/matroska.ts'
import { replayTime, type Timeline, totalTime } from '../media/post/timeline.ts'
import type { AddressPolicy } from '../net/url-policy.ts'
import { cpuMsOf, spawnTied } from '../proc/children.ts'
import { BoardPictures, type PictureStats } from './pictures.ts'
import {
  DrawCost,
  FramePacer,
  frameCostUs,
  REFUSE_OVER,
  RENDER_BUDGET,
  type RenderBudget,
  RenderLimitError,
  readCostUs,
  renderCpuMs,
  START_US,
} from './render-cost.ts'
import type { StoredUpdate } from './store.ts'

/** Frames per second of the board's clock: changes within one tick make one frame. */
export const BOARD_FPS = 15
/** A frame (the same picture) at least this often, each a key frame. */
const KEY_INTERVAL_MS = 10_000

let fonts: string | undefined
/**
 * Registers the shipped fonts (Noto Sans for Latin, Noto Sans SC for CJK)
 * once; returns the font-family list to draw with. The CJK font comes in
 * subsets by Unicode range, each its own family, so that every one is a
 * fallback of the list.
 */
export function loadFonts(): string {
  if (fonts !== undefined) return fonts
  const require = createRequire(import.meta.url)
  const families: string[] = []
  for (const pkg of ['@fontsource/noto-sans', '@fontsource/noto-sans-sc']) {
    const dir = join(dirname(require.resolve(`${pkg}/package.json`)), 'files')
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('-400-normal.woff2'))
      .sort()
    for (const file of files) {
      const family = `board-${families.length}`
      GlobalFonts.registerFromPath(join(dir, file), family)
      families.push(family)
    }
  }
  fonts = families.join(', ')
  return fonts
}

type Rect = { x: number; y: number; w: number; h: number }

/** The board's rectangle in a `width`x`height` picture: its ratio, letterboxed and centred. */
export function boardRect(width: number, height: number, ratio: string | undefined): Rect {
  const [rw, rh] = (ratio ?? '4:3').split(':').map(Number) as [number, number]
  const r = rw > 0 && rh > 0 ? rw / rh : 4 / 3
  const w = Math.min(width, Math.round(height * r))
  const h = Math.min(height, Math.round(width / r))
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h }
}

const num = (v: unknown, fallback = 0) =>
  typeof v === 'number' && Number.isFinite(v) ? v : fallback
const str = (v: unknown, fallback: string) => (typeof v === 'string' ? v : fallback)

/** Draws the page the board shows, as model v1 describes it. */
export function drawBoard(
  ctx: SKRSContext2D,
  doc: Y.Doc,
  width: number,
  height: number,
  images?: BoardPictures,
): void {
  const meta = doc.getMap('meta')
  const pages = doc.getMap('pages')
  ctx.fillStyle = '#000000'
  ctx.fillRect(0, 0, width, height)
  const r = boardRect(width, height, meta.get('ratio') as string | undefined)
  const pageId = meta.get('page')
  const page = (typeof pageId === 'string' ? pages.get(pageId) : undefined) as
    | Y.Map<unknown>
    | undefined
  const bg = page?.get('bg') as { color?: string; image?: unknown } | undefined
  ctx.fillStyle = str(bg?.color, '#FFFFFF')
  ctx.fillRect(r.x, r.y, r.w, r.h)
  const bgImage = typeof bg?.image === 'string' ? images?.get(bg.image) : undefined
  if (bgImage) ctx.drawImage(bgImage, r.x, r.y, r.w, r.h)
  if (!(page instanceof Y.Map)) return
  const els = page.get('els')
  if (!(els instanceof Y.Map)) return
  const order = page.get('order')
  const ids = order instanceof Y.Array ? (order.toArray() as string[]) : []
  const drawn = new Set<string>()
  ctx.save()
  ctx.beginPath()
  ctx.rect(r.x, r.y, r.w, r.h)
  ctx.clip()
  const draw = (id: string) => {
    if (drawn.has(id)) return
    drawn.add(id)
    const el = els.get(id)
    if (el instanceof Y.Map) drawElement(ctx, el as Y.Map<unknown>, r, 0, images)
  }
  for (const id of ids) draw(id)
  // Elements missing from `order` are drawn after the others, by id.
  for (const id of [...els.keys()].sort()) draw(id)
  ctx.restore()
}

/** Draws an element; a path from its number `from` on (its earlier points are drawn already). */
function drawElement(
  ctx: SKRSContext2D,
  el: Y.Map<unknown>,
  r: Rect,
  from = 0,
  images?: BoardPictures,
): void {
  const X = (v: unknown) => r.x + num(v) * r.w
  const Y_ = (v: unknown) => r.y + num(v) * r.h
  const color = str(el.get('color'), '#000000')
  const fill = el.get('fill')
  ctx.strokeStyle = color
  ctx.lineWidth = Math.max(1, num(el.get('width'), 0.004) * r.h)
  ctx.lineCap = 'round'
  ctx.lineJoin = 'round'
  const kind = el.get('kind')
  const points = el.get('points')
  const p = points instanceof Y.Array ? (points.toArray() as number[]) : []
  const x = X(el.get('x'))
  const y = Y_(el.get('y'))
  const w = num(el.get('w')) * r.w
  const h = num(el.get('h')) * r.h
  if (kind === 'path' || kind === 'line') {
    const n = kind === 'line' ? Math.min(p.length, 4) : p.length
    const start = kind === 'line' ? 0 : from - (from % 2)
    if (n - start < 2) return
    ctx.beginPath()
    ctx.moveTo(X(p[start]), Y_(p[start + 1]))
    for (let i = start + 2; i + 1 < n; i += 2) ctx.lineTo(X(p[i]), Y_(p[i + 1]))
    // A single point is a dot.
    if (n - start === 2) ctx.lineTo(X(p[start]) + 0.01, Y_(p[start + 1]))
    ctx.stroke()
  } else if (kind === 'rect') {
    if (typeof fill === 'string') {
      ctx.fillStyle = fill
      ctx.fillRect(x, y, w, h)
    }
    ctx.strokeRect(x, y, w, h)
  } else if (kind === 'ellipse') {
    ctx.beginPath()
    ctx.ellipse(x + w / 2, y + h / 2, Math.abs(w / 2), Math.abs(h / 2), 0, 0, 2 * Math.PI)
    if (typeof fill === 'string') {
      ctx.fillStyle = fill
      ctx.fill()
    }
    ctx.stroke()
  } else if (kind === 'text') {
    const size = Math.max(1, num(el.get('size'), 0.04) * r.h)
    ctx.fillStyle = color
    ctx.font = `${size}px ${loadFonts()}`
    ctx.textBaseline = 'top'
    let line = y
    for (const text of str(el.get('text'), '').split('\n')) {
      ctx.fillText(text, x, line)
      line += size * 1.25
    }
  } else if (kind === 'image') {
    const src = el.get('src')
    const image = typeof src === 'string' ? images?.get(src) : undefined
    if (image) ctx.drawImage(image, x, y, w, h)
  }
}

/**
 * Draws frame after frame of one doc, only what changed when it can: while
 * the changes since the last frame are strokes growing on top and new
 * elements on top of the page shown, they are drawn over the last picture
 * (opaque strokes with round joins: the same picture as a full redraw but
 * for anti-aliased edge pixels where a stroke's pieces meet, well under 1 %);
 * anything else (a move, a delete, a page switch, a change under other
 * elements) redraws the page. Skia rasterises a whole busy page in ~8 ms at
 * 1280x960; a stroke's new points in a fraction of that.
 */
export class BoardPainter {
  readonly #doc: Y.Doc
  #full = true
  /** Paths that grew: how many numbers were drawn before. */
  readonly #grown = new Map<Y.Map<unknown>, number>()
  /** Element ids appended to the page's order. */
  #added: string[] = []
  /** Element ids added to the page's elements. */
  readonly #addedEls = new Set<string>()
  /** The topmost element before this frame's additions. */
  #top: string | undefined
  /** Frames drawn whole so far. */
  fullRedraws = 0

  constructor(doc: Y.Doc) {
    this.#doc = doc
    doc.getMap('meta').observe(() => {
      this.#full = true
    })
    // biome-ignore lint/suspicious/noExplicitAny: Yjs types its events so.
    doc.getMap('pages').observeDeep((events: Y.YEvent<any>[]) => this.#note(events))
  }

  // biome-ignore lint/suspicious/noExplicitAny: Yjs types its events so.
  #note(events: Y.YEvent<any>[]): void {
    if (this.#full) return
    const shown = this.#doc.getMap('meta').get('page')
    for (const e of events) {
      const path = e.path
      if (path.length === 0) {
        if (typeof shown === 'string' && e.changes.keys.has(shown)) this.#full = true
        continue
      }
      if (path[0] !== shown) continue
      const where = path.slice(1).join('/')
      if (where === 'order') {
        const delta = e.changes.delta
        const retain = delta[0]?.retain ?? 0
        const inserted = delta.find((d) => d.insert)?.insert
        const length = (e.target as Y.Array<string>).length
        const earlier = new Set((e.target as Y.Array<string>).toArray().slice(0, retain))
        if (
          delta.some((d) => d.delete) ||
          !Array.isArray(inserted) ||
          retain + inserted.length !== length ||
          // An id listed twice is drawn where it is first listed.
          (inserted as string[]).some((id) => earlier.has(id) || this.#added.includes(id))
        )
          this.#full = true
        else this.#added.push(...(inserted as string[]))
      } else if (where === 'els') {
        for (const [id, change] of e.changes.keys) {
          if (change.action === 'add') this.#addedEls.add(id)
          else this.#full = true
        }
      } else if (path.length === 4 && path[1] === 'els' && path[3] === 'points') {
        const el = e.target.parent as Y.Map<unknown>
        const delta = e.changes.delta
        const retain = delta[0]?.retain ?? 0
        const inserted = delta.find((d) => d.insert)?.insert
        const appended =
          !delta.some((d) => d.delete) &&
          Array.isArray(inserted) &&
          retain + inserted.length === (e.target as Y.Array<number>).length
        if (this.#added.includes(path[2] as string)) continue
        if (!appended || path[2] !== this.#top) this.#full = true
        else if (!this.#grown.has(el)) this.#grown.set(el, retain)
      } else this.#full = true
    }
  }

  #page(): Y.Map<unknown> | undefined {
    const shown = this.#doc.getMap('meta').get('page')
    const page = typeof shown === 'string' ? this.#doc.getMap('pages').get(shown) : undefined
    return page instanceof Y.Map ? (page as Y.Map<unknown>) : undefined
  }

  /** Whether the next paint redraws the page whole. */
  #whole(page: Y.Map<unknown> | undefined): boolean {
    const els = page?.get('els')
    const order = page?.get('order')
    // Drawn incrementally only while order lists each element once and every
    // new element was appended to it in this frame (as a full redraw would place them).
    return (
      this.#full ||
      !(els instanceof Y.Map) ||
      !(order instanceof Y.Array) ||
      els.size !== order.length ||
      [...this.#addedEls].some((id) => !this.#added.includes(id))
    )
  }

  /** The estimated CPU (µs) of the next paint: the page whole, or what changed on top. */
  costUs(cost: DrawCost, width: number, height: number): number {
    const page = this.#page()
    const r = boardRect(width, height, this.#doc.getMap('meta').get('ratio') as string | undefined)
    const pixels = width * height
    if (this.#whole(page)) return cost.page(page, r, pixels)
    const els = page?.get('els') as Y.Map<unknown>
    let us = 0
    for (const [el, before] of this.#grown) us += cost.element(el, r, Math.max(0, before - 2))
    for (const id of this.#added) {
      const el = els.get(id)
      if (el instanceof Y.Map) us += cost.element(el as Y.Map<unknown>, r)
    }
    return us
  }

  /** Brings the picture up to date with the doc. */
  paint(ctx: SKRSContext2D, width: number, height: number, images?: BoardPictures): void {
    const page = this.#page()
    const els = page?.get('els')
    if (this.#whole(page) || !(els instanceof Y.Map)) {
      this.fullRedraws++
      drawBoard(ctx, this.#doc, width, height, images)
    } else {
      const r = boardRect(
        width,
        height,
        this.#doc.getMap('meta').get('ratio') as string | undefined,
      )
      ctx.save()
      ctx.beginPath()
      ctx.rect(r.x, r.y, r.w, r.h)
      ctx.clip()
      for (const [el, before] of this.#grown)
        drawElement(ctx, el, r, Math.max(0, before - 2), images)
      for (const id of this.#added) {
        const el = els.get(id)
        if (el instanceof Y.Map) drawElement(ctx, el as Y.Map<unknown>, r, 0, images)
      }
      ctx.restore()
    }
    this.settle()
  }

  /** Takes the doc as drawn: later changes are measured from here. */
  settle(): void {
    const order = this.#page()?.get('order')
    this.#full = false
    this.#grown.clear()
    this.#added = []
    this.#addedEls.clear()
    this.#top =
      order instanceof Y.Array ? (order.toArray().at(-1) as string | undefined) : undefined
  }
}

export interface RenderInput {
  timeline: Timeline
  /** The board's state before the task began (a snapshot and updates). */
  before: readonly Uint8Array[]
  /** The updates while it recorded, by time. */
  during: readonly StoredUpdate[]
  width: number
  height: number
  ffmpeg: string
  out: string
  onProgress?: (fraction: number) => void
  /** Draw and encode every tick, changed or not (the naive way; the benchmark's baseline). */
  everyTick?: boolean
  /** Where board images may be fetched from (the tenant URL policy); without it none are. */
  urlPolicy?: AddressPolicy
  /** The render's CPU budget; RENDER_BUDGET unless a test says otherwise. */
  budget?: RenderBudget
  /** What the operator should know: pictures refused or failed. Default: stderr. */
  onWarning?: (message: string) => void
  /** Ends the render in its own process when aborted (the job's lease was lost); not sent to the child. */
  signal?: AbortSignal
}

export interface RenderResult {
  /** Where the first frame is on the replay timeline (VideoPlayTime). */
  playTimeMs: number
  /** Frames encoded, and of them drawn (the others repeat a picture for a key frame). */
  frames: number
  drawn: number
  /** Frames whose changes were gathered into a later one to stay within the budget. */
  gathered: number
  estimate: RenderEstimate
  /** CPU (ms) the render used: its process and its ffmpeg. */
  cpuMs: number
  /** Peak resident memory of the renderer's process, MB. */
  peakRssMb: number
  pictures: PictureStats
}

/** Frame times (ms on the replay timeline) and the updates each one shows first. */
export function framePlan(
  timeline: Timeline,
  during: readonly StoredUpdate[],
  hasContentAtStart: boolean,
): { atMs: number; updates: StoredUpdate[] }[] {
  const tick = 1000 / BOARD_FPS
  const frames: { atMs: number; updates: StoredUpdate[] }[] = []
  if (hasContentAtStart) frames.push({ atMs: 0, updates: [] })
  for (const u of during) {
    const at = Math.ceil(replayTime(timeline, u.atMs) / tick) * tick
    const last = frames.at(-1)
    if (last !== undefined && Math.abs(last.atMs - at) < 0.5) last.updates.push(u)
    else frames.push({ atMs: Math.max(at, last?.atMs ?? 0), updates: [u] })
  }
  return frames
}

/** The plan with a frame at every tick from the first change to the end. */
function everyTick(
  changes: ReturnType<typeof framePlan>,
  total: number,
): ReturnType<typeof framePlan> {
  const tick = 1000 / BOARD_FPS
  const out: ReturnType<typeof framePlan> = []
  let next = 0
  for (let at = changes[0]?.atMs ?? 0; at < total - tick / 2; at += tick) {
    const updates = []
    while (next < changes.length && (changes[next]?.atMs ?? 0) <= at + 0.5)
      updates.push(...(changes[next++]?.updates ?? []))
    out.push({ atMs: at, updates })
  }
  return out
}

export interface RenderEstimate {
  /** Frames the plan encodes: its changes and the key frames between them. */
  frames: number
  /** CPU (ms) of drawing and encoding all of them; undefined past `capMs` (not priced on). */
  plannedMs: number | undefined
  /**
   * CPU (ms) of the least a render must do: its first frame, its last one with
   * every change since gathered into it, and its key frames.
   */
  leastMs: number
}

/** Frames repeated for key frames (every KEY_INTERVAL_MS from the first) before `endMs`. */
const repeats = (firstMs: number, endMs: number) =>
  Math.max(0, Math.floor((endMs - firstMs - 0.5) / KEY_INTERVAL_MS))

/**
 * What rendering `plan` costs, priced before anything is drawn: the doc is
 * replayed (no drawing) and each frame priced as the painter would draw it,
 * until the sum passes `capMs`.
 */
export function estimateRender(
  before: readonly Uint8Array[],
  plan: ReturnType<typeof framePlan>,
  o: { width: number; height: number; endMs: number; capMs: number },
): RenderEstimate {
  const first = plan[0]
  if (first === undefined) return { frames: 0, plannedMs: 0, leastMs: 0 }
  const doc = new Y.Doc()
  try {
    for (const u of before) Y.applyUpdate(doc, u)
    const cost = new DrawCost(doc)
    const each = new BoardPainter(doc)
    const gathered = new BoardPainter(doc)
    const pixels = o.width * o.height
    const drawn = frameCostUs(pixels, true)
    let planned: number | undefined = START_US
    let least = START_US
    for (const [i, frame] of plan.entries()) {
      for (const u of frame.updates) Y.applyUpdate(doc, u.update)
      if (planned !== undefined) {
        planned += each.costUs(cost, o.width, o.height) + drawn
        each.settle()
        if (planned / 1000 > o.capMs) planned = undefined
      }
      if (i === 0) {
        least += gathered.costUs(cost, o.width, o.height) + drawn
        gathered.settle()
      }
    }
    if (plan.length > 1) least += gathered.costUs(cost, o.width, o.height) + drawn
    const last = plan.at(-1)?.atMs ?? first.atMs
    const extra = repeats(first.atMs, o.endMs) + (o.endMs > last + 0.5 ? 1 : 0)
    const keys = extra * frameCostUs(pixels, false)
    return {
      frames: plan.length + extra,
      plannedMs: planned === undefined ? undefined : Math.round((planned + keys) / 1000),
      leastMs: Math.round((least + keys) / 1000),
    }
  } finally {
    doc.destroy()
  }
}

/** CPU (ms) this process has used, with its children that have ended. */
const ownCpuMs = () => {
  const { user, system } = process.cpuUsage()
  return cpuMsOf(process.pid) ?? (user + system) / 1000
}

/**
 * CPU (ms) the render has used since this call: this process's, and its
 * ffmpeg's once `child.pid` is set (read from /proc at most every 200 ms).
 * ffmpeg's is at least the estimate of what it was given (`encodedUs`): the
 * encoder works behind, on frames it holds for its lookahead.
 */
function renderCpu(): {
  ms: () => number
  child: { pid?: number | undefined; encodedUs: number }
} {
  const since = process.cpuUsage()
  const child: { pid?: number | undefined; encodedUs: number } = { encodedUs: 0 }
  let childMs = 0
  let lookedAt = Number.NEGATIVE_INFINITY
  const ms = () => {
    const now = performance.now()
    if (child.pid !== undefined && now - lookedAt >= 200) {
      childMs = cpuMsOf(child.pid) ?? childMs
      lookedAt = now
    }
    const { user, system } = process.cpuUsage(since)
    return (user + system) / 1000 + Math.max(childMs, child.encodedUs / 1000)
  }
  return { ms, child }
}

/** At most this many warnings a render, then how many more there were. */
const WARNINGS = 20

/**
 * Renders the board's history into `out`. Returns undefined when nothing
 * changed while the task recorded (no video). Throws a RenderLimitError,
 * before drawing anything, when the board cannot be drawn within the render's
 * budget.
 */
export async function renderBoardVideo(o: RenderInput): Promise<RenderResult | undefined> {
  if (o.during.length === 0) return undefined
  const begun = ownCpuMs()
  const used = renderCpu()
  const doc = new Y.Doc()
  for (const u of o.before) Y.applyUpdate(doc, u)
  const changes = framePlan(o.timeline, o.during, doc.getMap('pages').size > 0)
  const first = changes[0]
  if (first === undefined) return undefined
  const total = totalTime(o.timeline)
  const tick = 1000 / BOARD_FPS
  const plan = o.everyTick ? everyTick(changes, total) : changes
  const budget = o.budget ?? RENDER_BUDGET
  const budgetMs = renderCpuMs(budget, total)
  // The last frame is a key frame too, so that none is more than 10 s from the end.
  const lastAt = Math.max(plan.at(-1)?.atMs ?? first.atMs, total - tick)
  /** A time of the replay timeline on the video's clock, as the Matroska blocks carry it (whole ms). */
  const videoMs = (atMs: number) => Math.max(0, Math.round(atMs - first.atMs))
  const estimate = estimateRender(o.before, plan, {
    width: o.width,
    height: o.height,
    endMs: lastAt,
    capMs: REFUSE_OVER * budgetMs,
  })
  if (estimate.leastMs > REFUSE_OVER * budgetMs) {
    doc.destroy()
    throw new RenderLimitError(
      `drawing the board at ${o.width}x${o.height} would take about ${(estimate.leastMs / 1000).toFixed(0)} CPU-s at least (its first and last pictures), over ${REFUSE_OVER} times the render's budget of ${(budgetMs / 1000).toFixed(0)} CPU-s for ${(total / 1000).toFixed(0)} s of media`,
    )
  }
  loadFonts()
  const canvas: Canvas = createCanvas(o.width, o.height)
  const ctx = canvas.getContext('2d')
  const painter = new BoardPainter(doc)
  const cost = new DrawCost(doc)
  let warnings = 0
  const warn = (message: string) => {
    if (++warnings > WARNINGS) return
    if (o.onWarning) o.onWarning(message)
    else process.stderr.write(`${message}\n`)
  }
  const images =
    o.urlPolicy && new BoardPictures(o.urlPolicy, { width: o.width, height: o.height }, warn)
  const writer = MatroskaWriter.rawRgba(o.width, o.height)
  const child = spawnTied(
    o.ffmpeg,
    [
      ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'matroska', '-i', 'pipe:0'],
      ...['-vsync', 'passthrough', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p'],
      // Frames are on whole ms: the half-ms margin keeps a key frame on its frame.
      ...[
        '-force_key_frames',
        `expr:gte(t,n_forced*${KEY_INTERVAL_MS / 1000}-0.0005)+gte(t,${(videoMs(lastAt) / 1000).toFixed(3)}-0.0005)`,
      ],
      ...['-movflags', '+faststart', o.out],
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000)
  })
  const exited = once(child, 'close') as Promise<[number | null]>
  const stdin = child.stdin as NonNullable<typeof child.stdin>
  const write = async (data: Buffer) => {
    if (!stdin.write(data)) await Promise.race([once(stdin, 'drain'), exited])
  }
  used.child.pid = child.pid
  const pacer = new FramePacer(budget, used.ms)
  const pixels = o.width * o.height
  const encodeUs = frameCostUs(pixels, false)
  let frames = 0
  let drawn = 0
  let gathered = 0
  let picture: Buffer | undefined
  // Key frames on the video's clock: at 0, every KEY_INTERVAL_MS, and the last frame. A
  // picture that holds still (or whose changes are gathered) is repeated at their times.
  let nextKey = 0
  let lastMs = -1
  const emit = async (atMs: number) => {
    if (picture === undefined) {
      // getImageData: a fraction of canvas.data()'s cost (1.5-2 ms against 2-10 ms a 1280x960 read).
      const { data } = ctx.getImageData(0, 0, o.width, o.height)
      picture = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    }
    lastMs = videoMs(atMs)
    for (const part of writer.block('video', lastMs, true, picture)) await write(part)
    frames++
    used.child.encodedUs += encodeUs
    if (lastMs === nextKey) nextKey += KEY_INTERVAL_MS
  }
  const keyFramesBefore = async (atMs: number) => {
    while (picture !== undefined && nextKey < videoMs(atMs)) await emit(first.atMs + nextKey)
  }
  try {
    await write(writer.header())
    for (const [i, frame] of plan.entries()) {
      await keyFramesBefore(frame.atMs)
      for (const u of frame.updates) Y.applyUpdate(doc, u.update)
      // The first and the last picture are always drawn; the others while the budget allows
      // (priced only then: pricing a large page costs too).
      const must = i === 0 || i === plan.length - 1
      const drawUs =
        must || pacer.allows(frame.atMs, 0)
          ? painter.costUs(cost, o.width, o.height) + readCostUs(pixels)
          : undefined
      // The last picture would take the render over its budget: stop now rather than be stopped there.
      if (i > 0 && must && !pacer.fits(budgetMs, drawUs ?? 0, encodeUs))
        throw new RenderLimitError(
          `the board render used ${(used.ms() / 1000).toFixed(0)} CPU-s and its last picture would take it over its budget of ${(budgetMs / 1000).toFixed(0)} CPU-s for ${(total / 1000).toFixed(0)} s of media`,
        )
      if (!must && (drawUs === undefined || !pacer.allows(frame.atMs, drawUs, encodeUs))) {
        gathered++
        if (videoMs(frame.atMs) === nextKey) await emit(frame.atMs)
      } else {
        await images?.load(doc)
        const redraws = painter.fullRedraws
        const cpu = process.cpuUsage()
        painter.paint(ctx, o.width, o.height, images)
        picture = undefined
        drawn++
        await emit(frame.atMs)
        const { user, system } = process.cpuUsage(cpu)
        if (painter.fullRedraws > redraws && drawUs !== undefined)
          pacer.measured(drawUs, user + system)
      }
      o.onProgress?.((i + 1) / plan.length)
      await new Promise((r) => setImmediate(r))
    }
    // The last picture lasts until the end of the timeline.
    await keyFramesBefore(lastAt)
    if (videoMs(lastAt) > lastMs) await emit(lastAt)
    if (warnings > WARNINGS) {
      const more = warnings - WARNINGS
      warnings = 0
      warn(`and ${more} more board picture(s) not drawn`)
    }
    child.stdin?.end()
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  } finally {
    doc.destroy()
  }
  const [code] = await exited
  if (code !== 0)
    throw new Error(
      `ffmpeg exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
    )
  return {
    playTimeMs: Math.round(first.atMs),
    frames,
    drawn,
    gathered,
    estimate,
    // The ffmpeg has ended: its CPU is among this process's children's.
    cpuMs: Math.round(ownCpuMs() - begun),
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    pictures: images?.stats ?? { kept: 0, keptBytes: 0, refused: 0 },
  }
}
