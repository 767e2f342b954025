// Helpers of the whiteboard suites: stock y-websocket providers in Node (not
// this project's code) as board clients, and model v1 shapes drawn with Yjs.
import { WebSocket } from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { genUserSig } from '../src/apps/usersig.ts'
import { sleep } from './media-helpers.ts'
import { TEST_APP } from './server-process.ts'

export interface Client {
  doc: Y.Doc
  provider: WebsocketProvider
  closes: { code: number; reason: string }[]
  destroy(): void
}

/** A stock y-websocket client on the board `groupId` as `userId`. */
export function connect(
  url: string,
  groupId: string,
  userId: string,
  o: { sdkAppId?: number; key?: string; userSig?: string } = {},
): Client {
  const doc = new Y.Doc()
  const sdkAppId = o.sdkAppId ?? TEST_APP.sdkAppId
  const usersig = o.userSig ?? genUserSig(sdkAppId, o.key ?? TEST_APP.userSigKey, userId, 3600)
  const provider = new WebsocketProvider(`${url.replace('http', 'ws')}/whiteboard`, groupId, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    params: { sdkappid: String(sdkAppId), userid: userId, usersig },
    disableBc: true,
    maxBackoffTime: 60_000,
  })
  const closes: Client['closes'] = []
  provider.on('connection-close', (event: CloseEvent | null) => {
    if (event) closes.push({ code: event.code, reason: event.reason })
  })
  return {
    doc,
    provider,
    closes,
    destroy: () => {
      provider.destroy()
      doc.destroy()
    },
  }
}

export async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

export const synced = (c: Client) => until('sync', () => c.provider.synced)

/** Model v1 shapes. */
export function shape(kind: string, fields: Record<string, unknown>): Y.Map<unknown> {
  const el = new Y.Map<unknown>()
  el.set('kind', kind)
  for (const [k, v] of Object.entries(fields)) el.set(k, v)
  return el
}
export function addPage(doc: Y.Doc, id: string, color = '#FFFFFF') {
  const page = new Y.Map<unknown>()
  page.set('bg', { color })
  page.set('els', new Y.Map())
  page.set('order', new Y.Array())
  doc.getMap('pages').set(id, page)
}
export function draw(doc: Y.Doc, pageId: string, id: string, el: Y.Map<unknown>) {
  doc.transact(() => {
    const page = doc.getMap('pages').get(pageId) as Y.Map<unknown>
    ;(page.get('els') as Y.Map<unknown>).set(id, el)
    ;(page.get('order') as Y.Array<string>).push([id])
  })
}
export const els = (doc: Y.Doc, pageId: string) =>
  (doc.getMap('pages').get(pageId) as Y.Map<unknown> | undefined)?.get('els') as
    | Y.Map<unknown>
    | undefined
