// One app abusing what its own valid UserSigs allow on the whiteboard, the
// other app served as before: its API and /healthz answer within a second
// (p99) while the first floods sync requests on a 12 MB board, opens four
// 19 MB boards at once, has refused updates rebuild a 10 MB board, sends
// tiny updates by the tens of thousands, and opens sockets with bad UserSigs
// that send megabytes before they are checked. The abuser gets refusals
// with reasons; the service never dies.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  ABUSER,
  badUpdate,
  bigBoardUpdates,
  floodSocket,
  rawBoard,
  rssMib,
  seedBoards,
  syncStep1,
  syncUpdate,
  TWO_APPS,
  tinyUpdates,
  watchOtherApp,
} from './hostile-helpers.ts'
import { sleep, suiteServers } from './media-helpers.ts'

const servers = suiteServers('online-record-board-hostile-')
const MB = 1024 * 1024

/** A server whose store already holds the abuser's boards. */
async function serverWith(dir: string, boards: { groupId: string; bytes: number }[]) {
  await seedBoards(
    join(servers.root, dir),
    boards.map((b, i) => ({
      sdkAppId: ABUSER.sdkAppId,
      groupId: b.groupId,
      updates: bigBoardUpdates(b.bytes, 100 + i),
    })),
  )
  return servers.start(dir, { ONLINE_RECORD_APPS: TWO_APPS })
}

/** The other app was served within a second (p99), with no failure. */
function servedWell(seen: Awaited<ReturnType<typeof watchOtherApp>>, what: string) {
  const line = `${what}: API p50 ${seen.api.p50.toFixed(0)} / p99 ${seen.api.p99.toFixed(0)} / max ${seen.api.max.toFixed(0)} ms (n ${seen.api.n}); /healthz p99 ${seen.health.p99.toFixed(0)} / max ${seen.health.max.toFixed(0)} ms; the service's event loop held at most ${seen.lagMs.toFixed(0)} ms`
  console.log(`ℹ ${line}`)
  assert.deepEqual(seen.failures, [], line)
  assert.ok(seen.api.n >= 5, line)
  assert.ok(seen.api.p99 <= 1000, line)
  assert.ok(seen.health.p99 <= 1000, line)
}

test('sync requests flooded on a 12 MB board: answered from its bytes, the abuser refused, the other app served', async () => {
  const server = await serverWith('sync', [{ groupId: 'big', bytes: 12 * MB }])
  const seen = await watchOtherApp(server.url, async () => {
    // 30 clients that each ask for the whole board 30 times and read nothing.
    const clients = Array.from({ length: 30 }, (_, i) =>
      rawBoard(server.url, 'big', `flood${i}`, { read: false }),
    )
    await Promise.all(
      clients.map(async (c) => {
        if (!(await c.opened)) return
        for (let k = 0; k < 30; k++) c.ws.send(syncStep1())
      }),
    )
    // They read again later (one that never does cannot read its close either).
    await sleep(3000)
    for (const c of clients) c.ws.resume()
    const closes = await Promise.race([
      Promise.all(clients.map((c) => c.closed)),
      sleep(45_000).then(() => undefined),
    ])
    for (const c of clients) c.ws.terminate()
    return closes
  })
  servedWell(seen, 'sync flood on a 12 MB board')
  assert.ok(seen.result, 'every flooding client was closed within 45 s')
  // A client that reads nothing cannot read its close frame either: those far behind are cut (1006).
  const codes = seen.result.map((c) => c.code)
  assert.ok(
    codes.every((c) => c === 4429 || c === 4408 || c === 1006),
    `closed over a budget, too far behind, or cut: ${codes.join(',')}`,
  )
  assert.ok(
    seen.result.some((c) => /sync requested too often|sync budget/.test(c.reason)),
    JSON.stringify(seen.result.slice(0, 3)),
  )
  assert.equal(server.child.exitCode, null, 'the service is up')
})

test('four 19 MB boards of one app at once: one opens, the others are refused for the memory budget; the service stays up', async () => {
  const server = await serverWith(
    'four',
    [1, 2, 3, 4].map((n) => ({ groupId: `b${n}`, bytes: 19 * MB })),
  )
  const seen = await watchOtherApp(server.url, async () => {
    const clients = [1, 2, 3, 4].map((n) => rawBoard(server.url, `b${n}`, `loader${n}`))
    // Each asks for its board, as a client does once it is connected.
    await Promise.all(clients.map(async (c) => (await c.opened) && c.ws.send(syncStep1())))
    // Open ones are answered with the board; refused ones are closed with the reason.
    const deadline = Date.now() + 90_000
    const outcome = await Promise.all(
      clients.map((c) =>
        Promise.race([
          c.closed,
          (async () => {
            while (c.received() < 10 * MB && Date.now() < deadline) await sleep(100)
            return c.received() >= 10 * MB
              ? { code: 0, reason: 'opened' }
              : { code: -1, reason: 'no answer in 90 s' }
          })(),
        ]),
      ),
    )
    for (const c of clients) c.ws.terminate()
    return outcome
  })
  servedWell(seen, 'four 19 MB boards')
  const opened = seen.result.filter((o) => o.code === 0)
  const refused = seen.result.filter((o) => o.code === 4429)
  assert.ok(opened.length >= 1, JSON.stringify(seen.result))
  assert.ok(refused.length >= 1, JSON.stringify(seen.result))
  for (const r of refused) assert.match(r.reason, /memory budget/)
  assert.equal(server.child.exitCode, null, 'the service is up')
})

test('refused updates on a 10 MB board rebuild it in its app’s worker: /healthz and the other app do not wait', async () => {
  const server = await serverWith('refused', [{ groupId: 'ten', bytes: 10 * MB }])
  const seen = await watchOtherApp(server.url, async () => {
    const closes = []
    for (let i = 0; i < 10; i++) {
      const c = rawBoard(server.url, 'ten', `vandal${i}`)
      if (!(await c.opened)) {
        closes.push(await c.closed)
        continue
      }
      c.ws.send(syncUpdate(badUpdate(9000 + i)))
      closes.push(await c.closed)
    }
    return closes
  })
  servedWell(seen, '10 refused updates on a 10 MB board')
  for (const c of seen.result) assert.ok(c.code === 4400 || c.code === 4429, JSON.stringify(c))
  assert.ok(seen.result.some((c) => /update refused: meta.v/.test(c.reason)))
})

test('34,200 tiny legal updates: the flooding connections are refused, the other app served', async () => {
  const server = await servers.start('tiny', { ONLINE_RECORD_APPS: TWO_APPS })
  const updates = Array.from({ length: 10 }, (_, i) => tinyUpdates(7000 + i, 3420).map(syncUpdate))
  const seen = await watchOtherApp(server.url, async () => {
    const clients = updates.map((_, i) =>
      rawBoard(server.url, 'tiny', `spammer${i}`, { read: false }),
    )
    await Promise.all(
      clients.map(async (c, i) => {
        if (!(await c.opened)) return
        for (const [k, u] of (updates[i] ?? []).entries()) {
          if (c.ws.readyState !== c.ws.OPEN) break
          c.ws.send(u)
          // As fast as a client can, letting this process breathe now and then.
          if (k % 200 === 199) await new Promise((r) => setImmediate(r))
        }
      }),
    )
    await sleep(2000)
    for (const c of clients) c.ws.resume()
    const closes = await Promise.race([
      Promise.all(clients.map((c) => c.closed)),
      sleep(20_000).then(() => undefined),
    ])
    for (const c of clients) c.ws.terminate()
    return closes
  })
  servedWell(seen, '34,200 tiny updates')
  assert.ok(seen.result, 'the spammers were closed')
  assert.ok(
    seen.result.every((c) => c.code === 4429),
    JSON.stringify(seen.result.map((c) => [c.code, c.reason])),
  )
  assert.ok(seen.result.some((c) => /too many messages/.test(c.reason)))
})

test('60 sockets with bad UserSigs sending megabytes before they are checked, while a 12 MB board is read: nothing of it is held, each is refused', async () => {
  const server = await serverWith('unauthenticated', [{ groupId: 'big', bytes: 12 * MB }])
  // The app's own client has its big board.
  const owner = rawBoard(server.url, 'big', 'owner')
  assert.ok(await owner.opened)
  owner.ws.send(syncStep1())
  while (owner.received() < 10 * MB) await sleep(50)
  const before = rssMib(server.child.pid as number)
  let peak = before
  const seen = await watchOtherApp(server.url, async () => {
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMib(server.child.pid as number))
    }, 50)
    // It asks for the board again (work for the service) while strangers knock:
    // 64 MiB each, in 1 MiB messages, as fast as the service takes them.
    owner.ws.send(syncStep1())
    owner.ws.send(syncStep1())
    const bad = 'eJyrVkrOzytJzSvJL1KyUnJ0dFDSUUrOz'
    const closes = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        floodSocket(
          server.url,
          `/whiteboard/big?sdkappid=${ABUSER.sdkAppId}&userid=stranger${i}&usersig=${bad}`,
          { frames: 64, frameBytes: MB, ms: 8000 },
        ),
      ),
    )
    await sleep(500)
    clearInterval(sampler)
    return closes
  })
  owner.ws.terminate()
  const sent = seen.result.reduce((n, c) => n + c.sent, 0)
  console.log(
    `ℹ service RSS ${before.toFixed(0)} MiB before, ${peak.toFixed(0)} MiB at most; the strangers got ${sent} MiB out before they were refused`,
  )
  servedWell(seen, '60 unauthenticated sockets')
  assert.ok(peak - before < 150, `RSS grew by ${(peak - before).toFixed(0)} MiB`)
  for (const c of seen.result) assert.equal(c.code, 4401, JSON.stringify(c))
  assert.ok(seen.result.every((c) => /^refused: /.test(c.reason)))
  assert.equal(server.child.exitCode, null)
})
