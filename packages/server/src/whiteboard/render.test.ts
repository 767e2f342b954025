// The renderer's parts: where frames fall on the replay timeline, and the
// incremental painter against a full redraw, frame by frame.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createCanvas } from '@napi-rs/canvas'
import * as Y from 'yjs'
import { BoardPainter, boardRect, drawBoard, framePlan, loadFonts } from './render.ts'

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
