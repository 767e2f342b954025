// The ingest on a real socket with real ffmpeg publishers; the handler here
// records what it is given instead of recording media.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, before, test } from 'node:test'
import { resolveMediaTools } from './ffmpeg-tools.ts'
import {
  assertRtmpInternals,
  type CloseReason,
  type MediaPacket,
  type Publisher,
  parsePublishName,
  RtmpIngest,
} from './rtmp-ingest.ts'
import { testSourceArgs } from './test-media.ts'

const { ffmpeg } = resolveMediaTools()

test('publish names: TRTC convention, sub-stream parameter, refusals', () => {
  assert.deepEqual(parsePublishName('push', '1234?sdkappid=1400000001&userid=alice&usersig=x'), {
    app: 'push',
    room: '1234',
    userId: 'alice',
    sdkAppId: 1400000001,
    userSig: 'x',
    aux: false,
  })
  const aux = parsePublishName('push?sdkappid=1&usersig=s', 'room_A?userid=bob&streamtype=aux')
  assert.ok(!('error' in aux) && aux.aux && aux.room === 'room_A' && aux.sdkAppId === 1)
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
  packets: MediaPacket[]
  closed: Promise<CloseReason>
}
const seen: Seen[] = []
let ingest: RtmpIngest
let port: number

before(async () => {
  ingest = new RtmpIngest(
    {
      async authorize(request) {
        return request.userSig === 'good' ? { ok: true } : { ok: false, reason: 'bad UserSig' }
      },
      publish(publisher) {
        let done: (r: CloseReason) => void = () => {}
        const entry: Seen = {
          publisher,
          packets: [],
          closed: new Promise((r) => {
            done = r
          }),
        }
        publisher.onPacket = (p) => entry.packets.push(p)
        publisher.onClose = done
        seen.push(entry)
      },
    },
    { host: '127.0.0.1', port: 0, handshakeTimeoutMs: 2000 },
  )
  port = await ingest.listen()
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

test('an accepted publisher delivers codec headers, key frames and a clean close', async () => {
  const code = await publisher('push/42?sdkappid=7&userid=alice&usersig=good')
  assert.equal(code, 0)
  const entry = seen.find((s) => s.publisher.request.userId === 'alice') as Seen
  assert.equal(await entry.closed, 'unpublished')
  assert.equal(entry.publisher.request.room, '42')
  const headers = entry.packets.filter((p) => p.header)
  assert.deepEqual(headers.map((p) => p.type).sort(), [8, 9], 'AVC and AAC configuration')
  const frames = entry.packets.filter((p) => p.type === 9 && !p.header)
  assert.ok(frames.length >= 15, `${frames.length} video frames`)
  assert.ok(frames[0]?.key, 'a stream starts with a key frame')
  // Each tag is a complete FLV tag with its own copy of the payload.
  const tag = frames[1]?.tag as Buffer
  assert.equal(tag[0], 9)
  assert.equal(tag.readUInt32BE(tag.length - 4), tag.length - 4)
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
  const carols = () => seen.filter((s) => s.publisher.request.userId === 'carol')
  assert.notEqual(await first, 0, 'the older publisher is disconnected')
  assert.equal(await second, 0)
  assert.deepEqual(await Promise.all(carols().map((s) => s.closed)), ['replaced', 'unpublished'])
})
