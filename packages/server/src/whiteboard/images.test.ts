// Board images in the whiteboard video: an `image` element and a page's
// background picture, fetched once under the tenant URL policy (a private
// address is refused when blocking is on; something not a raster picture is
// never drawn); picture bombs refused by their header while the renderer's
// memory is watched from outside.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { crc32, deflateSync } from 'node:zlib'
import * as Y from 'yjs'
import { resolveMediaTools, runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import { assertColours } from '../media/test-media.ts'
import { renderBoardVideo } from './render.ts'
import { renderInProcess } from './render-process.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-board-images-'))
const png = async (color: string) => {
  const file = join(dir, `${color}.png`)
  await runTool(tools.ffmpeg, [
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    `color=c=${color}:s=64x48`,
    '-frames:v',
    '1',
    '-y',
    file,
  ])
  const { readFile } = await import('node:fs/promises')
  return readFile(file)
}
const pictures = new Map<string, Buffer>()
let fetched = 0
const server = createServer((req, res) => {
  fetched++
  const body = pictures.get(req.url ?? '')
  res.statusCode = body ? 200 : 404
  res.end(body ?? 'nope')
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
after(() => {
  server.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A board with a background picture and an image element, drawn 1 s into a 3 s recording. */
function history(): { atMs: number; seq: number; update: Uint8Array }[] {
  const doc = new Y.Doc()
  doc.transact(() => {
    doc.getMap('meta').set('page', 'p1')
    const page = new Y.Map<unknown>()
    page.set('bg', { color: '#FFFFFF', image: `${base}/blue.png` })
    const els = new Y.Map<unknown>()
    const add = (id: string, src: string, x: number) => {
      const el = new Y.Map<unknown>()
      for (const [k, v] of Object.entries({ kind: 'image', src, x, y: 0.5, w: 0.25, h: 0.25 }))
        el.set(k, v)
      els.set(id, el)
    }
    add('picture', `${base}/red.png`, 0.5)
    add('svg', `${base}/drawing.svg`, 0.1)
    page.set('els', els)
    const order = new Y.Array<string>()
    order.push(['picture', 'svg'])
    page.set('order', order)
    doc.getMap('pages').set('p1', page)
  })
  return [{ atMs: 1000, seq: 1, update: Y.encodeStateAsUpdate(doc) }]
}

async function render(blockPrivate: boolean): Promise<string> {
  const out = join(dir, `board-${blockPrivate}.mp4`)
  const made = await renderBoardVideo({
    timeline: { startMs: 0, stopMs: 3000, pauses: [] },
    before: [],
    during: history(),
    width: 320,
    height: 240,
    ffmpeg: tools.ffmpeg,
    out,
    urlPolicy: { blockPrivate },
  })
  assert.ok(made)
  return out
}

test('an image element and a background picture are drawn where the model puts them; an SVG is not', async () => {
  pictures.set('/red.png', await png('red'))
  pictures.set('/blue.png', await png('blue'))
  pictures.set(
    '/drawing.svg',
    Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>'),
  )
  fetched = 0
  const file = await render(false)
  assert.equal(fetched, 3, 'each picture fetched once')
  await assertColours(tools, file, 1.5, [
    [200, 150, '#FF0000'], // the image element: x 0.5..0.75, y 0.5..0.75
    [40, 40, '#0000FF'], // the background picture
    [60, 150, '#0000FF'], // where the SVG would be: the background shows
  ])
})

test('with private addresses blocked, nothing is fetched and the page colour shows', async () => {
  fetched = 0
  const file = await render(true)
  assert.equal(fetched, 0)
  await assertColours(tools, file, 1.5, [
    [200, 150, '#FFFFFF'],
    [40, 40, '#FFFFFF'],
  ])
})

/** A `width`x`height` PNG of one colour: 1-bit palette, so ~30 KB at 16000x16000, 1 GB once decoded. */
function bigPng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const size = Buffer.alloc(4)
    size.writeUInt32BE(data.length)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(body))
    return Buffer.concat([size, body, crc])
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header[8] = 1 // bit depth
  header[9] = 3 // palette
  const row = Buffer.alloc(1 + Math.ceil(width / 8))
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('PLTE', Buffer.from([...rgb, 0, 0, 0])),
    chunk('IDAT', deflateSync(Buffer.concat(Array.from({ length: height }, () => row)))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

/** The largest peak resident memory (VmHWM, MB) of this process's children while `work` runs. */
async function peakRssOfChildren<T>(work: Promise<T>): Promise<{ value: T; peakMb: number }> {
  let peakKb = 0
  const look = () => {
    let children: string[] = []
    try {
      children = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'latin1')
        .trim()
        .split(' ')
        .filter((pid) => pid !== '')
    } catch {}
    for (const pid of children) {
      try {
        const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
        peakKb = Math.max(peakKb, Number(hwm?.[1] ?? 0))
      } catch {}
    }
  }
  const timer = setInterval(look, 10)
  try {
    return { value: await work, peakMb: Math.round(peakKb / 1024) }
  } finally {
    clearInterval(timer)
  }
}

test('picture bombs: three 16000x16000 PNGs are refused by their header, a large picture is kept at the video size; the render stays small and the operator is told', async () => {
  const bombs = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
  ] as const
  for (const [i, rgb] of bombs.entries())
    pictures.set(`/bomb${i}.png`, bigPng(16000, 16000, [...rgb]))
  // Under the pixel limit and 14 times the video: decoded once, kept downscaled.
  pictures.set('/large.png', bigPng(1200, 900, [0, 0, 255]))
  const doc = new Y.Doc()
  doc.transact(() => {
    doc.getMap('meta').set('page', 'p1')
    const page = new Y.Map<unknown>()
    page.set('bg', { color: '#FFFFFF' })
    const els = new Y.Map<unknown>()
    const add = (id: string, src: string, x: number, y: number) => {
      const el = new Y.Map<unknown>()
      for (const [k, v] of Object.entries({ kind: 'image', src, x, y, w: 0.25, h: 0.25 }))
        el.set(k, v)
      els.set(id, el)
    }
    for (const i of [0, 1, 2]) add(`bomb${i}`, `${base}/bomb${i}.png`, 0.05 + i * 0.3, 0.1)
    add('large', `${base}/large.png`, 0.5, 0.6)
    page.set('els', els)
    doc.getMap('pages').set('p1', page)
  })
  const out = join(dir, 'bombs.mp4')
  const warnings: string[] = []
  const { value: made, peakMb } = await peakRssOfChildren(
    renderInProcess(
      {
        timeline: { startMs: 0, stopMs: 3000, pauses: [] },
        before: [],
        during: [{ atMs: 1000, seq: 1, update: Y.encodeStateAsUpdate(doc) }],
        width: 320,
        height: 240,
        ffmpeg: tools.ffmpeg,
        out,
        urlPolicy: { blockPrivate: false },
        onWarning: (m) => warnings.push(m),
      },
      join(dir, 'bombs.job'),
    ),
  )
  assert.ok(made)
  console.log(`peak RSS of the render: ${peakMb} MB (its own report: ${made.peakRssMb} MB)`)
  // Decoded, each bomb would be 1 GB.
  assert.ok(peakMb < 400, `peak RSS ${peakMb} MB`)
  assert.deepEqual(
    warnings.sort(),
    [0, 1, 2].map(
      (i) =>
        `board picture ${base}/bomb${i}.png not drawn: 16000x16000 is over the 40 megapixels a picture may have`,
    ),
  )
  assert.deepEqual(made.pictures, { kept: 1, keptBytes: 320 * 240 * 4, refused: 3 })
  await assertColours(tools, out, 1.5, [
    [40, 50, '#FFFFFF'], // where the first bomb would be: the page
    [200, 170, '#0000FF'], // the large picture
  ])
})
