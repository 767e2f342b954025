// A real HTTP callback receiver for tests: records every request and answers
// as the test tells it to.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { eventSchemas, sampleEvents, sampleFailedFinished } from '@online-record/protocol'

export interface ReceivedCallback {
  id: string
  taskId: string
  seq: number
  attempt: number
  body: string
  json: { EventType: string; EventData: Record<string, unknown> } & Record<string, unknown>
  headers: IncomingHttpHeaders
  /** Unix ms (real clock) when the request arrived. */
  at: number
}

export interface Answer {
  status?: number
  headers?: Record<string, string>
  body?: string
  /** Wait this long before answering. */
  delayMs?: number
  /** The body sent a byte at a time, one every `everyMs`, after the head. */
  trickle?: { body: string; everyMs: number }
  /** A body of this many bytes instead of `body`. */
  bodyBytes?: number
  /** Not HTTP: these bytes on the socket, then the connection closed. */
  garbage?: Buffer
}

export class TestReceiver {
  readonly received: ReceivedCallback[] = []
  /** Decides each answer; `n` counts earlier requests with the same webhook-id. Default: 200. */
  answer: (callback: ReceivedCallback, n: number) => Answer = () => ({})
  /** Most requests that were in progress at once, overall and for one webhook-id. */
  maxConcurrent = 0
  maxConcurrentPerId = 0
  readonly #server: Server
  readonly #inProgress = new Map<string, number>()
  #total = 0
  #port = 0
  #waiters: (() => void)[] = []

  private constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        let json: ReceivedCallback['json']
        try {
          json = JSON.parse(body)
        } catch {
          res.writeHead(400).end()
          return
        }
        const id = String(req.headers['webhook-id'] ?? '')
        const callback: ReceivedCallback = {
          id,
          taskId: String(json.EventData?.TaskId ?? ''),
          seq: Number(req.headers['online-record-sequence']),
          attempt: Number(req.headers['online-record-attempt']),
          body,
          json,
          headers: req.headers,
          at: Date.now(),
        }
        const earlier = this.received.filter((r) => r.id === id).length
        this.received.push(callback)
        this.#total++
        const mine = (this.#inProgress.get(id) ?? 0) + 1
        this.#inProgress.set(id, mine)
        this.maxConcurrent = Math.max(this.maxConcurrent, this.#total)
        this.maxConcurrentPerId = Math.max(this.maxConcurrentPerId, mine)
        for (const w of this.#waiters.splice(0)) w()
        // In progress until answered or until the sender gives up and closes.
        res.once('close', () => {
          this.#total--
          this.#inProgress.set(id, (this.#inProgress.get(id) ?? 1) - 1)
        })
        const a = this.answer(callback, earlier)
        const finish = () => {
          if (res.destroyed) return
          if (a.garbage) {
            res.socket?.end(a.garbage)
            return
          }
          res.writeHead(a.status ?? 200, { 'content-type': 'application/json', ...a.headers })
          if (a.trickle) {
            const bytes = Buffer.from(a.trickle.body)
            let at = 0
            const next = setInterval(() => {
              if (res.destroyed || at >= bytes.length) {
                clearInterval(next)
                if (!res.destroyed) res.end()
                return
              }
              res.write(bytes.subarray(at, ++at))
            }, a.trickle.everyMs)
            next.unref()
            return
          }
          res.end(
            a.bodyBytes === undefined
              ? (a.body ?? '{"error_code":0}')
              : Buffer.alloc(a.bodyBytes, 'a'),
          )
        }
        if (a.delayMs) setTimeout(finish, a.delayMs).unref()
        else finish()
      })
    })
    this.#server.keepAliveTimeout = 60_000
  }

  static async start(port = 0): Promise<TestReceiver> {
    const r = new TestReceiver()
    await r.listen(port)
    return r
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/callback`
  }

  /** Listens again after `stop()`, on the same port. */
  async listen(port = this.#port): Promise<void> {
    this.#server.listen(port, '127.0.0.1')
    await once(this.#server, 'listening')
    this.#port = (this.#server.address() as AddressInfo).port
  }

  /** Stops accepting and drops open connections: the receiver is down. */
  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  close(): Promise<void> {
    return this.stop().catch(() => {})
  }

  /** Distinct webhook-ids received. */
  ids(): Set<string> {
    return new Set(this.received.map((r) => r.id))
  }

  /** Resolves once `predicate` holds, checked at each request; rejects after `ms`. */
  async waitFor(predicate: () => boolean, ms = 10_000, what = 'callbacks'): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new Error(`timed out waiting for ${what}; ${this.received.length} received`)
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200))
        this.#waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }
}

/**
 * Asserts a received callback has exactly the seed's fields for its type (the
 * failure example when `failed`), passes the strict schema, and carries a
 * Sign recomputed here with md5 independently of the service's code.
 * Returns its ExpireTime.
 */
export function assertSeedCallback(
  r: ReceivedCallback,
  callbackKey: string,
  failed = false,
): number {
  const type = r.json.EventType as keyof typeof sampleEvents
  const sample = failed ? sampleFailedFinished : sampleEvents[type]
  assert.ok(sample, `unknown EventType ${type}`)
  assert.deepEqual(Object.keys(r.json).sort(), Object.keys(sample).sort(), type)
  assert.deepEqual(Object.keys(r.json.EventData).sort(), Object.keys(sample.EventData).sort(), type)
  assert.ok(eventSchemas.Callback.safeParse(r.json).success, type)
  const expire = r.json.ExpireTime as number
  assert.equal(r.json.Sign, createHash('md5').update(`${callbackKey}${expire}`).digest('hex'))
  return expire
}
