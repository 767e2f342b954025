// The ingest on a real socket with real ffmpeg publishers; the handler here
// records what it is given (tracks, access units) instead of recording media.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, before, test } from 'node:test'
import type { AccessUnit, CloseReason, Publisher, Tracks } from '../../contracts.ts'
import { resolveMediaTools } from '../../ffmpeg/ffmpeg-tools.ts'
import { testSourceArgs } from '../../test-media.ts'
import { assertRtmpInternals, parsePublishName, RtmpIngest } from './rtmp-ingest.ts'

const { ffmpeg } = resolveMediaTools()

test('publish names: TRTC convention, sub-stream parameter, refusals', () => {
  assert.deepEqual(parsePublishName('push', '1234?sdkappid=1400000001&userid=alice&usersig=x'), {
    room: '1234',
    userId: 'alice',
    sdkAppId: 1400000001,
    userSig: 'x',
    kind: 'main',
  })
  const aux = parsePublishName('push?sdkappid=1&usersig=s', 'room_A?userid=bob&streamtype=aux')
  assert.ok(!('error' in aux) && aux.kind === 'aux' && aux.room === 'room_A' && aux.sdkAppId === 1)
  for (const [app, name] of [
    ['live', '1?sdkappid=1&userid=a&usersig=s'],
    ['push', '?sdkappid=1&userid=a&usersig=s'],
    ['push', 'a/b?sdkappid=1&userid=a&usersig=s'],
    ['push', '1?sdkappid=x&userid=a&usersig=s'],
    ['push', '1?sdkappid=1&userid=&usersig=s'],
    ['push', '1?sdkappid=1&userid=a b&usersig=s'],
    ['push', '1?sdkappid=1&userid=a'],
    ['push', '1?sdkappid=1&userid=a&usersig=s&streamtype=sub'],
  ]) {
    assert.ok('error' in parsePublishName(app as string, name as string), `${app} ${name}`)
  }
})

test('the node-media-server methods the ingest overrides are prototype methods', () => {
  assert.doesNotThrow(assertRtmpInternals)
})

interface Seen {
  publisher: Publisher
  tracks: Tracks[]
  units: AccessUnit[]
  closed: Promise<CloseReason>
  detail?: string
}
const seen: Seen[] = []
let ingest: RtmpIngest
let port: number

before(async () => {
  ingest = new RtmpIngest({
    host: '127.0.0.1',
    port: 0,
    publishTimeoutMs: 2000,
    connections: { total: 100, perAddress: 20 },
  })
  const url = await ingest.listen({
    async authorize(_identity, userSig) {
      return userSig === 'good' ? { ok: true } : { ok: false, reason: 'bad UserSig' }
    },
    publish(publisher) {
      let done: (r: CloseReason) => void = () => {}
      const entry: Seen = {
        publisher,
        tracks: [],
        units: [],
        closed: new Promise((r) => {
          done = r
        }),
      }
      publisher.onTracks = (t) => entry.tracks.push(t)
      publisher.onUnit = (u) => entry.units.push(u)
      publisher.onClose = (reason, detail) => {
        if (detail !== undefined) entry.detail = detail
        done(reason)
      }
      seen.push(entry)
    },
  })
  assert.match(url, /^rtmp:\/\/127\.0\.0\.1:\d+\/push\/\{room\}\?sdkappid=/)
  port = ingest.port
})
after(() => ingest.close())

function publisher(name: string, seconds = 1.5) {
  const child = spawn(
    ffmpeg,
    [
      ...testSourceArgs({ seconds, size: '160x120', live: true, preset: 'ultrafast' }),
      '-f',
      'flv',
      `rtmp://127.0.0.1:${port}/${name}`,
    ],
    { stdio: 'ignore' },
  )
  return once(child, 'exit').then(([code]) => code as number)
}

test('an accepted publisher delivers its tracks, key frames first, and a clean close', async () => {
  const code = await publisher('push/42?sdkappid=7&userid=alice&usersig=good')
  assert.equal(code, 0)
  const entry = seen.find((s) => s.publisher.identity.userId === 'alice') as Seen
  assert.equal(await entry.closed, 'unpublished')
  assert.deepEqual(
    { ...entry.publisher.identity, remote: '' },
    { ingest: 'rtmp', sdkAppId: 7, room: '42', userId: 'alice', kind: 'main', remote: '' },
  )
  // H.264 and AAC configuration, each announced once.
  const last = entry.tracks.at(-1) as Tracks
  assert.deepEqual(
    [last.video?.codec, last.video?.width, last.video?.height, last.audio?.codec],
    ['h264', 160, 120, 'aac'],
  )
  assert.equal(last.video?.config?.[0], 1, 'an avcC record')
  assert.deepEqual([last.audio?.sampleRate, last.audio?.channels], [44_100, 1])
  assert.equal(entry.tracks.length, 2)
  const frames = entry.units.filter((u) => u.type === 'video')
  assert.ok(frames.length >= 15, `${frames.length} video frames`)
  assert.ok(frames[0]?.key, 'a stream starts with a key frame')
  assert.ok(entry.units.some((u) => u.type === 'audio'))
  // Length-prefixed NAL units that add up exactly, in every unit: each kept
  // its own copy while the parser's buffer was reused for the next messages.
  for (const frame of frames) {
    let at = 0
    while (at < frame.data.length) at += 4 + frame.data.readUInt32BE(at)
    assert.equal(at, frame.data.length)
  }
})

test('a codec that is not recorded is refused at once, with the reason sent to the publisher', async () => {
  // Sorenson H.263 video and MP3 audio: FLV carries them, the service records neither.
  const child = spawn(
    ffmpeg,
    [
      ...['-hide_banner', '-re', '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=15', '-t', '5'],
      ...[
        '-c:v',
        'flv1',
        '-f',
        'flv',
        `rtmp://127.0.0.1:${port}/push/45?sdkappid=7&userid=dave&usersig=good`,
      ],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const [code] = await once(child, 'exit')
  assert.notEqual(code, 0)
  const entry = seen.find((s) => s.publisher.identity.userId === 'dave') as Seen
  assert.equal(await entry.closed, 'refused')
  assert.match(
    entry.detail ?? '',
    /Sorenson H\.263 is not recorded: publish H\.264 video and AAC audio/,
  )
  assert.equal(entry.units.length, 0)
  assert.match(stderr, /Sorenson H\.263 is not recorded/, 'the publisher is told why')
})

test('a connection that has not published by its deadline is closed, however it trickles', async () => {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.resume()
  await once(socket, 'connect')
  let sent = 0
  const trickle = setInterval(() => {
    if (!socket.destroyed) socket.write(Buffer.from([3]), () => sent++)
  }, 200)
  try {
    await once(socket, 'close')
  } finally {
    clearInterval(trickle)
  }
  // Closed by the 2 s deadline, not after 30 s of trickling.
  assert.ok(sent < 40, `${sent} bytes trickled before it was closed`)
})

test('connections beyond the cap of one address are refused at once; the others are served', async () => {
  const held = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const s = connect(port, '127.0.0.1')
      s.on('error', () => {})
      await once(s, 'connect')
      return s
    }),
  )
  const extra = connect(port, '127.0.0.1')
  extra.on('error', () => {})
  extra.resume()
  await once(extra, 'close')
  assert.ok(
    held.every((s) => !s.destroyed),
    'the first twenty stay open',
  )
  for (const s of held) s.destroy()
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(await publisher('push/46?sdkappid=7&userid=erin&usersig=good', 1), 0)
})

test('a wrong UserSig, an unknown app and a bad stream name are refused; play is not offered', async () => {
  const before = seen.length
  assert.notEqual(await publisher('push/42?sdkappid=7&userid=mallory&usersig=bad', 1), 0)
  assert.notEqual(await publisher('live/42?sdkappid=7&userid=alice&usersig=good', 1), 0)
  assert.notEqual(await publisher('push/4%2F2?sdkappid=7&usersig=good', 1), 0)
  const play = spawn(
    ffmpeg,
    ['-loglevel', 'error', '-i', `rtmp://127.0.0.1:${port}/push/42`, '-f', 'null', '-'],
    {
      stdio: 'ignore',
    },
  )
  assert.notEqual((await once(play, 'exit'))[0], 0)
  assert.equal(seen.length, before, 'none reached the handler')
})

test('garbage, an oversized message and a silent client end only their own connection', async () => {
  const send = async (bytes: Buffer) => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.resume() // read what the server answers, or 'close' never comes
    await once(socket, 'connect')
    socket.write(bytes)
    await once(socket, 'close')
  }
  await send(Buffer.alloc(4000, 0xab))
  // A valid handshake, then a chunk that announces a 16 MiB message: refused at once.
  const c0c1 = Buffer.concat([Buffer.from([3]), Buffer.alloc(1536)])
  const chunk = Buffer.from([0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0])
  await send(Buffer.concat([c0c1, Buffer.alloc(1536), chunk]))
  // A connect command without a tcUrl: NMS's parser throws; caught.
  const amf = Buffer.from([
    0x02,
    0x00,
    0x07,
    ...Buffer.from('connect'),
    0x00,
    0x3f,
    0xf0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x05,
  ])
  const header = Buffer.from([0x03, 0, 0, 0, 0, 0, amf.length, 20, 0, 0, 0, 0])
  await send(Buffer.concat([c0c1, Buffer.alloc(1536), header, amf]))
  // Connected, then silent: dropped after the handshake timeout.
  const idle = connect(port, '127.0.0.1')
  idle.on('error', () => {})
  await once(idle, 'close')
  // Still serving.
  assert.equal(await publisher('push/43?sdkappid=7&userid=bob&usersig=good', 1), 0)
})

test('a second publish of the same user replaces the first, which is closed', async () => {
  const first = publisher('push/44?sdkappid=7&userid=carol&usersig=good', 4)
  await new Promise((r) => setTimeout(r, 1500))
  const second = publisher('push/44?sdkappid=7&userid=carol&usersig=good', 1)
  const carols = () => seen.filter((s) => s.publisher.identity.userId === 'carol')
  assert.notEqual(await first, 0, 'the older publisher is disconnected')
  assert.equal(await second, 0)
  assert.deepEqual(await Promise.all(carols().map((s) => s.closed)), ['replaced', 'unpublished'])
})
