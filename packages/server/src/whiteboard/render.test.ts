// The renderer's parts: where frames fall on the replay timeline, and the
// incremental painter against a full redraw, frame by frame; and whole renders
// held to their bounds: key frames at most 10 s apart, a page that cannot be
// drawn within the budget refused before drawing, one too costly to redraw at
// every tick paced within it.
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { createCanvas } from '@napi-rs/canvas'
import * as Y from 'yjs'
import { resolveMediaTools, runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import { probe } from '../media/ffmpeg/probe.ts'
import { assertColours } from '../media/test-media.ts'
import { cpuMsOf } from '../proc/children.ts'
import {
  BOARD_FPS,
  BoardPainter,
  boardRect,
  drawBoard,
  framePlan,
  loadFonts,
  renderBoardVideo,
} from './render.ts'
import { FramePacer, RENDER_BUDGET, RenderLimitError, renderCpuMs } from './render-cost.ts'

const tools = resolveMediaTools()

test('frames: one per 15 fps tick with changes; a pause is cut and what was drawn in it shows at the resume', () => {
  const timeline = {
    startMs: 10_000,
    stopMs: 30_000,
    pauses: [{ pauseMs: 15_000, resumeMs: 20_000 }],
  }
  const u = (atMs: number, seq: number) => ({ atMs, seq, update: new Uint8Array() })
  const plan = framePlan(
    timeline,
    [u(10_500, 1), u(10_510, 2), u(16_000, 3), u(19_000, 4), u(21_000, 5)],
    false,
  )
  assert.deepEqual(
    plan.map((f) => [Math.round(f.atMs), f.updates.map((x) => x.seq)]),
    [
      [533, [1, 2]],
      [5000, [3, 4]],
      [6000, [5]],
    ],
  )
  assert.equal(
    framePlan(timeline, [u(21_000, 1)], true)[0]?.atMs,
    0,
    'a board with content at the start',
  )
  assert.deepEqual(boardRect(1280, 960, '16:9'), { x: 0, y: 120, w: 1280, h: 720 })
  assert.deepEqual(boardRect(1280, 960, undefined), { x: 0, y: 0, w: 1280, h: 960 })
})

test('the incremental painter draws what a full redraw draws (but for anti-aliased joins), and redraws on a move, a delete or a page switch', () => {
  loadFonts()
  const source = new Y.Doc()
  const doc = new Y.Doc()
  const painter = new BoardPainter(doc)
  const a = createCanvas(320, 240)
  const b = createCanvas(320, 240)
  source.on('update', (update: Uint8Array) => Y.applyUpdate(doc, update))
  const meta = source.getMap('meta')
  const pages = source.getMap('pages')
  const page = (id: string) => {
    const p = new Y.Map<unknown>()
    p.set('bg', { color: '#FFFFFF' })
    p.set('els', new Y.Map())
    p.set('order', new Y.Array())
    pages.set(id, p)
    meta.set('page', id)
  }
  const els = () =>
    (pages.get(meta.get('page') as string) as Y.Map<unknown>).get('els') as Y.Map<Y.Map<unknown>>
  const add = (id: string, fields: Record<string, unknown>) =>
    source.transact(() => {
      const el = new Y.Map<unknown>()
      for (const [k, v] of Object.entries(fields)) el.set(k, v)
      els().set(id, el)
      ;(
        (pages.get(meta.get('page') as string) as Y.Map<unknown>).get('order') as Y.Array<string>
      ).push([id])
    })
  const stroke = () => els().get('s')?.get('points') as Y.Array<number>
  const steps: (() => void)[] = [
    () => source.transact(() => page('p1')),
    () =>
      add('r', { kind: 'rect', color: '#CC0000', fill: '#FFCCCC', x: 0.1, y: 0.1, w: 0.3, h: 0.2 }),
    () => {
      const points = new Y.Array<number>()
      points.push([0.1, 0.5])
      add('s', { kind: 'path', color: '#0000CC', width: 0.02, points })
    },
    ...Array.from({ length: 8 }, (_, i) => () => {
      stroke().push([0.15 + i * 0.08, 0.5 + (i % 2) * 0.1])
    }),
    () => add('t', { kind: 'text', color: '#000000', x: 0.5, y: 0.1, size: 0.08, text: 'Hi 你好' }),
    () => els().get('r')?.set('x', 0.5), // a move: a full redraw
    () => {
      // Points added to a stroke under the text: a full redraw, not a stroke drawn over it.
      stroke().push([0.9, 0.9])
    },
    () => els().delete('t'),
    () => source.transact(() => page('p2')),
    () =>
      add('e', {
        kind: 'ellipse',
        color: '#00AA00',
        fill: '#00AA00',
        x: 0.3,
        y: 0.3,
        w: 0.4,
        h: 0.4,
      }),
  ]
  for (const [i, step] of steps.entries()) {
    step()
    painter.paint(a.getContext('2d'), 320, 240)
    drawBoard(b.getContext('2d'), doc, 320, 240)
    const x = a.getContext('2d').getImageData(0, 0, 320, 240).data
    const y = b.getContext('2d').getImageData(0, 0, 320, 240).data
    let differing = 0
    for (let k = 0; k < x.length; k += 4) {
      if (Math.max(...[0, 1, 2].map((c) => Math.abs((x[k + c] ?? 0) - (y[k + c] ?? 0)))) > 24)
        differing++
    }
    assert.ok(differing < 0.005 * 320 * 240, `step ${i}: ${differing} pixels differ`)
  }
  // Redrawn whole: the first page, the move, the stroke under the text, the delete, the page switch.
  assert.equal(painter.fullRedraws, 5)
})

/** A board's history: `steps[i]` done at `atMs[i]`, each change an update as the store keeps it. */
function history(steps: [number, (doc: Y.Doc) => void][]) {
  const doc = new Y.Doc()
  const during: { atMs: number; seq: number; update: Uint8Array }[] = []
  for (const [atMs, step] of steps) {
    const sv = Y.encodeStateVector(doc)
    doc.transact(() => step(doc))
    during.push({ atMs, seq: during.length + 1, update: Y.encodeStateAsUpdate(doc, sv) })
  }
  return during
}

/** One page with one rectangle, moved to `x`. */
const rectAt = (x: number) => (doc: Y.Doc) => {
  const pages = doc.getMap('pages')
  if (!pages.has('p1')) {
    doc.getMap('meta').set('page', 'p1')
    const page = new Y.Map<unknown>()
    page.set('bg', { color: '#FFFFFF' })
    const els = new Y.Map<unknown>()
    const el = new Y.Map<unknown>()
    for (const [k, v] of Object.entries({ kind: 'rect', fill: '#FF0000', y: 0.4, w: 0.2, h: 0.2 }))
      el.set(k, v)
    els.set('r', el)
    page.set('els', els)
    pages.set('p1', page)
  }
  ;((pages.get('p1') as Y.Map<unknown>).get('els') as Y.Map<Y.Map<unknown>>).get('r')?.set('x', x)
}

test('key frames at most 10 s apart from the first frame to the end, whenever the board changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-board-keys-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  console.log(dir)
  const out = join(dir, 'board.mp4')
  // Changes at 1, 9.9, 20.5 and 24 s of a 35 s recording: long stills between them and at the end.
  const made = await renderBoardVideo({
    timeline: { startMs: 0, stopMs: 35_000, pauses: [] },
    before: [],
    during: history([
      [1000, rectAt(0.1)],
      [9900, rectAt(0.3)],
      [20_500, rectAt(0.5)],
      [24_000, rectAt(0.7)],
    ]),
    width: 160,
    height: 120,
    ffmpeg: tools.ffmpeg,
    out,
  })
  assert.ok(made)
  const keys = (
    await runTool(tools.ffprobe, [
      ...['-v', 'error', '-select_streams', 'v:0', '-skip_frame', 'nokey'],
      ...['-show_entries', 'frame=pts_time', '-of', 'csv=p=0', out],
    ])
  )
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => Number(line.split(',')[0]))
  const { durationMs } = await probe(tools.ffprobe, out)
  assert.equal(keys[0], 0, `key frames at ${keys.join(', ')}`)
  const gaps = [...keys.slice(1), durationMs / 1000].map((t, i) => t - (keys[i] as number))
  assert.ok(
    gaps.every((gap) => gap <= 10.001),
    `key frames at ${keys.join(', ')} s of a ${durationMs / 1000} s video: gaps ${gaps.map((g) => g.toFixed(3)).join(', ')}`,
  )
  // The video (from 1 s of the timeline on) still shows each change at its time.
  await assertColours(tools, out, 22 - 1, [[0.5 * 160 + 16, 60, '#FF0000']])
  await assertColours(tools, out, 25 - 1, [[0.7 * 160 + 16, 60, '#FF0000']])
})

test('the pacer draws a frame while the CPU used and its estimate fit in half the budget at its time: a costly page every few seconds', () => {
  let cpuMs = 0
  const pacer = new FramePacer({ baseCpuMs: 10_000, cpuMsPerMediaS: 1000 }, () => cpuMs)
  assert.equal(pacer.allowanceMs(0), 5000)
  assert.equal(pacer.allowanceMs(10_000), 10_000)
  // A page estimated at 2 CPU-s to draw, changed at every tick for 20 s.
  const drawnAt = (from: number, to: number, costMs: number) => {
    const drawn: number[] = []
    for (let tick = from * BOARD_FPS; tick < to * BOARD_FPS; tick++) {
      const atMs = Math.round((tick * 1000) / BOARD_FPS)
      if (pacer.allows(atMs, 2_000_000)) {
        cpuMs += costMs
        drawn.push(atMs)
      }
    }
    return drawn
  }
  // Two at once from the start's share, then one each time the timeline has paid for it.
  assert.deepEqual(drawnAt(0, 20, 2000), [0, 67, 2000, 6000, 10_000, 14_000, 18_000])
  // Its full redraws measured at half their estimate: twice as often.
  pacer.measured(2_000_000, 1_000_000)
  assert.deepEqual(drawnAt(20, 30, 1000), [20_000, 22_000, 24_000, 26_000, 28_000])
})

/** 10,000 text elements on one page at 0.5 s, then its ratio flipped 15 times a second from 1 s to 3 s. */
function hostilePage(text: string, size: number, top: (i: number) => number) {
  const flips = Array.from({ length: 2 * BOARD_FPS }, (_, i): [number, (doc: Y.Doc) => void] => [
    1000 + Math.round((i * 1000) / BOARD_FPS),
    (doc) => doc.getMap('meta').set('ratio', i % 2 === 0 ? '4:3' : '16:9'),
  ])
  return history([
    [
      500,
      (doc) => {
        doc.getMap('meta').set('page', 'p1')
        const page = new Y.Map<unknown>()
        page.set('bg', { color: '#FFFFFF' })
        const els = new Y.Map<unknown>()
        const order = new Y.Array<string>()
        const ids: string[] = []
        for (let i = 0; i < 10_000; i++) {
          const el = new Y.Map<unknown>()
          const fields = {
            kind: 'text',
            color: '#000000',
            x: (i % 100) / 100,
            y: top(i),
            size,
            text,
          }
          for (const [k, v] of Object.entries(fields)) el.set(k, v)
          els.set(`t${i}`, el)
          ids.push(`t${i}`)
        }
        order.push(ids)
        page.set('els', els)
        page.set('order', order)
        doc.getMap('pages').set('p1', page)
      },
    ],
    ...flips,
  ])
}

/** CPU (ms) of this process and its ended children since `since` (ffmpeg included, once it has ended). */
const cpuSince = (since: number) => (cpuMsOf(process.pid) ?? 0) - since

test('a page that cannot be drawn within the budget (10,000 large texts at 4096x4096, its ratio flipped 15 times a second) is refused before anything is drawn', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-board-hostile-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  // Each text 8 lines of 8 glyphs 20 % of the board high: ~40 CPU-s a full redraw here, today at every flip.
  const during = hostilePage(`${'W'.repeat(8)}\n`.repeat(8), 0.2, (i) => (i % 50) / 100)
  const out = join(dir, 'board.mp4')
  const begun = cpuMsOf(process.pid) ?? 0
  await assert.rejects(
    renderBoardVideo({
      timeline: { startMs: 0, stopMs: 4000, pauses: [] },
      before: [],
      during,
      width: 4096,
      height: 4096,
      ffmpeg: tools.ffmpeg,
      out,
    }),
    (error: Error) => {
      assert.ok(error instanceof RenderLimitError, error.stack)
      assert.match(
        error.message,
        /would take about \d+ CPU-s at least .* over 2 times the render's budget of 34 CPU-s for 4 s of media/,
      )
      return true
    },
  )
  const used = cpuSince(begun)
  // The budget (34 CPU-s) would be a bound; refused before drawing, it is far below.
  assert.ok(used < renderCpuMs(RENDER_BUDGET, 4000), `${used} CPU-ms`)
  assert.equal(existsSync(out), false, 'nothing encoded')
  console.log(`refused in ${used} CPU-ms`)
})

test('a page too costly to draw at every tick (10,000 texts at 4096x4096, its ratio flipped 15 times a second) is drawn within the budget: frames gathered, the last state shown', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-board-paced-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'board.mp4')
  // A small budget, so that drawing every change (~0.6 CPU-s each) would be far over it.
  const budget = { baseCpuMs: 10_000, cpuMsPerMediaS: 500 }
  const made = await renderBoardVideo({
    timeline: { startMs: 0, stopMs: 4000, pauses: [] },
    before: [],
    // In the lower half of the board, so that its top shows the page and the letterbox.
    during: hostilePage('Wa', 0.04, (i) => 0.5 + (i % 40) / 100),
    width: 4096,
    height: 4096,
    ffmpeg: tools.ffmpeg,
    out,
    budget,
  })
  assert.ok(made)
  const limit = renderCpuMs(budget, 4000)
  console.log(
    `${made.drawn} of ${made.drawn + made.gathered} changed frames drawn in ${made.cpuMs} CPU-ms (budget ${limit}); estimated ${made.estimate.plannedMs} CPU-ms for all, ${made.estimate.leastMs} at least`,
  )
  assert.ok(made.gathered > 0 && made.drawn < 10, `${made.drawn} drawn, ${made.gathered} gathered`)
  assert.ok(made.cpuMs <= limit, `${made.cpuMs} CPU-ms, budget ${limit}`)
  // The last state: 16:9, letterboxed on black; the page above the texts is white.
  const end = (4000 - made.playTimeMs - 200) / 1000
  await assertColours(tools, out, end, [
    [2048, 400, '#000000'],
    [2048, 1000, '#FFFFFF'],
  ])
})
