// Helpers of the WHIP browser suites: a minimal WHIP client page (not the
// service's own class page) served from an origin of its own, publishing from
// it, what the service reports of its publishers, offers that never connect
// and the UDP ports bound on this machine.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { genUserSig } from '../src/apps/usersig.ts'

export { abandonedOffer } from '../src/media/ingest/whip/test-peer.ts'

import { TEST_APP } from './server-process.ts'

/** The env of every server of these suites: no CPU admission (the test machine is busy by design). */
export const WHIP_ENV = { ONLINE_RECORD_WHIP_MAX_CPU: '1' }

export const sigOf = (userId: string, key = TEST_APP.userSigKey) =>
  genUserSig(TEST_APP.sdkAppId, key, userId, 3600)

export type Outcome = {
  status: number
  location?: string
  reason?: string
  /** Date.now() in the page just before the POST. */
  postedAt?: number
}

/** Serves the client page for the suite; resolves with its origin. */
export async function servePage(): Promise<string> {
  const html = readFileSync(new URL('./pages/whip-client.html', import.meta.url))
  const pages = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  })
  await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve))
  after(() => pages.close())
  return `http://127.0.0.1:${(pages.address() as AddressInfo).port}`
}

export async function clientPage(browser: Browser, origin: string): Promise<Page> {
  const page = await browser.newPage()
  await page.goto(`${origin}/`)
  return page
}

/** Publishes from the client page: camera and microphone (or a canvas), through WHIP. */
export function publishFrom(
  page: Page,
  args: {
    url: string
    token: string
    codec?: string
    canvas?: boolean
    width?: number
    height?: number
    /** degradationPreference 'maintain-resolution' on the camera's sender. */
    maintain?: boolean
  },
): Promise<Outcome> {
  return page.evaluate(
    (a) => (globalThis as unknown as { publish(a: unknown): Promise<Outcome> }).publish(a),
    args,
  )
}

export function unpublishFrom(page: Page, location: string): Promise<number> {
  return page.evaluate(
    (l) => (globalThis as unknown as { unpublish(l: string): Promise<number> }).unpublish(l),
    location,
  )
}

export function whipUrl(base: string, room: number, userId: string, aux = false): string {
  return `${base}/whip/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=${userId}${aux ? '&streamtype=aux' : ''}`
}

/** Publishers of an ingest a process holds now, from its /metrics. */
export async function publishersOf(url: string, ingest: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = new RegExp(`^online_record_publishers\\{ingest="${ingest}"\\} (\\d+)`, 'm').exec(text)
  return Number(m?.[1] ?? Number.NaN)
}

/** UDP sockets bound on this machine to a port of `range` (IPv4 and IPv6), from /proc/net. */
export function udpPortsBound([lo, hi]: readonly [number, number]): number {
  let n = 0
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1]
      const port = Number.parseInt(local?.split(':')[1] ?? '', 16)
      if (port >= lo && port <= hi) n++
    }
  }
  return n
}
