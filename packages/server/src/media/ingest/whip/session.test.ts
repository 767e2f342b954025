// A WHIP session's deadlines, on timers the test moves: an answered offer
// that never connects is ended at the connect deadline and its UDP port
// closed; one that connects is told at its first RTP, and ended by silence
// only once media has come.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { CloseReason } from '../../contracts.ts'
import { type SessionSettings, WhipSession } from './session.ts'
import { abandonedOffer, answerPort, ManualTimers, sendingPeer, udpPortBound } from './test-peer.ts'

const settings: SessionSettings = {
  address: '127.0.0.1',
  publicIp: undefined,
  portRange: [52_100, 52_199],
  connectMs: 5000,
  silenceMs: 4000,
  keyFrameEveryMs: 10_000,
  reorderMs: 700,
}

function recorder() {
  const seen: { connected: number; closed: [CloseReason, string | undefined][] } = {
    connected: 0,
    closed: [],
  }
  return {
    seen,
    events: {
      connected: () => {
        seen.connected++
      },
      tracks() {},
      unit() {},
      problem() {},
      close: (reason: CloseReason, detail?: string) => {
        seen.closed.push([reason, detail])
      },
    },
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await condition()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  assert.fail(`${what} did not happen in 5 s`)
}

test('an answered offer that never connects is ended at the connect deadline, and its UDP port closed', async () => {
  const timers = new ManualTimers()
  const { seen, events } = recorder()
  const { answer } = await WhipSession.open(await abandonedOffer(), settings, events, timers)
  const port = answerPort(answer)
  assert.ok(port >= 52_100 && port <= 52_199, answer)
  assert.equal(await udpPortBound(port), true, 'the session holds its port')
  timers.advance(settings.connectMs - 1)
  assert.deepEqual(seen.closed, [], 'not before the deadline')
  timers.advance(1)
  assert.deepEqual(seen.closed, [['dropped', 'not connected within 5 s']])
  await until(async () => !(await udpPortBound(port)), 'the port closing')
  timers.advance(60_000)
  assert.equal(seen.closed.length, 1, 'told once')
  assert.equal(seen.connected, 0)
})

test('a peer that connects is told at its first RTP, outlives the connect deadline, and is ended by silence after media', async () => {
  const timers = new ManualTimers()
  const { seen, events } = recorder()
  const peer = await sendingPeer()
  try {
    const { session, answer } = await WhipSession.open(peer.sdp, settings, events, timers)
    await peer.connect(answer)
    await until(() => seen.connected === 1, 'the first RTP')
    // Past the connect deadline in steps, with RTP arriving between them.
    for (let ms = 0; ms < settings.connectMs + 1000; ms += 500) {
      timers.advance(500)
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.deepEqual(seen.closed, [], 'connected: the connect deadline does not apply')
    assert.equal(seen.connected, 1, 'told once')
    peer.silence()
    // RTP already on its way is let in, then none comes: silence counts from the last packet.
    await new Promise((r) => setTimeout(r, 200))
    timers.advance(settings.silenceMs)
    assert.deepEqual(seen.closed, [])
    timers.advance(1000)
    assert.equal(seen.closed.length, 1)
    assert.equal(seen.closed[0]?.[0], 'dropped')
    assert.match(seen.closed[0]?.[1] ?? '', /^no media for \d+ s$/)
    session.close('kicked')
    assert.equal(seen.closed.length, 1, 'told once')
  } finally {
    await peer.close()
  }
})
