// The whiteboard on two server processes sharing one PostgreSQL: stock
// clients on different processes see each other's strokes, and a restart
// keeps the board. Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { addPage, connect, draw, els, shape, synced, until } from './board-helpers.ts'
import { suiteServers } from './media-helpers.ts'
import { suiteSchema } from './server-process.ts'

const servers = suiteServers('online-record-board-pg-')
const schema = suiteSchema('e2e_board')

test('clients on two processes see each other within 200 ms; a restart keeps the board', async (t) => {
  const env = { DATABASE_URL: schema.databaseUrl }
  const [one, two] = await Promise.all([servers.start('a', env), servers.start('b', env)])
  const group = 'class-two-processes'
  const a = connect(one.url, group, 'teacher')
  const b = connect(two.url, group, 'student')
  await Promise.all([synced(a), synced(b)])
  a.doc.transact(() => {
    a.doc.getMap('meta').set('page', 'p1')
    addPage(a.doc, 'p1')
  })
  await until('the page on the other process', () => els(b.doc, 'p1') !== undefined)
  // Strokes each way; each is timed from the change to its arrival.
  const latencies: number[] = []
  for (let i = 0; i < 20; i++) {
    const [from, to] = i % 2 === 0 ? [a, b] : [b, a]
    const id = `s${i}`
    const sent = performance.now()
    draw(
      from.doc,
      'p1',
      id,
      shape('rect', { color: '#000000', x: i / 25, y: 0.5, w: 0.02, h: 0.02 }),
    )
    await until(`stroke ${id}`, () => els(to.doc, 'p1')?.has(id) === true, 5000)
    latencies.push(performance.now() - sent)
  }
  latencies.sort((x, y) => x - y)
  t.diagnostic(
    `cross-process latency ms: min ${latencies[0]?.toFixed(0)}, median ${latencies[10]?.toFixed(0)}, max ${latencies.at(-1)?.toFixed(0)}`,
  )
  assert.ok((latencies.at(-1) as number) < 200, `slowest ${latencies.at(-1)} ms`)
  a.destroy()
  b.destroy()

  // Both processes restart: the board is in the store.
  assert.equal(await one.stop(), 0)
  assert.equal(await two.stop(), 0)
  const again = await servers.start('a', env)
  const c = connect(again.url, group, 'observer')
  await synced(c)
  await until('the board after the restart', () => els(c.doc, 'p1')?.size === 20)
  c.destroy()
  assert.equal(await again.stop(), 0)
})
