import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { fetchLimited, OutboundError } from './outbound.ts'

// 127.0.0.1 stands for the public internet and 127.0.0.2 for a private
// address the policy refuses: both are this machine's loopback.
const policy = { blockPrivate: true, isBlocked: (a: string) => a === '127.0.0.2' }

describe('outbound fetch of tenant URLs', () => {
  let pub: Server
  let priv: Server
  let base = ''
  let privateBase = ''
  const privateHits: string[] = []
  let endlessBytes = 0

  before(async () => {
    pub = createServer((req, res) => {
      switch (req.url) {
        case '/ok':
          res.writeHead(200, { 'content-type': 'image/png' }).end('png!')
          return
        case '/to-private':
          res.writeHead(302, { location: `${privateBase}/secret` }).end()
          return
        case '/loop':
          res.writeHead(302, { location: '/loop' }).end()
          return
        case '/announced':
          res.writeHead(200, { 'content-length': String(2 ** 31) })
          res.write('x')
          return
        case '/endless': {
          // Chunked, never ending: only the client's cap stops it.
          res.writeHead(200)
          const chunk = Buffer.alloc(64 * 1024, 'x')
          const pump = () => {
            while (!res.destroyed && res.write(chunk)) endlessBytes += chunk.length
            if (!res.destroyed) res.once('drain', pump)
          }
          pump()
          return
        }
        case '/trickle': {
          res.writeHead(200)
          const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write('x')), 50)
          return
        }
        default:
          res.writeHead(404).end()
      }
    })
    priv = createServer((req, res) => {
      privateHits.push(req.url ?? '')
      res.end('secret')
    })
    pub.listen(0, '127.0.0.1')
    priv.listen(0, '127.0.0.2')
    await Promise.all([once(pub, 'listening'), once(priv, 'listening')])
    base = `http://127.0.0.1:${(pub.address() as AddressInfo).port}`
    privateBase = `http://127.0.0.2:${(priv.address() as AddressInfo).port}`
  })
  after(() => {
    pub.closeAllConnections()
    priv.closeAllConnections()
    pub.close()
    priv.close()
  })

  const limits = { maxBytes: 1024 * 1024, deadlineMs: 2000 }
  const refusal = async (url: string, l = limits) => {
    try {
      await fetchLimited(url, policy, l)
    } catch (error) {
      assert.ok(error instanceof OutboundError, String(error))
      return error.message
    }
    return 'fetched'
  }

  test('a permitted URL is fetched', async () => {
    const got = await fetchLimited(`${base}/ok`, policy, limits)
    assert.equal(got.body.toString(), 'png!')
    assert.equal(got.contentType, 'image/png')
  })

  test('a private address is refused, directly and behind a redirect; nothing reaches it', async () => {
    assert.match(await refusal(`${privateBase}/secret`), /loopback or private/)
    assert.match(await refusal(`${base}/to-private`), /127\.0\.0\.2.*loopback or private/)
    assert.match(await refusal(`${base}/loop`), /too many redirects/)
    assert.match(await refusal('http://localhost/x'), /loopback or private/)
    assert.match(await refusal('file:///etc/passwd'), /http or https/)
    assert.deepEqual(privateHits, [])
  })

  test('a body over the cap is refused by its length or as it arrives, never read whole', async () => {
    assert.match(await refusal(`${base}/announced`), /more than 1048576/)
    assert.match(await refusal(`${base}/endless`), /more than 1048576 bytes/)
    // The sender was stopped near the cap (socket buffers aside), not at gigabytes.
    await new Promise((r) => setTimeout(r, 50))
    assert.ok(endlessBytes < 32 * 1024 * 1024, `${endlessBytes} bytes sent`)
  })

  test('a trickled body ends at the deadline', async () => {
    assert.match(
      await refusal(`${base}/trickle`, { maxBytes: 1024 * 1024, deadlineMs: 300 }),
      /no complete answer within 300 ms/,
    )
  })
})
