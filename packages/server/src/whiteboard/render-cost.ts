// What a board render costs, estimated before the work, and what keeps it
// within its CPU budget:
// - `DrawCost` prices what a frame draws (the page's elements, characters and
//   points at the video's size) and `frameCostUs` what every frame costs
//   besides (reading the picture, encoding it); the render's estimate is their
//   sum over its plan, made before anything is drawn. A board whose least work
//   is estimated over REFUSE_OVER times its budget is refused there.
// - A render may use `renderCpuMs` of CPU (its process and its ffmpeg): a base
//   plus a share per second of the timeline. The service kills it past that
//   (render-process.ts); the `FramePacer` keeps it well below by drawing a
//   frame only while the CPU used so far, plus the frame's estimate, is within
//   half the budget at that point of the timeline: frames of a page too costly
//   to draw at every tick are gathered into later frames. The first and the
//   last frame are always drawn.
// The prices are CPU time measured on the reference machine (2-core x86-64,
// @napi-rs/canvas 1.0, x264 veryfast), rounded up; they decide how a costly
// board is paced or refused, never how a cheap one is drawn.
import * as Y from 'yjs'

/** The CPU a render may use: `baseCpuMs` plus `cpuMsPerMediaS` per second of the timeline. */
export interface RenderBudget {
  baseCpuMs: number
  cpuMsPerMediaS: number
}

/** 10 minutes of a busy class take 57-59 CPU-s at 1280x960, a tenth of the 630 this allows. */
export const RENDER_BUDGET: RenderBudget = { baseCpuMs: 30_000, cpuMsPerMediaS: 1000 }

/** Share of the budget the pacing lets the render use up to each point of the timeline. */
export const PACE_SHARE = 0.5

/** CPU (ms) a render of a `totalMs` timeline may use. */
export function renderCpuMs(budget: RenderBudget, totalMs: number): number {
  return Math.round(budget.baseCpuMs + (budget.cpuMsPerMediaS * Math.max(0, totalMs)) / 1000)
}

/** A render that would go, or went, over its budget: a problem of the task, not a failure of its job. */
export class RenderLimitError extends Error {
  override name = 'RenderLimitError'
}

/** Prices in µs of CPU. */
const US = {
  /** Starting: the fonts, the encoder. */
  start: 500_000,
  /** Clearing and reading a picture (getImageData), per pixel: 100-190 ms at 4096x4096. */
  readPerPixel: 0.01,
  /** Demuxing and encoding a picture (Matroska, RGBA to YUV, x264 veryfast), per pixel: 300 ms at 4096x4096. */
  encodePerPixel: 0.018,
  /** Any element (reading it, setting the context up). */
  element: 10,
  /** A text: its font set (60-90 µs), each line drawn, each character shaped, each glyph in the board drawn. */
  text: 80,
  line: 20,
  char: 0.6,
  /** A glyph up to 256 px is drawn from a cache, a larger one as a path: ~0.45 µs per pixel of its size. */
  glyphSmall: 1,
  glyphPerPx: 0.45,
  /** A path's point, plus the rows its segment crosses (a long thin stroke costs ~0.35 µs a row). */
  point: 1.5,
  pointPerRow: 0.35,
  /** A rectangle, ellipse or picture, plus the pixels it covers. */
  shape: 50,
  shapePerPixel: 1 / 2500,
  picturePerPixel: 1 / 1000,
} as const

/** CPU (µs) of starting a render: loading the fonts, starting the encoder. */
export const START_US = US.start

type Rect = { x: number; y: number; w: number; h: number }

/** What a frame costs besides drawing: reading the picture (when drawn) and encoding it. */
export function frameCostUs(pixels: number, drawn: boolean): number {
  return readCostUs(pixels, drawn) + pixels * US.encodePerPixel
}

/** Clearing and reading the picture of a frame that is drawn. */
export const readCostUs = (pixels: number, drawn = true) => (drawn ? pixels * US.readPerPixel : 0)

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0)

/** An element's size in board fractions, independent of the picture's size. */
interface Shape {
  kind: unknown
  x: number
  y: number
  w: number
  h: number
  size: number
  /** A text's characters, and of each line. */
  chars: number
  lines: number[]
  /** A path's points (numbers / 2) and the sum of its segments' heights, in board heights. */
  points: number
  dy: number
}

function shapeOf(el: Y.Map<unknown>): Shape {
  const kind = el.get('kind')
  const text = el.get('text')
  const p = el.get('points')
  let points = 0
  let dy = 0
  if ((kind === 'path' || kind === 'line') && p instanceof Y.Array) {
    const values = p.toArray() as unknown[]
    const n = kind === 'line' ? Math.min(values.length, 4) : values.length
    points = Math.floor(n / 2)
    for (let i = 3; i < n; i += 2) dy += Math.abs(num(values[i]) - num(values[i - 2]))
  }
  const lines =
    kind === 'text' && typeof text === 'string' ? text.split('\n').map((l) => l.length) : []
  return {
    kind,
    x: num(el.get('x')),
    y: num(el.get('y')),
    w: Math.abs(num(el.get('w'))),
    h: Math.abs(num(el.get('h'))),
    size: el.has('size') ? num(el.get('size')) : 0.04,
    chars: typeof text === 'string' ? text.length : 0,
    lines,
    points,
    dy,
  }
}

/** A text: each line's glyphs that can fall in the board (at least half their size apart). */
function textCostUs(s: Shape, r: Rect): number {
  const px = Math.max(1, s.size * r.h)
  const glyph = px <= 256 ? US.glyphSmall : px * US.glyphPerPx
  const left = r.x + s.x * r.w
  let us = US.element + US.text + s.chars * US.char + s.lines.length * US.line
  for (const [k, length] of s.lines.entries()) {
    const top = r.y + s.y * r.h + k * px * 1.25
    if (top >= r.y + r.h) break
    if (top + px <= r.y || left >= r.x + r.w) continue
    const room = r.x + r.w - Math.max(left, r.x)
    us += Math.min(length, Math.ceil(room / (px / 2))) * glyph
  }
  return us
}

function shapeCostUs(s: Shape, r: Rect): number {
  const area = () => Math.min(r.w * r.h, s.w * r.w * s.h * r.h)
  switch (s.kind) {
    case 'text':
      return textCostUs(s, r)
    case 'path':
    case 'line':
      return US.element + s.points * US.point + s.dy * r.h * US.pointPerRow
    case 'rect':
    case 'ellipse':
      return US.element + US.shape + area() * US.shapePerPixel
    case 'image':
      return US.element + US.shape + area() * US.picturePerPixel
    default:
      return US.element
  }
}

/**
 * Prices what drawing a doc's pages costs. Elements are measured once (in
 * board fractions) and again only when they change; a page's price is kept
 * for each picture size until anything on it changes, so a ratio flipped back
 * and forth costs nothing to price again.
 */
export class DrawCost {
  readonly #shapes = new WeakMap<Y.Map<unknown>, Shape>()
  readonly #pages = new WeakMap<Y.Map<unknown>, Map<string, number>>()

  constructor(doc: Y.Doc) {
    const pages = doc.getMap('pages')
    // biome-ignore lint/suspicious/noExplicitAny: Yjs types its events so.
    pages.observeDeep((events: Y.YEvent<any>[]) => {
      for (const e of events) {
        const [pageId, part, id] = e.path as string[]
        const page = pageId === undefined ? undefined : pages.get(pageId)
        if (!(page instanceof Y.Map)) continue
        this.#pages.delete(page)
        const els = part === 'els' && id !== undefined ? page.get('els') : undefined
        const el = els instanceof Y.Map ? els.get(id as string) : undefined
        if (el instanceof Y.Map) this.#shapes.delete(el)
      }
    })
  }

  /** An element drawn whole in `r`, or a path from its number `from` on. */
  element(el: Y.Map<unknown>, r: Rect, from = 0): number {
    if (from > 0) {
      const p = el.get('points')
      if (!(p instanceof Y.Array)) return 0
      const values = p.toArray().slice(Math.max(0, from - (from % 2))) as unknown[]
      let dy = 0
      for (let i = 3; i < values.length; i += 2) dy += Math.abs(num(values[i]) - num(values[i - 2]))
      return Math.floor(values.length / 2) * US.point + dy * r.h * US.pointPerRow
    }
    let shape = this.#shapes.get(el)
    if (shape === undefined) {
      shape = shapeOf(el)
      this.#shapes.set(el, shape)
    }
    return shapeCostUs(shape, r)
  }

  /** The whole page drawn in `r` of a picture of `pixels`: its background and every element. */
  page(page: Y.Map<unknown> | undefined, r: Rect, pixels: number): number {
    const base = pixels * US.shapePerPixel
    if (page === undefined) return base
    const key = `${r.w}x${r.h}/${pixels}`
    let prices = this.#pages.get(page)
    const known = prices?.get(key)
    if (known !== undefined) return known
    let us = base
    const bg = page.get('bg') as { image?: unknown } | undefined
    if (typeof bg?.image === 'string') us += US.shape + r.w * r.h * US.picturePerPixel
    const els = page.get('els')
    if (els instanceof Y.Map) {
      for (const el of els.values()) if (el instanceof Y.Map) us += this.element(el, r)
    }
    if (prices === undefined) {
      prices = new Map()
      this.#pages.set(page, prices)
    }
    prices.set(key, us)
    return us
  }
}

/**
 * The estimates err high (up to 2-3 times what the reference machine
 * measures): a board is refused before drawing only when it would be over
 * its budget at a half of its estimate.
 */
export const REFUSE_OVER = 2

/**
 * Whether a frame may be drawn at a point of the timeline: while the CPU the
 * render has used (`cpuMs()`, its process and its ffmpeg) plus the frame's
 * estimate stays within `PACE_SHARE` of the budget at that point. A frame
 * that may not is gathered into a later one. The estimates of drawing are
 * scaled by what the last full redraw measured against its own estimate.
 */
export class FramePacer {
  readonly #budget: RenderBudget
  readonly #cpuMs: () => number
  #scale = 1

  constructor(budget: RenderBudget, cpuMs: () => number) {
    this.#budget = budget
    this.#cpuMs = cpuMs
  }

  /** CPU (ms) the render may have used by `atMs` of the timeline. */
  allowanceMs(atMs: number): number {
    return PACE_SHARE * renderCpuMs(this.#budget, atMs)
  }

  /** `drawUs`: drawing and reading the picture (this process); `encodeUs`: encoding it (ffmpeg). */
  allows(atMs: number, drawUs: number, encodeUs = 0): boolean {
    return this.fits(this.allowanceMs(atMs), drawUs, encodeUs)
  }

  /** Whether the CPU used and the frame's estimate fit in `ms`. */
  fits(ms: number, drawUs: number, encodeUs = 0): boolean {
    return this.#cpuMs() + (drawUs * this.#scale + encodeUs) / 1000 <= ms
  }

  /** A full redraw estimated at `drawUs` took `cpuUs`: later estimates are scaled by that (1/4 to 4). */
  measured(drawUs: number, cpuUs: number): void {
    if (drawUs > 0) this.#scale = Math.min(4, Math.max(0.25, cpuUs / drawUs))
  }
}
