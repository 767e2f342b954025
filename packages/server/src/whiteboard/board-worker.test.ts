// The boards of one app, driven in this thread as the worker drives them,
// with its CPU clock and wall clock moved by hand: what is taken is said
// (relayed, stored merged); a connection or a board over its CPU budget is
// closed with the reason before its next message costs anything.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as Y from 'yjs'
import type { FromBoardWorker } from './board-protocol.ts'
import { AppBoards, SYNC_UPDATE, syncMessage } from './board-worker.ts'

/**
 * Boards of one app with hand-moved clocks: every piece of work (a message,
 * an opening) costs `clock.cost` ms of thread CPU, as read before and after it.
 */
function harness(
  budget = {
    connection: { perSecond: 100, burst: 500 },
    board: { perSecond: 200, burst: 1000 },
  },
) {
  const out: FromBoardWorker[] = []
  const clock = { cpu: 0, now: 0, cost: 0, reads: 0 }
  const boards = new AppBoards((m) => out.push(m), {
    storeEveryMs: 10_000,
    budget,
    cpuMs: () => {
      if (++clock.reads % 2 === 0) clock.cpu += clock.cost
      return clock.cpu
    },
    nowMs: () => clock.now,
  })
  return { boards, out, clock }
}

/** A client's doc and the updates it makes. */
function client(id: number) {
  const doc = new Y.Doc()
  doc.clientID = id
  return (change: (doc: Y.Doc) => void) => {
    const before = Y.encodeStateVector(doc)
    change(doc)
    return syncMessage(SYNC_UPDATE, Y.encodeStateAsUpdate(doc, before))
  }
}

test('an update is checked, taken, relayed and stored merged; one outside the model closes its sender', () => {
  const { boards, out } = harness()
  boards.handle({ t: 'open', board: 'a/1', parts: [] })
  assert.equal(out.shift()?.t, 'opened')
  boards.handle({ t: 'join', board: 'a/1', conn: 1 })
  assert.equal(out.shift()?.t, 'send', 'its sync step 1')
  const c = client(11)
  for (const page of ['p1', 'p2']) {
    boards.handle({
      t: 'message',
      board: 'a/1',
      conn: 1,
      data: c((doc) => doc.getMap('meta').set('page', page)),
      atMs: 1000,
    })
  }
  assert.deepEqual(
    out.map((m) => m.t),
    ['took', 'took'],
  )
  boards.handle({ t: 'flush', id: 7 })
  const stored = out.filter((m) => m.t === 'store')
  assert.equal(stored.length, 1, 'merged into one row')
  assert.equal(stored[0]?.t === 'store' && stored[0].count, 2)
  out.length = 0
  boards.handle({
    t: 'message',
    board: 'a/1',
    conn: 1,
    data: c((doc) => doc.getMap('meta').set('v', 2)),
    atMs: 1000,
  })
  const [closed] = out
  assert.equal(closed?.t, 'close')
  assert.ok(closed?.t === 'close' && closed.cooldown === true && /meta.v/.test(closed.reason))
  boards.close()
})

test('a connection over its CPU budget is closed; a board over its own refuses everyone until it refills', () => {
  const { boards, out, clock } = harness()
  boards.handle({ t: 'open', board: 'a/1', parts: [] })
  for (const conn of [1, 2, 3]) boards.handle({ t: 'join', board: 'a/1', conn })
  const clients = new Map([1, 2, 3].map((conn) => [conn, client(30 + conn)]))
  let n = 0
  const send = (conn: number, cost: number) => {
    out.length = 0
    clock.cost = cost
    const make = clients.get(conn) as ReturnType<typeof client>
    boards.handle({
      t: 'message',
      board: 'a/1',
      conn,
      data: make((doc) => doc.getMap('meta').set('page', `p${n++}`)),
      atMs: clock.now,
    })
    return [...out]
  }
  // 600 ms of work: done, then over the connection's burst (500): closed, saying so.
  const first = send(1, 600)
  assert.deepEqual(
    first.map((m) => m.t),
    ['took', 'close'],
  )
  assert.match((first[1] as { reason: string }).reason, /connection's CPU budget: try again in 1 s/)
  // Another connection goes on; with it the board passes its burst (1000).
  assert.deepEqual(
    send(2, 450).map((m) => m.t),
    ['took'],
  )
  // Now the board is in debt (1050 > 1000): the next message is refused before any work.
  const refused = send(3, 1)
  assert.deepEqual(
    refused.map((m) => m.t),
    ['close'],
  )
  assert.match((refused[0] as { reason: string }).reason, /the board is over its CPU budget/)
  // Half a second later (100 ms of CPU back at 200 a second), it takes messages again.
  clock.now += 500
  boards.handle({ t: 'join', board: 'a/1', conn: 4 })
  clients.set(4, client(34))
  assert.deepEqual(
    send(4, 1).map((m) => m.t),
    ['took'],
  )
  boards.close()
})
