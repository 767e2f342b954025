// Board images in the whiteboard video: an `image` element and a page's
// background picture, fetched once under the tenant URL policy (a private
// address is refused when blocking is on; something not a raster picture is
// never drawn).
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import * as Y from 'yjs'
import { resolveMediaTools, runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import { assertColours } from '../media/test-media.ts'
import { renderBoardVideo } from './render.ts'

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
