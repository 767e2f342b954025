// The SDP checks before an offer is answered, and the candidates an answer keeps.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { candidatesFor } from './session.ts'
import { offerProblem } from './whip-route.ts'

const OFFER = [
  'v=0',
  'o=- 1 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=ice-ufrag:abcd',
  'a=ice-pwd:0123456789012345678901',
  'a=fingerprint:sha-256 00:11',
  'a=sendonly',
  '',
].join('\r\n')

test('an offer needs media, a DTLS fingerprint and ICE credentials', () => {
  assert.equal(offerProblem(OFFER), undefined)
  assert.match(offerProblem('{"sdp":1}') ?? '', /not an SDP/)
  assert.match(offerProblem(OFFER.replace(/m=video[^\r]*\r\n/, '')) ?? '', /no audio or video/)
  assert.match(offerProblem(OFFER.replace(/a=fingerprint[^\r]*\r\n/, '')) ?? '', /fingerprint/)
  assert.match(offerProblem(OFFER.replace(/a=ice-pwd[^\r]*\r\n/, '')) ?? '', /ICE credentials/)
})

const ANSWER = [
  'v=0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'a=candidate:1 1 udp 2130706431 10.0.0.5 50001 typ host generation 0',
  'a=candidate:2 1 udp 2130706431 127.0.0.1 50002 typ host generation 0',
  'a=candidate:3 1 tcp 2130706431 127.0.0.1 50003 typ host tcptype passive',
  'a=candidate:4 1 udp 2130706431 fe80::1 50004 typ host',
  'a=candidate:5 1 udp 1694498815 203.0.113.9 50005 typ srflx raddr 10.0.0.5 rport 50001',
  'a=rtpmap:111 opus/48000/2',
  '',
].join('\r\n')

const candidates = (sdp: string) => sdp.split('\r\n').filter((l) => l.startsWith('a=candidate'))

test('the answer keeps UDP host candidates on the receiving address, written with the public one', () => {
  assert.deepEqual(
    candidates(candidatesFor(ANSWER, { address: '127.0.0.1', publicIp: undefined })),
    ['a=candidate:2 1 udp 2130706431 127.0.0.1 50002 typ host generation 0'],
  )
  assert.deepEqual(
    candidates(candidatesFor(ANSWER, { address: '10.0.0.5', publicIp: '198.51.100.7' })),
    ['a=candidate:1 1 udp 2130706431 198.51.100.7 50001 typ host generation 0'],
  )
  // Every IPv4 interface: each UDP host candidate, no IPv6, no TCP, no server-reflexive.
  assert.deepEqual(
    candidates(candidatesFor(ANSWER, { address: undefined, publicIp: undefined })).map(
      (l) => l.split(' ')[4],
    ),
    ['10.0.0.5', '127.0.0.1'],
  )
  assert.ok(
    candidatesFor(ANSWER, { address: undefined, publicIp: undefined }).includes('a=rtpmap:111'),
  )
})
