// Each adapter inside a real server of its framework, receiving real signed
// requests over HTTP.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { serve } from '@hono/node-server'
import { generateWebhookSecret } from '@online-record/protocol'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { createReceiver, type Receiver } from '../receiver.ts'
import { sampleEvent, signPayload } from '../testing.ts'
import { fastifyReceiver } from './fastify.ts'
import { honoHandler } from './hono.ts'
import { createNodeMiddleware } from './node.ts'
import { createWebHandler } from './web.ts'

const NOW = 1_800_000_000_000
const now = () => NOW
const KEY = 'cb-key-0123'
const SECRET = generateWebhookSecret()
const PATH = '/tiw/callback'

interface Running {
  url: string
  close(): Promise<void>
}
/** parseJsonFirst: the app parses JSON before the receiver sees the request (the classic mistake). */
type Start = (receiver: Receiver, parseJsonFirst: boolean) => Promise<Running>

const listening = async (server: ReturnType<typeof createServer>): Promise<Running> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

const frameworks: Record<string, { start: Start; canParseFirst: boolean }> = {
  'node http': {
    canParseFirst: true,
    start: async (receiver, parseJsonFirst) => {
      const middleware = createNodeMiddleware(receiver, { path: PATH })
      return listening(
        createServer(async (req, res) => {
          if (parseJsonFirst) {
            const chunks: Buffer[] = []
            for await (const c of req) chunks.push(c as Buffer)
            ;(req as typeof req & { body: unknown }).body = JSON.parse(
              Buffer.concat(chunks).toString(),
            )
          }
          await middleware(req, res)
        }),
      )
    },
  },
  express: {
    canParseFirst: true,
    start: async (receiver, parseJsonFirst) => {
      const app = express()
      if (parseJsonFirst) app.use(express.json())
      app.use(createNodeMiddleware(receiver, { path: PATH }))
      app.use((_req, res) => res.status(404).send('not here'))
      return listening(createServer(app))
    },
  },
  fastify: {
    // The plugin parses its own route's body as bytes: the mistake cannot happen.
    canParseFirst: false,
    start: async (receiver) => {
      const app = Fastify()
      app.post('/other', async (request) => request.body) // the app's own JSON route still parses JSON
      await app.register(fastifyReceiver(receiver), { prefix: PATH })
      const address = await app.listen({ port: 0, host: '127.0.0.1' })
      return { url: `${address}${PATH}`, close: () => app.close() }
    },
  },
  hono: {
    canParseFirst: true,
    start: async (receiver, parseJsonFirst) => {
      const app = new Hono()
      const handler = honoHandler(receiver)
      app.post(PATH, async (c) => {
        if (parseJsonFirst) await c.req.json()
        return handler(c)
      })
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
      await new Promise((resolve) => server.once('listening', resolve))
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`,
        close: () => new Promise((resolve) => server.close(() => resolve())),
      }
    },
  },
  'web Request/Response': {
    canParseFirst: true,
    start: async (receiver, parseJsonFirst) => {
      const handler = createWebHandler(receiver)
      const server = serve({
        fetch: async (request: Request) => {
          if (parseJsonFirst)
            await request
              .clone()
              .json()
              .then(() => request.json())
          return handler(request)
        },
        port: 0,
        hostname: '127.0.0.1',
      })
      await new Promise((resolve) => server.once('listening', resolve))
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`,
        close: () => new Promise((resolve) => server.close(() => resolve())),
      }
    },
  },
}

const post = async (url: string, body: string, headers: Record<string, string>) => {
  const response = await fetch(url, { method: 'POST', body, headers })
  return {
    status: response.status,
    json: (await response.json()) as { error_code: number; error?: string; message?: string },
  }
}
const signed = (options: Parameters<typeof signPayload>[1] = {}) =>
  signPayload(sampleEvent('OnlineRecordFinished'), {
    callbackKey: KEY,
    webhookSecret: SECRET,
    now,
    ...options,
  })

for (const [name, { start, canParseFirst }] of Object.entries(frameworks)) {
  describe(`${name} adapter`, async () => {
    const seen: string[] = []
    const receiver = createReceiver({ callbackKeys: KEY, webhookSecrets: SECRET, now })
    receiver.on('OnlineRecordFinished', (event, { verifiedBy }) => {
      seen.push(`${event.EventData.TaskId}/${event.EventData.VideoInfos.length}/${verifiedBy}`)
      if (event.EventData.TaskId === 'boom')
        throw Object.assign(new Error('storage down'), { status: 503 })
    })
    const server = await start(receiver, false)
    after(() => server.close())

    test('a valid callback runs the handler and gets 200 {"error_code":0}', async () => {
      const { body, headers } = signed()
      assert.deepEqual(await post(server.url, body, headers), {
        status: 200,
        json: { error_code: 0 },
      })
      const { 'webhook-signature': _, ...signOnly } = headers
      assert.equal((await post(server.url, body, signOnly)).status, 200)
      assert.deepEqual(seen.splice(0), [
        'ghucnligqtgtvk2624mb/4/webhook-signature',
        'ghucnligqtgtvk2624mb/4/sign',
      ])
    })

    test('tampered Sign → 401 BAD_SIGNATURE', async () => {
      const { body } = signed({ webhookSecret: undefined })
      const tampered = body.replace(/"Sign":"[0-9a-f]{32}"/, `"Sign":"${'f'.repeat(32)}"`)
      const result = await post(server.url, tampered, { 'content-type': 'application/json' })
      assert.deepEqual([result.status, result.json.error], [401, 'BAD_SIGNATURE'])
    })

    test('expired ExpireTime → 401 EXPIRED', async () => {
      const { body, headers } = signed({ webhookSecret: undefined, now: () => NOW - 3_600_000 })
      const result = await post(server.url, body, headers)
      assert.deepEqual([result.status, result.json.error], [401, 'EXPIRED'])
    })

    test('tampered body under Standard Webhooks headers → 401 BAD_SIGNATURE', async () => {
      const { body, headers } = signed()
      const result = await post(
        server.url,
        body.replace('"RoomId":880528', '"RoomId":880529'),
        headers,
      )
      assert.deepEqual([result.status, result.json.error], [401, 'BAD_SIGNATURE'])
    })

    test('wrong secret → 401 BAD_SIGNATURE', async () => {
      const { body, headers } = signed({ webhookSecret: generateWebhookSecret() })
      const result = await post(server.url, body, headers)
      assert.deepEqual([result.status, result.json.error], [401, 'BAD_SIGNATURE'])
    })

    test('bad payloads → 400', async () => {
      const unknown = signPayload(
        { ...sampleEvent('OnlineRecordStarted'), EventType: 'OnlineRecordPaused' } as never,
        { callbackKey: KEY, now },
      )
      const result = await post(server.url, unknown.body, unknown.headers)
      assert.deepEqual([result.status, result.json.error], [400, 'UNKNOWN_EVENT'])
      const broken = signPayload(
        { ...sampleEvent('OnlineRecordStarted'), EventData: { TaskId: 't' } } as never,
        { callbackKey: KEY, webhookSecret: SECRET, now },
      )
      const result2 = await post(server.url, broken.body, broken.headers)
      assert.deepEqual([result2.status, result2.json.error], [400, 'INVALID_PAYLOAD'])
      assert.match(result2.json.message ?? '', /EventData\.RoomId/)
    })

    test("a failing handler's status is answered, so the sender retries", async () => {
      const { body, headers } = signPayload(
        sampleEvent('OnlineRecordFinished', { TaskId: 'boom' }),
        { callbackKey: KEY, now },
      )
      const result = await post(server.url, body, headers)
      assert.deepEqual([result.status, result.json.error], [503, 'HANDLER_FAILED'])
      assert.match(result.json.message ?? '', /storage down/)
      seen.length = 0
    })

    test('GET → 405', async () => {
      const response = await fetch(server.url)
      assert.ok(response.status === 405 || response.status === 404, String(response.status))
    })

    if (canParseFirst) {
      test('a body parsed before the receiver → 500 RAW_BODY_REQUIRED with the fix in the message', async () => {
        const parsedServer = await start(receiver, true)
        try {
          const { body, headers } = signed()
          const result = await post(parsedServer.url, body, headers)
          assert.deepEqual([result.status, result.json.error], [500, 'RAW_BODY_REQUIRED'])
          assert.match(result.json.message ?? '', /raw/)
        } finally {
          await parsedServer.close()
        }
      })
    }
  })
}
