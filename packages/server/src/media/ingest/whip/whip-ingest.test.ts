// The WHIP ingest's admission, with a handler standing in for the recorder and
// a CPU reading the test sets; offers that reach its real media worker, from
// werift peers that connect for real or never do.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift'
import type { IngestHandler, Publisher, PublisherIdentity } from '../../contracts.ts'
import { abandonedOffer, h264, sendingPeer } from './test-peer.ts'
import { type OfferRequest, type OfferResult, WhipIngest, type WhipQuotas } from './whip-ingest.ts'

const cpu = { busy: 0, close() {} }
const published: Publisher[] = []
const handler: IngestHandler = {
  async authorize(identity: PublisherIdentity, userSig: string) {
    return userSig === `sig-${identity.userId}`
      ? { ok: true }
      : { ok: false, reason: 'bad UserSig' }
  },
  publish(p) {
    published.push(p)
  },
}

/** Quotas none of which is met unless a test lowers it. */
const ROOMY: WhipQuotas = {
  perUser: 100,
  perRoom: 100,
  perApp: 100,
  connectingPerUser: 100,
  connectingPerApp: 100,
}

function ingest(
  options: {
    maxPublishers?: number
    quotas?: Partial<WhipQuotas>
    portRange?: [number, number]
  } = {},
) {
  const refused: string[] = []
  const i = new WhipIngest({
    session: {
      address: '127.0.0.1',
      publicIp: undefined,
      portRange: options.portRange ?? [52_000, 52_099],
      connectMs: 5000,
      silenceMs: 2000,
      keyFrameEveryMs: 10_000,
      reorderMs: 700,
    },
    maxPublishers: options.maxPublishers ?? 10,
    maxCpu: 0.8,
    quotas: { ...ROOMY, ...options.quotas },
    cpu,
    onRefused: (why) => refused.push(why),
  })
  after(() => i.close())
  return Object.assign(i, { refused })
}

/** An offer as a sending peer makes it, with the codecs given. */
async function offer(codecs: RTCRtpCodecParameters[]): Promise<string> {
  const pc = new RTCPeerConnection({ codecs: { video: codecs }, iceServers: [] })
  pc.addTransceiver('video', { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  const sdp = pc.localDescription?.sdp as string
  await pc.close()
  return sdp
}

const request = (sdp: string, patch: Partial<OfferRequest> = {}): OfferRequest => ({
  room: '1234',
  sdkAppId: 1400000001,
  userId: 'alice',
  kind: 'main',
  userSig: `sig-${patch.userId ?? 'alice'}`,
  sdp,
  remote: '127.0.0.1',
  ...patch,
})

/** `status reason` of a refusal, `ok` of an admission. */
const outcome = (r: OfferResult) => (r.ok ? 'ok' : `${r.status} ${r.reason}`)

test('admission: the UserSig first, then capacity and the machine CPU; nothing is handed over', async () => {
  const whip = ingest({ maxPublishers: 1 })
  const sdp = await offer([h264()])
  assert.deepEqual(await whip.offer(request(sdp)), {
    ok: false,
    status: 503,
    reason: 'not accepting publishers now',
  })
  await whip.listen(handler)
  const refused = await whip.offer(request(sdp, { userSig: 'forged' }))
  assert.deepEqual(refused, { ok: false, status: 401, reason: 'bad UserSig' })
  cpu.busy = 0.95
  const busy = await whip.offer(request(sdp))
  assert.equal(busy.ok, false)
  assert.equal(!busy.ok && busy.status, 503)
  assert.match(!busy.ok ? busy.reason : '', /busy \(CPU 95 %\)/)
  cpu.busy = 0.1
  const before = published.length
  const first = await whip.offer(request(sdp))
  assert.ok(first.ok, JSON.stringify(first))
  assert.match(first.answer, /^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 520\d\d typ host/m)
  assert.equal(published.length, before + 1)
  const again = await whip.offer(request(sdp))
  assert.equal(!again.ok && again.status, 409, 'the same stream twice')
  const full = await whip.offer(request(sdp, { userId: 'bob' }))
  assert.match(outcome(full), /^503 at capacity/)
  assert.deepEqual(whip.refused, ['cpu', 'capacity'])
  // DELETE with another token is refused; with its own, the stream is free again at once.
  assert.equal(whip.end(first.session, 'sig-bob'), 'unauthorized')
  assert.equal(whip.end('no-such-session', 'sig-alice'), 'unknown')
  assert.equal(whip.end(first.session, 'sig-alice'), 'ended')
  assert.equal(published.length, before + 1)
})

test('an offer the worker cannot answer (no codec in common) is the publisher’s fault: 400', async () => {
  const whip = ingest()
  await whip.listen(handler)
  const av1 = await offer([new RTCRtpCodecParameters({ mimeType: 'video/AV1', clockRate: 90_000 })])
  const result = await whip.offer(request(av1, { userId: 'carol' }))
  assert.equal(!result.ok && result.status, 400, JSON.stringify(result))
  assert.equal(whip.publishers, 0)
})

test('a user holds ONLINE_RECORD_WHIP_MAX_PER_USER publishes in all rooms; another user is not held back', async () => {
  const whip = ingest({ quotas: { perUser: 2 } })
  await whip.listen(handler)
  const sdp = await abandonedOffer()
  assert.equal(outcome(await whip.offer(request(sdp, { room: 'a' }))), 'ok')
  assert.equal(outcome(await whip.offer(request(sdp, { room: 'a', kind: 'aux' }))), 'ok')
  const third = await whip.offer(request(sdp, { room: 'b' }))
  assert.deepEqual(third, {
    ok: false,
    status: 429,
    reason: 'too many publishes of user alice (at most 2, in all rooms)',
    retryAfter: 30,
  })
  assert.equal(outcome(await whip.offer(request(sdp, { room: 'b', userId: 'bob' }))), 'ok')
  // The same user id in another app is another user.
  assert.equal(outcome(await whip.offer(request(sdp, { room: 'b', sdkAppId: 1400000002 }))), 'ok')
  assert.deepEqual(whip.refused, ['user'])
})

test('a room holds ONLINE_RECORD_WHIP_MAX_PER_ROOM users publishing; one of them may add a screen', async () => {
  const whip = ingest({ quotas: { perRoom: 2 } })
  await whip.listen(handler)
  const sdp = await abandonedOffer()
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'alice' }))), 'ok')
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'bob' }))), 'ok')
  assert.deepEqual(await whip.offer(request(sdp, { userId: 'carol' })), {
    ok: false,
    status: 429,
    reason: 'too many users publishing in room 1234 (at most 2)',
    retryAfter: 30,
  })
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'bob', kind: 'aux' }))), 'ok')
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'carol', room: '5678' }))), 'ok')
  // Room 1234 of another app is another room.
  assert.equal(
    outcome(await whip.offer(request(sdp, { userId: 'carol', sdkAppId: 1400000002 }))),
    'ok',
  )
  assert.deepEqual(whip.refused, ['room'])
})

test('an app holds ONLINE_RECORD_WHIP_MAX_PER_APP publishes; another app is admitted; an ended publish frees its place', async () => {
  const whip = ingest({ quotas: { perApp: 2 } })
  await whip.listen(handler)
  const sdp = await abandonedOffer()
  const first = await whip.offer(request(sdp, { userId: 'alice', room: 'a' }))
  assert.ok(first.ok)
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'bob', room: 'b' }))), 'ok')
  assert.deepEqual(await whip.offer(request(sdp, { userId: 'carol', room: 'c' })), {
    ok: false,
    status: 429,
    reason: 'too many publishes of app 1400000001 (at most 2)',
    retryAfter: 30,
  })
  assert.equal(
    outcome(await whip.offer(request(sdp, { userId: 'carol', sdkAppId: 1400000002 }))),
    'ok',
  )
  // Its place is free once the worker has closed it.
  assert.equal(whip.end(first.session, 'sig-alice'), 'ended')
  let again = await whip.offer(request(sdp, { userId: 'carol', room: 'c' }))
  for (let i = 0; i < 100 && !again.ok; i++) {
    await new Promise((r) => setTimeout(r, 20))
    again = await whip.offer(request(sdp, { userId: 'carol', room: 'c' }))
  }
  assert.equal(outcome(again), 'ok')
  assert.deepEqual(whip.refused.slice(0, 2), ['app', 'app'])
})

test('offers not yet connected are held per user and per app apart from publishes: one that connects frees its place, another app is not held back', async () => {
  const whip = ingest({ quotas: { connectingPerUser: 1, connectingPerApp: 2 } })
  await whip.listen(handler)
  const sdp = await abandonedOffer()
  const peer = await sendingPeer()
  after(() => peer.close())
  // A getter read again after it was asserted (TypeScript would keep the narrowed value).
  const connecting = () => whip.connecting
  const alice = await whip.offer(request(peer.sdp, { userId: 'alice' }))
  assert.ok(alice.ok, outcome(alice))
  assert.equal(whip.connecting, 1)
  assert.deepEqual(await whip.offer(request(sdp, { userId: 'alice', kind: 'aux' })), {
    ok: false,
    status: 429,
    reason: 'too many offers of user alice not yet connected (at most 1)',
    retryAfter: 1,
  })
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'bob' }))), 'ok')
  assert.deepEqual(await whip.offer(request(sdp, { userId: 'carol' })), {
    ok: false,
    status: 429,
    reason: 'too many offers of app 1400000001 not yet connected (at most 2)',
    retryAfter: 1,
  })
  assert.equal(
    outcome(await whip.offer(request(sdp, { userId: 'carol', sdkAppId: 1400000002 }))),
    'ok',
  )
  // Alice's peer connects (ICE, DTLS, RTP): her place among the offers is free, her publish stays.
  await peer.connect(alice.answer)
  for (let i = 0; i < 250 && connecting() === 3; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(connecting(), 2, 'alice connected')
  assert.equal(whip.publishers, 3)
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'alice', kind: 'aux' }))), 'ok')
  assert.deepEqual(whip.refused, ['connecting_user', 'connecting_app'])
})

test('the UDP ports cap admission below ONLINE_RECORD_WHIP_MAX_PUBLISHERS: a refusal with the reason, not a worker error', async () => {
  const whip = ingest({ maxPublishers: 10, portRange: [52_200, 52_201] })
  await whip.listen(handler)
  assert.equal(whip.capacity, 2)
  assert.deepEqual(whip.ports, {
    range: [52_200, 52_201],
    perPublish: 1,
    inUse: 0,
    free: 2,
    publishes: 2,
  })
  const sdp = await abandonedOffer()
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'alice' }))), 'ok')
  assert.equal(outcome(await whip.offer(request(sdp, { userId: 'bob' }))), 'ok')
  assert.equal(whip.ports.free, 0)
  assert.deepEqual(await whip.offer(request(sdp, { userId: 'carol' })), {
    ok: false,
    status: 503,
    reason: 'at capacity: the UDP ports 52200-52201 allow 2 publishers',
  })
  assert.deepEqual(whip.refused, ['ports'])
})

test('a session’s state is told to its own user in its own room only: live, then why it ended', async () => {
  const whip = ingest()
  await whip.listen(handler)
  const sdp = await abandonedOffer()
  const result = await whip.offer(request(sdp))
  assert.ok(result.ok)
  const alice = { sdkAppId: 1400000001, room: '1234', userId: 'alice' }
  assert.equal(whip.sessionState(result.session, alice), 'live')
  assert.equal(whip.sessionState(result.session, { ...alice, userId: 'bob' }), 'unknown')
  assert.equal(whip.sessionState(result.session, { ...alice, room: '99' }), 'unknown')
  assert.equal(whip.sessionState('not-a-session', alice), 'unknown')
  whip.end(result.session, 'sig-alice')
  assert.equal(whip.sessionState(result.session, alice), 'unpublished')
  assert.equal(whip.sessionState(result.session, { ...alice, userId: 'bob' }), 'unknown')
})
