// One service, two apps. App X abuses everything its own valid UserSigs and
// API keys allow, all at once: it floods sync requests on a 12 MB board, opens
// four 19 MB boards, records a board page too costly to draw (10,000 large
// texts at 4096x4096, its ratio flipped 15 times a second), asks for a
// 1,500-slot mix, posts 220 WHIP offers that never connect and opens 60
// board sockets with bad UserSigs that send megabytes. Meanwhile app Y
// records a class over RTMP and uses the API. Y's API answers within a second
// (p99), its recording is whole and counts no loss, and it finishes promptly
// after its stop; X gets refusals with reasons; the service never dies.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import * as Y from 'yjs'
import { genUserSig } from '../src/apps/usersig.ts'
import {
  ABUSER,
  bigBoardUpdates,
  floodSocket,
  rawBoard,
  seedBoards,
  syncStep1,
  syncUpdate,
  TWO_APPS,
  watchOtherApp,
} from './hostile-helpers.ts'
import { download, publish, sleep, suiteServers, waitForStatus } from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'
import { abandonedOffer, WHIP_ENV } from './whip-helpers.ts'

const servers = suiteServers('online-record-tenants-')
const MB = 1024 * 1024

/** A page of 10,000 texts of 8 lines of 8 large glyphs: legal, and costly to draw. */
function hostilePage(): Uint8Array {
  const doc = new Y.Doc()
  doc.clientID = 4242
  doc.transact(() => {
    const meta = doc.getMap('meta')
    meta.set('v', 1)
    meta.set('page', 'p1')
    meta.set('ratio', '4:3')
    const page = new Y.Map<unknown>()
    doc.getMap('pages').set('p1', page)
    page.set('bg', { color: '#FFFFFF' })
    const els = new Y.Map<unknown>()
    page.set('els', els)
    const order = new Y.Array<string>()
    page.set('order', order)
    const text = `${'W'.repeat(8)}\n`.repeat(8)
    for (let i = 0; i < 10_000; i++) {
      const el = new Y.Map<unknown>()
      el.set('kind', 'text')
      el.set('color', '#000000')
      el.set('x', (i % 100) / 100)
      el.set('y', (i % 50) / 100)
      el.set('size', 0.2)
      el.set('text', text)
      els.set(`t${i}`, el)
    }
    order.push(Array.from({ length: 10_000 }, (_, i) => `t${i}`))
  })
  return Y.encodeStateAsUpdate(doc)
}

/** A Custom layout of 1,500 full-canvas 3000x3000 slots (the probe's). */
function hugeLayout() {
  return {
    Enabled: true,
    Custom: {
      Canvas: { LayoutParams: { Width: 3000, Height: 3000 } },
      InputStreamList: Array.from({ length: 1500 }, () => ({
        LayoutParams: { Width: 3000, Height: 3000 },
      })),
    },
  }
}

test('one app abusing everything at once: the other records whole and is served within a second', async () => {
  await seedBoards(join(servers.root, 'shared'), [
    { sdkAppId: ABUSER.sdkAppId, groupId: 'big', updates: bigBoardUpdates(12 * MB, 100) },
    ...[1, 2, 3, 4].map((n) => ({
      sdkAppId: ABUSER.sdkAppId,
      groupId: `b${n}`,
      updates: bigBoardUpdates(19 * MB, 200 + n),
    })),
    { sdkAppId: ABUSER.sdkAppId, groupId: 'page', updates: [hostilePage()] },
  ])
  const server = await servers.start('shared', {
    ...WHIP_ENV,
    ONLINE_RECORD_APPS: TWO_APPS,
    ONLINE_RECORD_WEBRTC_PORTS: '47500-47699',
  })
  const x = tiwClient(server.url, ABUSER)
  const y = tiwClient(server.url)
  const offer = await abandonedOffer()
  const refusals: string[] = []

  const seen = await watchOtherApp(server.url, async () => {
    // Y's class: a publisher over RTMP, recorded with Concat.
    const roomY = 9970
    const alice = publish({ rtmp: server.rtmp, room: roomY, userId: 'alice', seconds: 60 })
    await sleep(1000)
    const { TaskId } = await y.StartOnlineRecord({
      ...startRequest(roomY),
      Concat: { Enabled: true },
    })
    const idsY = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }

    // X: a task recording its costly page while its ratio flips.
    const roomX = 9971
    const userX = `tic_record_user_${roomX}_x`
    const { TaskId: taskX } = await x.StartOnlineRecord({
      SdkAppId: ABUSER.sdkAppId,
      RoomId: roomX,
      GroupId: 'page',
      RecordUserId: userX,
      RecordUserSig: genUserSig(ABUSER.sdkAppId, ABUSER.userSigKey, userX, 3600),
      Whiteboard: { Width: 4096, Height: 4096 },
    })
    const flipper = rawBoard(server.url, 'page', 'flipper')
    const flipping = (async () => {
      if (!(await flipper.opened)) return
      const doc = new Y.Doc()
      doc.clientID = 777
      for (let i = 0; i < 60; i++) {
        const before = Y.encodeStateVector(doc)
        doc.getMap('meta').set('ratio', i % 2 === 0 ? '16:9' : '4:3')
        flipper.ws.send(syncUpdate(Y.encodeStateAsUpdate(doc, before)))
        await sleep(1000 / 15)
      }
    })()

    // X: a mix of 1,500 full-canvas slots.
    const userM = `tic_record_user_${roomX + 1}_x`
    await x
      .StartOnlineRecord({
        SdkAppId: ABUSER.sdkAppId,
        RoomId: roomX + 1,
        RecordUserId: userM,
        RecordUserSig: genUserSig(ABUSER.sdkAppId, ABUSER.userSigKey, userM, 3600),
        MixStream: hugeLayout(),
        Extras: ['MIX_STREAM'],
      })
      .then(
        () => refusals.push('mix: accepted'),
        (e: { code?: string; message: string }) => refusals.push(`mix: ${e.code}: ${e.message}`),
      )

    // X: sync requests flooded on its 12 MB board, by 30 clients that read late.
    const flooders = Array.from({ length: 30 }, (_, i) =>
      rawBoard(server.url, 'big', `flood${i}`, { read: false }),
    )
    const flooding = (async () => {
      await Promise.all(
        flooders.map(async (c) => {
          if (!(await c.opened)) return
          for (let k = 0; k < 30; k++) c.ws.send(syncStep1())
        }),
      )
      await sleep(3000)
      for (const c of flooders) c.ws.resume()
      return Promise.race([
        Promise.all(flooders.map((c) => c.closed)),
        sleep(45_000).then(() => []),
      ])
    })()

    // X: four 19 MB boards at once.
    const loaders = [1, 2, 3, 4].map((n) => rawBoard(server.url, `b${n}`, `loader${n}`))
    const loading = Promise.all(
      loaders.map(async (c) => {
        if (await c.opened) c.ws.send(syncStep1())
        return Promise.race([c.closed, sleep(60_000).then(() => ({ code: 0, reason: 'open' }))])
      }),
    )

    // X: 220 WHIP offers that never connect, over many rooms and users.
    const offering = Promise.all(
      Array.from({ length: 220 }, async (_, i) => {
        await sleep(i * 30)
        const userId = i % 2 === 0 ? 'x-one' : `x-${i}`
        const res = await fetch(
          `${server.url}/whip/${30_000 + i}?sdkappid=${ABUSER.sdkAppId}&userid=${userId}`,
          {
            method: 'POST',
            headers: {
              'content-type': 'application/sdp',
              authorization: `Bearer ${genUserSig(ABUSER.sdkAppId, ABUSER.userSigKey, userId, 3600)}`,
            },
            body: offer,
          },
        )
        return { status: res.status, reason: await res.text() }
      }),
    )

    // X: 60 sockets with bad UserSigs, 64 MiB each.
    const strangers = Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        floodSocket(
          server.url,
          `/whiteboard/big?sdkappid=${ABUSER.sdkAppId}&userid=stranger${i}&usersig=eJyrVkrOzytJzSvJL1KyUnJ0dFDSUUrOz`,
          { frames: 64, frameBytes: MB, ms: 8000 },
        ),
      ),
    )

    await flipping
    flipper.ws.terminate()
    await x.StopOnlineRecord({ SdkAppId: ABUSER.sdkAppId, TaskId: taskX as string })
    // Y records 25 s in all, then stops.
    await sleep(Math.max(0, 25_000 - 1000))
    const stoppedAt = Date.now()
    await y.StopOnlineRecord(idsY)
    await alice.stop()
    const doneY = await waitForStatus(y, idsY.TaskId, 'FINISHED', 120_000)
    const finishedAfterMs = Date.now() - stoppedAt
    const [closes, loads, offers, knocks] = await Promise.all([
      flooding,
      loading,
      offering,
      strangers,
    ])
    for (const c of [...loaders, ...flooders]) c.ws.terminate()
    const doneX = await waitForStatus(x, taskX as string, 'FINISHED', 120_000, ABUSER.sdkAppId)
    return { doneY, finishedAfterMs, doneX, closes, loads, offers, knocks }
  })

  const r = seen.result
  const line = `the other app: API p50 ${seen.api.p50.toFixed(0)} / p99 ${seen.api.p99.toFixed(0)} / max ${seen.api.max.toFixed(0)} ms (n ${seen.api.n}), /healthz p99 ${seen.health.p99.toFixed(0)} ms; the service's event loop held at most ${seen.lagMs.toFixed(0)} ms; its task finished ${r.finishedAfterMs} ms after its stop`
  console.log(`ℹ ${line}`)
  assert.deepEqual(seen.failures, [], line)
  assert.ok(seen.api.p99 <= 1000 && seen.health.p99 <= 1000, line)
  assert.equal(server.child.exitCode, null, 'the service is up')

  // Y's recording: whole, nothing lost, nothing counted.
  const videos = r.doneY.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => v.UserId),
    ['alice'],
  )
  assert.equal(r.doneY.ExceptionCnt, 0)
  assert.deepEqual(r.doneY.Interrupts, [])
  const file = await download((videos[0] as VideoInfo).VideoUrl, servers.root)
  assert.ok(
    Math.abs((videos[0] as VideoInfo).VideoPlayTime + file.durationMs - r.doneY.TotalTime) <= 1500,
    `${(videos[0] as VideoInfo).VideoPlayTime} + ${file.durationMs} ≈ ${r.doneY.TotalTime}`,
  )
  assert.ok(r.finishedAfterMs <= 60_000, `finished ${r.finishedAfterMs} ms after its stop`)

  // X: told why, each time.
  assert.match(refusals.join('\n'), /mix: InvalidParameter\.RecordParameter: .*InputStreamList/)
  assert.equal(r.doneX.ExceptionCnt, 1, 'its board video is a counted problem')
  const loadCodes = r.loads.map((l) => l.code)
  assert.ok(loadCodes.filter((c) => c === 4429).length >= 1, JSON.stringify(r.loads))
  assert.ok(
    r.closes.some((c) => c.code === 4429 && /sync/.test(c.reason)),
    JSON.stringify(r.closes.slice(0, 3)),
  )
  const statuses = new Map<number, number>()
  for (const o of r.offers) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1)
  assert.ok((statuses.get(429) ?? 0) >= 150, JSON.stringify([...statuses]))
  assert.ok(r.offers.filter((o) => o.status === 429).every((o) => o.reason.length > 0))
  assert.ok(
    r.knocks.every((k) => k.code === 4401),
    JSON.stringify(r.knocks.slice(0, 3)),
  )
  console.log(
    `ℹ X: WHIP ${JSON.stringify([...statuses])}; boards ${JSON.stringify(loadCodes)}; sync flooders closed ${JSON.stringify(r.closes.map((c) => c.code))}`,
  )
})
