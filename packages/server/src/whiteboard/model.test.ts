// The document model's check: updates made by a client doc (as a real
// client makes them) are taken or refused, and a refused one leaves the
// board as it was.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { CheckedDoc, LIMITS, ModelError } from './model.ts'

/** A client doc in step with `board`; `change` runs on it and the update is offered to the board. */
function client(board: CheckedDoc) {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(board.doc))
  return {
    doc,
    offer(change: (doc: Y.Doc) => void): boolean {
      const before = Y.encodeStateVector(doc)
      change(doc)
      return board.apply(Y.encodeStateAsUpdate(doc, before), 'client')
    },
  }
}

function element(fields: Record<string, unknown>): Y.Map<unknown> {
  const el = new Y.Map<unknown>()
  for (const [k, v] of Object.entries(fields)) el.set(k, v)
  return el
}

function page(els: Record<string, Y.Map<unknown>> = {}): Y.Map<unknown> {
  const p = new Y.Map<unknown>()
  const map = new Y.Map<unknown>()
  for (const [id, el] of Object.entries(els)) map.set(id, el)
  const order = new Y.Array<string>()
  order.push(Object.keys(els))
  p.set('bg', { color: '#FFFFFF' })
  p.set('els', map)
  p.set('order', order)
  return p
}

const RECT = { kind: 'rect', color: '#FF0000', width: 0.01, x: 0.1, y: 0.1, w: 0.3, h: 0.2 }

function started(): { board: CheckedDoc; c: ReturnType<typeof client> } {
  const board = new CheckedDoc()
  const c = client(board)
  assert.equal(
    c.offer((doc) => {
      const meta = doc.getMap('meta')
      meta.set('v', 1)
      meta.set('ratio', '16:9')
      meta.set('page', 'p1')
      doc.getMap('pages').set('p1', page({ r1: element(RECT) }))
    }),
    true,
  )
  return { board, c }
}

const els = (doc: Y.Doc, p = 'p1') =>
  (doc.getMap('pages').get(p) as Y.Map<unknown>).get('els') as Y.Map<Y.Map<unknown>>

test('a board made as the model says is taken; strokes, moves, deletes and page switches too', () => {
  const { board, c } = started()
  assert.equal(els(board.doc).get('r1')?.get('color'), '#FF0000')
  assert.equal(
    c.offer((doc) => {
      const path = element({ kind: 'path', color: '#00AA00', width: 0.005 })
      const points = new Y.Array<number>()
      points.push([0.1, 0.1, 0.2, 0.25])
      path.set('points', points)
      els(doc).set('s1', path)
      ;((doc.getMap('pages').get('p1') as Y.Map<unknown>).get('order') as Y.Array<string>).push([
        's1',
      ])
    }),
    true,
  )
  // Appending to a stroke, moving a shape, a text, a second page, deleting.
  assert.equal(
    c.offer((doc) =>
      ((els(doc).get('s1') as Y.Map<unknown>).get('points') as Y.Array<number>).push([0.3, 0.3]),
    ),
    true,
  )
  assert.equal(
    c.offer((doc) => els(doc).get('r1')?.set('x', -0.5)),
    true,
  )
  assert.equal(
    c.offer((doc) =>
      els(doc).set(
        't1',
        element({ kind: 'text', color: '#000000', x: 0.5, y: 0.5, text: '白板 board', size: 0.05 }),
      ),
    ),
    true,
  )
  assert.equal(
    c.offer((doc) => {
      doc.getMap('pages').set('p2', page())
      doc.getMap('meta').set('page', 'p2')
    }),
    true,
  )
  assert.equal(
    c.offer((doc) => els(doc).delete('r1')),
    true,
  )
  assert.equal(els(board.doc).has('r1'), false)
  // The same update again changes nothing.
  assert.equal(board.apply(Y.encodeStateAsUpdate(c.doc), 'again'), false)
})

test('updates that would leave the model are refused and change nothing', () => {
  const cases: [string, (doc: Y.Doc) => void, RegExp][] = [
    [
      'an unknown kind',
      (d) => els(d).set('x', element({ ...RECT, kind: 'star' })),
      /kind: must be one of/,
    ],
    [
      'a colour that is not #RRGGBB',
      (d) => els(d).get('r1')?.set('color', 'red'),
      /color: must be "#RRGGBB"/,
    ],
    [
      'a coordinate outside -1..2',
      (d) => els(d).get('r1')?.set('x', 2.5),
      /\.x: must be in -1\.\.2/,
    ],
    ['NaN', (d) => els(d).get('r1')?.set('y', Number.NaN), /\.y: must be/],
    [
      'an unknown key on an element',
      (d) => els(d).get('r1')?.set('onclick', 'x'),
      /unknown key "onclick"/,
    ],
    ['an element without kind', (d) => els(d).get('r1')?.delete('kind'), /kind: must be one of/],
    ['a map where a colour goes', (d) => els(d).get('r1')?.set('fill', new Y.Map()), /fill/],
    ['another root', (d) => d.getMap('evil').set('a', 1), /the board has only "meta" and "pages"/],
    ['meta.v 2', (d) => d.getMap('meta').set('v', 2), /meta\.v: must be 1/],
    ['a bad ratio', (d) => d.getMap('meta').set('ratio', 'wide'), /meta\.ratio/],
    [
      'a page that is not a map',
      (d) => d.getMap('pages').set('p9', 'page'),
      /a page must be a Y\.Map/,
    ],
    [
      'a background image that is not http(s)',
      (d) =>
        (d.getMap('pages').get('p1') as Y.Map<unknown>).set('bg', {
          color: '#FFFFFF',
          image: 'javascript:1',
        }),
      /bg\.image/,
    ],
    [
      'an order of non-ids',
      (d) =>
        ((d.getMap('pages').get('p1') as Y.Map<unknown>).get('order') as Y.Array<unknown>).push([
          42,
        ]),
      /order/,
    ],
    [
      'a point outside the board',
      (d) => {
        const path = element({ kind: 'path', color: '#000000' })
        const points = new Y.Array<number>()
        points.push([0.1, 0.1, 9, 9])
        path.set('points', points)
        els(d).set('p', path)
      },
      /points: a point outside/,
    ],
  ]
  for (const [what, change, reason] of cases) {
    const { board, c } = started()
    const before = Y.encodeStateAsUpdate(board.doc)
    assert.throws(
      () => c.offer(change),
      (e: unknown) => e instanceof ModelError && reason.test(e.message),
      what,
    )
    assert.deepEqual(Y.encodeStateAsUpdate(board.doc), before, `${what}: the board is unchanged`)
    // The board still takes a good update afterwards (its shadow was rebuilt).
    const fresh = client(board)
    assert.equal(
      fresh.offer((d) => els(d).get('r1')?.set('x', 0.2)),
      true,
      what,
    )
  }
})

test('limits: elements on a page, the size of an update, garbage bytes', () => {
  const { board, c } = started()
  // 9,999 more in two updates (one would pass 1 MB): the page is full.
  const half = (LIMITS.elementsPerPage - 1) / 3
  for (let part = 0; part < 3; part++) {
    c.offer((d) => {
      for (let i = 0; i < half; i++) els(d).set(`e${part}-${i}`, element(RECT))
    })
  }
  assert.equal(els(board.doc).size, LIMITS.elementsPerPage)
  assert.throws(
    () => client(board).offer((d) => els(d).set('one-more', element(RECT))),
    /more than 10000 elements/,
  )
  assert.equal(els(board.doc).size, LIMITS.elementsPerPage)
  assert.throws(() => board.apply(new Uint8Array(LIMITS.updateBytes + 1), 'x'), /larger than 1 MB/)
  assert.throws(() => board.apply(new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]), 'x'), ModelError)
})

test('list content inside a map place is refused, however it is made', () => {
  const { board } = started()
  const before = Y.encodeStateAsUpdate(board.doc)
  // A client that sees "meta" as a list: what it inserts has no key.
  const d = new Y.Doc()
  d.getArray('meta').insert(0, [{ src: 'file:///etc/passwd' }, new Y.Doc()])
  assert.throws(
    () => board.apply(Y.encodeStateAsUpdate(d), 'client'),
    /meta: a map with list content/,
  )
  assert.deepEqual(Y.encodeStateAsUpdate(board.doc), before)
  assert.equal(board.doc.subdocs.size, 0)
})

test('structs that change no type (garbage-collected ranges) keep the board and its shadow in step', () => {
  const board = new CheckedDoc()
  // A GC struct of client 999, clocks 0-4, as a peer that collected them sends it.
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 1) // clients
  encoding.writeVarUint(e, 1) // structs of this client
  encoding.writeVarUint(e, 999)
  encoding.writeVarUint(e, 0) // first clock
  encoding.writeUint8(e, 0) // GC
  encoding.writeVarUint(e, 5) // its length
  encoding.writeVarUint(e, 0) // delete set: none
  assert.equal(board.apply(encoding.toUint8Array(e), 'peer'), true)
  // The same client's next change (clock 5) applies to the board itself, not just the shadow.
  const doc = new Y.Doc()
  doc.clientID = 999
  for (let i = 0; i < 5; i++) doc.getMap('pages').set(`gone${i}`, i)
  const sv = Y.encodeStateVector(doc)
  doc.getMap('meta').set('page', 'p5')
  assert.equal(board.apply(Y.encodeStateAsUpdate(doc, sv), 'peer'), true)
  assert.equal(board.doc.getMap('meta').get('page'), 'p5')
  assert.equal(board.incomplete, false)
})

test('the board as bytes: a refusal rebuilds it from them; they replay to the board; compacting keeps it', () => {
  const { board, c } = started()
  for (let i = 0; i < 30; i++) {
    assert.equal(
      c.offer((doc) => {
        const page = doc.getMap('pages').get('p1') as Y.Map<unknown>
        ;(page.get('els') as Y.Map<unknown>).set(`e${i}`, element({ ...RECT, x: i / 100 }))
      }),
      true,
    )
  }
  // A delete changes no state vector; it is part of the board's bytes all the same.
  assert.equal(
    c.offer((doc) => {
      const page = doc.getMap('pages').get('p1') as Y.Map<unknown>
      ;(page.get('els') as Y.Map<unknown>).delete('e3')
    }),
    true,
  )
  const replay = () => {
    const doc = new Y.Doc()
    const { state, since } = board.bytes()
    Y.applyUpdate(doc, state)
    for (const u of since) Y.applyUpdate(doc, u)
    return doc
  }
  const good = Y.encodeStateAsUpdate(board.doc)
  assert.deepEqual(Y.encodeStateAsUpdate(replay()), good)
  assert.equal(els(replay()).has('e3'), false)
  // A refused update: the board is rebuilt, as it was.
  assert.throws(
    () =>
      c.offer((doc) => {
        const page = doc.getMap('pages').get('p1') as Y.Map<unknown>
        ;(page.get('els') as Y.Map<unknown>).set('bad', element({ ...RECT, color: 'red' }))
      }),
    ModelError,
  )
  assert.equal(board.rebuilds, 1)
  assert.deepEqual(Y.encodeStateAsUpdate(board.doc), good)
  assert.equal(els(board.doc).has('bad'), false)
  // Compacting: nothing while the updates since are small; the state again after enough.
  assert.equal(board.compact(), undefined)
  const big = new Y.Doc()
  Y.applyUpdate(big, good)
  for (let i = 0; i < 3; i++) {
    const before = Y.encodeStateVector(big)
    const page = big.getMap('pages').get('p1') as Y.Map<unknown>
    const points = new Y.Array<number>()
    points.push(Array.from({ length: 30_000 }, (_, k) => (k % 100) / 100))
    ;(page.get('els') as Y.Map<unknown>).set(`s${i}`, element({ kind: 'path', points }))
    assert.equal(board.apply(Y.encodeStateAsUpdate(big, before), 'client'), true)
  }
  const compacted = board.compact()
  assert.ok(compacted, 'compacted once the updates outweigh the state')
  assert.ok(compacted.covers >= 3)
  assert.deepEqual(board.bytes().since, [])
  assert.deepEqual(Y.encodeStateAsUpdate(replay()), Y.encodeStateAsUpdate(board.doc))
})
