// The WHIP ingest's admission, with a handler standing in for the recorder and
// a CPU reading the test sets; offers that reach its real media worker.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift'
import type { IngestHandler, Publisher, PublisherIdentity } from '../../contracts.ts'
import { type OfferRequest, WhipIngest } from './whip-ingest.ts'

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

function ingest(maxPublishers = 10) {
  const i = new WhipIngest({
    session: {
      address: '127.0.0.1',
      publicIp: undefined,
      portRange: [52_000, 52_099],
      silenceMs: 2000,
      keyFrameEveryMs: 10_000,
      reorderMs: 700,
    },
    maxPublishers,
    maxCpu: 0.8,
    cpu,
  })
  after(() => i.close())
  return i
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
  userSig: 'sig-alice',
  sdp,
  remote: '127.0.0.1',
  ...patch,
})

const h264 = () =>
  new RTCRtpCodecParameters({
    mimeType: 'video/H264',
    clockRate: 90_000,
    parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
  })

test('admission: the UserSig first, then capacity and the machine CPU; nothing is handed over', async () => {
  const whip = ingest(1)
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
  const first = await whip.offer(request(sdp))
  assert.ok(first.ok, JSON.stringify(first))
  assert.match(first.answer, /^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 520\d\d typ host/m)
  assert.equal(published.length, 1)
  const again = await whip.offer(request(sdp))
  assert.equal(!again.ok && again.status, 409, 'the same stream twice')
  const full = await whip.offer(request(sdp, { userId: 'bob', userSig: 'sig-bob' }))
  assert.match(!full.ok ? `${full.status} ${full.reason}` : '', /^503 at capacity/)
  // DELETE with another token is refused; with its own, the stream is free again at once.
  assert.equal(whip.end(first.session, 'sig-bob'), 'unauthorized')
  assert.equal(whip.end('no-such-session', 'sig-alice'), 'unknown')
  assert.equal(whip.end(first.session, 'sig-alice'), 'ended')
  assert.equal(published.length, 1)
})

test('an offer the worker cannot answer (no codec in common) is the publisher’s fault: 400', async () => {
  const whip = ingest()
  await whip.listen(handler)
  const av1 = await offer([new RTCRtpCodecParameters({ mimeType: 'video/AV1', clockRate: 90_000 })])
  const result = await whip.offer(request(av1, { userId: 'carol', userSig: 'sig-carol' }))
  assert.equal(!result.ok && result.status, 400, JSON.stringify(result))
  assert.equal(whip.publishers, 0)
})
