// WHIP admission between tenants, through a real `online-record serve` with
// two apps: app X floods offers that never connect (real werift offers
// without candidates, valid UserSigs, many rooms, one user and many users);
// app Y is admitted every time meanwhile, X is told why it is refused, and
// the slots and UDP ports X held are free again within the connect deadline.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { genUserSig } from '../src/apps/usersig.ts'
import { sleep, suiteServers } from './media-helpers.ts'
import { TEST_APP } from './server-process.ts'
import { abandonedOffer, publishersOf, udpPortsBound, WHIP_ENV } from './whip-helpers.ts'

const servers = suiteServers('online-record-whip-admission-')

const APP_Y = {
  sdkAppId: 1400000002,
  secretId: 'AKIDe2etest00000000000002',
  secretKey: 'e2e-test-secret-key-000000000002',
  userSigKey: 'd'.repeat(64),
}
/** A range of its own, so that what is bound in it is this suite's server's. */
const PORTS = [47300, 47399] as const
/** ONLINE_RECORD_WHIP_CONNECT_S's default: an offer that has not connected by then is ended. */
const CONNECT_S = 5

type Posted = {
  status: number
  reason: string
  retryAfter: string | null
  location: string | null
  /** performance.now() when the answer arrived. */
  at: number
}

test('one app flooding offers that never connect takes nothing another app needs, and its slots and ports free within the connect deadline', async (t) => {
  const server = await servers.start('flood', {
    ...WHIP_ENV,
    ONLINE_RECORD_APPS: JSON.stringify([TEST_APP, APP_Y]),
    ONLINE_RECORD_WEBRTC_PORTS: `${PORTS[0]}-${PORTS[1]}`,
  })
  assert.equal(udpPortsBound(PORTS), 0, 'nothing bound in the range before')
  // 100 ports are fewer than the 200 publishers allowed: said at start, and admission capped.
  for (let i = 0; i < 100 && !server.output().includes('WHIP capacity'); i++) await sleep(50)
  assert.match(
    server.output(),
    /WHIP capacity: the UDP ports 47300-47399 \(100, 1 per publisher\) allow 100 publishers, fewer than ONLINE_RECORD_WHIP_MAX_PUBLISHERS \(200\): at most 100 are admitted/,
  )
  const token = readFileSync(join(servers.root, 'flood', 'admin-token'), 'utf8').trim()
  const whipInfo = async () =>
    (
      (await (
        await fetch(`${server.url}/admin/v1/info`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { whip: { capacity: number; connecting: number; ports: unknown } }
    ).whip
  assert.deepEqual(await whipInfo(), {
    publishers: 0,
    connecting: 0,
    capacity: 100,
    ports: { range: '47300-47399', perPublisher: 1, inUse: 0, free: 100 },
    quotas: { perUser: 4, perRoom: 50, perApp: 100, connectingPerUser: 2, connectingPerApp: 10 },
  })
  const sdp = await abandonedOffer()
  const sigs = new Map<string, string>()
  const sigOf = (app: typeof TEST_APP, userId: string): string => {
    const key = `${app.sdkAppId}/${userId}`
    const sig = sigs.get(key) ?? genUserSig(app.sdkAppId, app.userSigKey, userId, 3600)
    sigs.set(key, sig)
    return sig
  }
  const post = async (
    app: typeof TEST_APP,
    room: number,
    userId: string,
    kind: 'main' | 'aux' = 'main',
  ): Promise<Posted> => {
    const res = await fetch(
      `${server.url}/whip/${room}?sdkappid=${app.sdkAppId}&userid=${userId}${kind === 'aux' ? '&streamtype=aux' : ''}`,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/sdp',
          authorization: `Bearer ${sigOf(app, userId)}`,
        },
        body: sdp,
      },
    )
    const body = await res.text()
    return {
      status: res.status,
      reason: res.status === 201 ? '' : body,
      retryAfter: res.headers.get('retry-after'),
      location: res.headers.get('location'),
      at: performance.now(),
    }
  }

  // X: 220 offers over 8 s, not waiting for answers: half from one user over
  // 110 rooms, half from 110 users over 37 rooms. Held 4 s each, as today's
  // code held them, that is more than the 100 ports of the range.
  const offersOfX = Array.from({ length: 220 }, (_, i) =>
    i % 2 === 0
      ? { room: 10_000 + i, userId: 'x-one', kind: i % 4 === 0 ? 'main' : 'aux' }
      : { room: 20_000 + (i % 37), userId: `x-${i}`, kind: 'main' },
  ) as { room: number; userId: string; kind: 'main' | 'aux' }[]
  const x: Posted[] = []
  const flood = (async () => {
    const posts: Promise<void>[] = []
    for (const o of offersOfX) {
      posts.push(post(TEST_APP, o.room, o.userId, o.kind).then((r) => void x.push(r)))
      await sleep(36)
    }
    await Promise.all(posts)
  })()
  let flooding = true
  void flood.finally(() => {
    flooding = false
  })

  // Y, meanwhile and while X holds what it got: each offer admitted, then ended.
  const y: Posted[] = []
  const deletes: number[] = []
  let mostHeld = 0
  while (flooding || y.length < 20) {
    const held = await whipInfo()
    mostHeld = Math.max(mostHeld, held.connecting)
    const got = await post(APP_Y, 7700 + (y.length % 3), `y-${y.length}`)
    y.push(got)
    if (got.location !== null) {
      const ended = await fetch(new URL(got.location, server.url), {
        method: 'DELETE',
        headers: { authorization: `Bearer ${sigOf(APP_Y, `y-${y.length - 1}`)}` },
      })
      deletes.push(ended.status)
    }
    await sleep(100)
  }
  await flood

  const tally = (list: Posted[]) => {
    const by = new Map<string, number>()
    for (const r of list) {
      const k = `${r.status} ${r.reason.trim().replace(/\d+/g, 'N')}`
      by.set(k, (by.get(k) ?? 0) + 1)
    }
    return [...by].map(([k, n]) => `${n} × ${k}`).join('; ')
  }
  t.diagnostic(`app X: ${tally(x)}`)
  t.diagnostic(`app Y: ${tally(y)}`)
  const refusedY = y.filter((r) => r.status !== 201)
  assert.deepEqual(
    refusedY.map((r) => `${r.status} ${r.reason.trim()}`),
    [],
    `app Y was refused ${refusedY.length} of ${y.length} times`,
  )
  assert.ok(
    deletes.every((s) => s === 200),
    `each of Y's publishes ended by its DELETE: ${deletes.join(' ')}`,
  )
  const admittedX = x.filter((r) => r.status === 201)
  const refusedX = x.filter((r) => r.status !== 201)
  t.diagnostic(
    `app X: ${admittedX.length} of ${x.length} offers admitted; app Y: ${y.length - refusedY.length} of ${y.length}`,
  )
  assert.ok(refusedX.length >= 200, `X refused ${refusedX.length} times`)
  for (const r of refusedX) {
    assert.equal(r.status, 429, `X's own quota: ${r.status} ${r.reason}`)
    assert.match(r.reason, /^[^\n]{10,}\n$/, 'a one-line reason')
    assert.match(r.reason, /^too many (offers|publishes|users publishing) /)
    assert.ok(Number(r.retryAfter) >= 1, `Retry-After ${r.retryAfter}`)
  }
  assert.ok(
    refusedX.some((r) => /user x-one/.test(r.reason)),
    'the one user met its own quota',
  )
  assert.ok(
    refusedX.some((r) => /app 1400000001/.test(r.reason)),
    'the many users met the app quota',
  )

  // What X holds ends at the connect deadline: its slots and its UDP ports.
  const lastAnswer = Math.max(...admittedX.map((r) => r.at))
  let freedMs = Number.POSITIVE_INFINITY
  while (performance.now() - lastAnswer < 20_000) {
    if ((await publishersOf(server.url, 'whip')) === 0 && udpPortsBound(PORTS) === 0) {
      freedMs = performance.now() - lastAnswer
      break
    }
    await sleep(50)
  }
  t.diagnostic(`X's last admitted offer was freed ${Math.round(freedMs)} ms after its answer`)
  t.diagnostic(`the most offers not yet connected seen at once: ${mostHeld}`)
  assert.ok(mostHeld <= 10 + 1, `at most app X's 10 and one of Y's: ${mostHeld}`)
  const gauge = await (await fetch(`${server.url}/metrics`)).text()
  assert.match(gauge, /^online_record_webrtc_ports\{state="in_use"\} 0$/m)
  assert.match(gauge, /^online_record_webrtc_ports\{state="free"\} 100$/m)
  assert.match(gauge, /^online_record_whip_refusals_total\{reason="connecting_app"\} \d+$/m)
  assert.ok(
    freedMs <= CONNECT_S * 1000 + 1000,
    `freed ${Math.round(freedMs)} ms after the last answer`,
  )
})

test('the class status tells a user whether its own WHIP sessions are live, or why they ended', async () => {
  const server = await servers.start('status', WHIP_ENV)
  const room = 7800
  const sig = (userId: string) => genUserSig(TEST_APP.sdkAppId, TEST_APP.userSigKey, userId, 3600)
  const kim = sig('kim')
  const publishAs = async () => {
    const res = await fetch(`${server.url}/whip/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=kim`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${kim}` },
      body: await abandonedOffer(),
    })
    assert.equal(res.status, 201, await res.text())
    return new URL(res.headers.get('location') as string, server.url)
  }
  const status = async (userId: string, token: string, sessions: string) => {
    const res = await fetch(
      `${server.url}/class/${room}/status?sdkappid=${TEST_APP.sdkAppId}&userid=${userId}&sessions=${sessions}`,
      { headers: { authorization: `Bearer ${token}` } },
    )
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  const deleted = await publishAs()
  const deletedId = deleted.pathname.split('/').pop() as string
  assert.deepEqual(await status('kim', kim, deletedId), {
    status: 200,
    body: { room: String(room), state: 'not recording', sessions: { [deletedId]: 'live' } },
  })
  // Another user of the app learns nothing of it.
  assert.deepEqual((await status('lee', sig('lee'), deletedId)).body.sessions, {
    [deletedId]: 'unknown',
  })
  const ended = await fetch(deleted, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${kim}` },
  })
  assert.equal(ended.status, 200)
  // One that never connects is dropped at the connect deadline.
  const silent = (await publishAs()).pathname.split('/').pop() as string
  const asked = `${deletedId},${silent},nope`
  let states = (await status('kim', kim, asked)).body.sessions
  assert.deepEqual(states, { [deletedId]: 'unpublished', [silent]: 'live', nope: 'unknown' })
  for (let i = 0; i < 100 && (states as Record<string, string>)[silent] === 'live'; i++) {
    await sleep(100)
    states = (await status('kim', kim, asked)).body.sessions
  }
  assert.deepEqual(states, { [deletedId]: 'unpublished', [silent]: 'dropped', nope: 'unknown' })
  for (const bad of ['a,b,c,d,e', 'x y', 'a%2F..']) {
    const refused = await status('kim', kim, bad)
    assert.equal(refused.status, 400, bad)
    assert.match(String(refused.body.reason), /sessions/)
  }
})
