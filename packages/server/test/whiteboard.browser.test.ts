// The built-in board page in a real browser (Debian's chromium, driven by
// playwright-core): a pen stroke and a rectangle drawn with the mouse reach a
// stock y-websocket client in Node, in the document model; a page opened with
// a bad UserSig says it is not allowed. Runs where /usr/bin/chromium exists
// (CI installs it).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import type * as Y from 'yjs'
import { genUserSig } from '../src/apps/usersig.ts'
import { connect, els, synced, until } from './board-helpers.ts'
import { launchBrowser } from './browser.ts'
import { suiteServers } from './media-helpers.ts'
import { TEST_APP } from './server-process.ts'

const servers = suiteServers('online-record-board-browser-')
const browser = await launchBrowser()

test('the built-in page draws on the board; a Node client sees the strokes; a bad UserSig is told so', async () => {
  const server = await servers.start('browser')
  const group = 'class-browser'
  const sig = genUserSig(TEST_APP.sdkAppId, TEST_APP.userSigKey, 'teacher', 3600)
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(
    `${server.url}/whiteboard/${group}?sdkappid=${TEST_APP.sdkAppId}&userid=teacher&usersig=${encodeURIComponent(sig)}`,
  )
  await page.locator('#status.ok').waitFor({ timeout: 15_000 })
  assert.equal(
    await page.locator('#join').isVisible(),
    false,
    'no join form when the link has it all',
  )

  const observer = connect(server.url, group, 'observer')
  await synced(observer)
  await until('the page to set the board up', () => els(observer.doc, 'p1') !== undefined)

  const box = await page.locator('#board').boundingBox()
  assert.ok(box)
  const to = (fx: number, fy: number) => [box.x + fx * box.width, box.y + fy * box.height] as const
  // A pen stroke across the upper half.
  await page.mouse.move(...to(0.1, 0.2))
  await page.mouse.down()
  for (let i = 1; i <= 10; i++) await page.mouse.move(...to(0.1 + i * 0.05, 0.2 + (i % 2) * 0.05))
  await page.mouse.up()
  // A rectangle in red.
  await page.locator('[data-tool="rect"]').click()
  await page.locator('#color').fill('#ff0000')
  await page.mouse.move(...to(0.5, 0.5))
  await page.mouse.down()
  await page.mouse.move(...to(0.7, 0.6), { steps: 5 })
  await page.mouse.up()

  const shapes = () => [...(els(observer.doc, 'p1')?.values() ?? [])] as Y.Map<unknown>[]
  await until('the stroke and the rectangle at the Node client', () => shapes().length === 2)
  const [stroke, rect] = shapes()
  assert.equal(stroke?.get('kind'), 'path')
  const points = (stroke?.get('points') as Y.Array<number> | undefined)?.toArray() ?? []
  assert.ok(points.length >= 10, `${points.length} numbers`)
  assert.ok(
    Math.abs((points[0] as number) - 0.1) < 0.02 && Math.abs((points[1] as number) - 0.2) < 0.02,
  )
  assert.equal(rect?.get('kind'), 'rect')
  assert.equal(rect?.get('color'), '#FF0000')
  assert.ok(Math.abs((rect?.get('w') as number) - 0.2) < 0.02, `w ${rect?.get('w')}`)
  await page.screenshot({ path: join(servers.root, 'board-page.png') })
  if (process.env.ONLINE_RECORD_SCREENSHOTS) {
    await page.screenshot({ path: join(process.env.ONLINE_RECORD_SCREENSHOTS, 'board-page.png') })
  }
  assert.deepEqual(errors, [])

  // A page with a bad UserSig: a clear message, no retry loop, nothing drawn.
  const refused = await browser.newPage()
  await refused.goto(
    `${server.url}/whiteboard/${group}?sdkappid=${TEST_APP.sdkAppId}&userid=x&usersig=nope`,
  )
  await refused
    .locator('#status', { hasText: 'Not allowed: refused:' })
    .waitFor({ timeout: 15_000 })
  observer.destroy()
  await page.close()
  await refused.close()
})
