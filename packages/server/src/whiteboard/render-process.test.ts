// The renderer in its own process, as the whiteboard stage runs it: held to
// its CPU budget (counted from /proc, its ffmpeg included) and killed past it,
// and telling its parent what the operator should know.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import * as Y from 'yjs'
import { resolveMediaTools, runTool } from '../media/ffmpeg/ffmpeg-tools.ts'
import { RenderLimitError } from './render-cost.ts'
import { renderInProcess } from './render-process.ts'

const tools = resolveMediaTools()
const dir = mkdtempSync(join(tmpdir(), 'online-record-render-process-'))
const pictures = new Map<string, Buffer>()
const server = createServer((req, res) => {
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

/** A page with an image element for each of `urls`, drawn at 1 s of a 3 s recording. */
function withPictures(urls: string[]) {
  const doc = new Y.Doc()
  doc.transact(() => {
    doc.getMap('meta').set('page', 'p1')
    const page = new Y.Map<unknown>()
    page.set('bg', { color: '#FFFFFF' })
    const els = new Y.Map<unknown>()
    for (const [i, src] of urls.entries()) {
      const el = new Y.Map<unknown>()
      for (const [k, v] of Object.entries({ kind: 'image', src, x: 0.1, y: 0.1, w: 0.5, h: 0.5 }))
        el.set(k, v)
      els.set(`i${i}`, el)
    }
    page.set('els', els)
    doc.getMap('pages').set('p1', page)
  })
  return [{ atMs: 1000, seq: 1, update: Y.encodeStateAsUpdate(doc) }]
}

/** Processes whose command line names `text`. */
const running = (text: string) =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(text)
      } catch {
        return false
      }
    })

test('a render over its CPU budget (pictures that take seconds to decode) is killed with its ffmpeg: a RenderLimitError', async () => {
  // 20 pictures of 6000x6000: ~30 KB each, ~150 ms each to decode; the estimate does not see them.
  const png = readFileSync(join(dir, await bigPicture()))
  const urls = Array.from({ length: 20 }, (_, i) => `${base}/slow${i}.png`)
  for (const url of urls) pictures.set(new URL(url).pathname, png)
  const out = join(dir, 'over-budget.mp4')
  await assert.rejects(
    renderInProcess(
      {
        timeline: { startMs: 0, stopMs: 3000, pauses: [] },
        before: [],
        during: withPictures(urls),
        width: 320,
        height: 240,
        ffmpeg: tools.ffmpeg,
        out,
        urlPolicy: { blockPrivate: false },
        budget: { baseCpuMs: 1200, cpuMsPerMediaS: 0 },
      },
      join(dir, 'over-budget.job'),
    ),
    (error: Error) => {
      assert.ok(error instanceof RenderLimitError, error.stack)
      assert.match(error.message, /used more than its 1 CPU-s for 3 s of media and was stopped/)
      return true
    },
  )
  assert.deepEqual(running(out), [], 'its ffmpeg is gone')
  assert.deepEqual(running(join(dir, 'over-budget.job')), [], 'the renderer is gone')
})

test('pictures the URL policy refuses reach the parent, to be logged; the render goes on', async () => {
  const warnings: string[] = []
  const made = await renderInProcess(
    {
      timeline: { startMs: 0, stopMs: 3000, pauses: [] },
      before: [],
      during: withPictures([`${base}/private.png`]),
      width: 320,
      height: 240,
      ffmpeg: tools.ffmpeg,
      out: join(dir, 'refused.mp4'),
      urlPolicy: { blockPrivate: true },
      onWarning: (m) => warnings.push(m),
    },
    join(dir, 'refused.job'),
  )
  assert.ok(made)
  assert.equal(existsSync(join(dir, 'refused.mp4')), true)
  assert.equal(warnings.length, 1, warnings.join('\n'))
  assert.match(
    warnings[0] as string,
    new RegExp(`^board picture ${base}/private.png not drawn: .*loopback or private address`),
  )
})

/** A 6000x6000 PNG (made once by ffmpeg), its name in `dir`. */
async function bigPicture(): Promise<string> {
  const name = 'big.png'
  if (!existsSync(join(dir, name)))
    await runTool(tools.ffmpeg, [
      ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'color=c=red:s=6000x6000'],
      ...['-frames:v', '1', '-pix_fmt', 'pal8', '-y', join(dir, name)],
    ])
  return name
}
