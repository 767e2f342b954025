// A picture's size read from its header, as a decoder will make it: pictures
// made by ffmpeg in every format the renderer draws, and headers made to
// mislead (a GIF whose first frame outgrows its screen, a JPEG whose frame
// header is not baseline, a height left to a DNL marker).
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { resolveMediaTools, runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import { keptSize, pictureSize } from './pictures.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-pictures-'))
after(() => rmSync(dir, { recursive: true, force: true }))

async function made(name: string, options: string[], frames = 1): Promise<Buffer> {
  const file = join(dir, name)
  await runTool(tools.ffmpeg, [
    ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=321x123:rate=2'],
    ...['-frames:v', String(frames), ...options, '-y', file],
  ])
  return readFileSync(file)
}

test('sizes from the headers of PNG, JPEG, GIF and WebP (VP8, VP8L, VP8X) pictures', async () => {
  const pictures: [string, Buffer][] = [
    ['png', await made('a.png', [])],
    ['jpeg', await made('a.jpg', ['-pix_fmt', 'yuvj420p'])],
    ['gif', await made('a.gif', [])],
    ['webp', await made('lossy.webp', ['-c:v', 'libwebp'])],
    ['webp', await made('lossless.webp', ['-c:v', 'libwebp', '-lossless', '1'])],
    ['webp', await made('anim.webp', ['-c:v', 'libwebp_anim', '-loop', '0'], 2)],
  ]
  for (const [type, data] of pictures)
    assert.deepEqual(pictureSize(data), { type, width: 321, height: 123 }, type)
  // The three WebP layouts, each read from its own chunk.
  assert.deepEqual(
    pictures.slice(3).map(([, data]) => data.toString('latin1', 12, 16)),
    ['VP8 ', 'VP8L', 'VP8X'],
  )
})

test('misleading headers: any JPEG frame header counts, a GIF grows to its first frame, an unknown size is refused', async () => {
  const jpeg = await made('b.jpg', ['-pix_fmt', 'yuvj420p'])
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]))
  assert.ok(sof > 0)
  // Progressive, lossless, arithmetic-coded: decoders take them all.
  for (const marker of [0xc2, 0xc3, 0xc9, 0xcf]) {
    const other = Buffer.from(jpeg)
    other[sof + 1] = marker
    assert.deepEqual(pictureSize(other), { type: 'jpeg', width: 321, height: 123 })
  }
  // A height given later by a DNL marker: not known before decoding.
  const dnl = Buffer.from(jpeg)
  dnl.writeUInt16BE(0, sof + 5)
  assert.equal(pictureSize(dnl), undefined)

  // A 1x1 screen whose first frame (after a graphic control extension) is 5000x4000 at 10,20.
  const gif = Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    Buffer.from([1, 0, 1, 0, 0, 0, 0]),
    Buffer.from([0x21, 0xf9, 4, 0, 0, 0, 0, 0]),
    Buffer.from([0x2c, 10, 0, 20, 0, 0x88, 0x13, 0xa0, 0x0f, 0]),
  ])
  assert.deepEqual(pictureSize(gif), { type: 'gif', width: 5010, height: 4020 })

  const png = await made('b.png', [])
  assert.equal(pictureSize(png.subarray(0, 20)), undefined, 'cut before its size')
  assert.equal(pictureSize(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), undefined)
})

test('a picture is kept at its size, or fitted into the video when larger', () => {
  const video = { width: 1280, height: 960 }
  assert.deepEqual(keptSize(64, 48, video), { width: 64, height: 48 })
  assert.deepEqual(keptSize(16000, 16000, video), { width: 960, height: 960 })
  assert.deepEqual(keptSize(8000, 1000, video), { width: 1280, height: 160 })
})
