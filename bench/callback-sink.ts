// A callback receiver for bench/delivery.bench.ts, in its own process: answers
// every POST with 200 after reading the body, and notes when each webhook-id
// first arrived (Unix ms with sub-ms precision, comparable across processes).
//   GET /wait?count=N  answers once N distinct events arrived since /reset
//   GET /arrivals      the arrival times, {id: ms}
//   GET /reset         forgets everything
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

let arrivals = new Map<string, number>()
let waiters: { count: number; res: ServerResponse }[] = []
const now = () => performance.timeOrigin + performance.now()

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    const url = new URL(req.url ?? '/', 'http://sink')
    if (url.pathname === '/reset') {
      arrivals = new Map()
      res.end('{}')
    } else if (url.pathname === '/arrivals') {
      res.end(JSON.stringify(Object.fromEntries(arrivals)))
    } else if (url.pathname === '/wait') {
      const count = Number(url.searchParams.get('count'))
      if (arrivals.size >= count) res.end('{}')
      else waiters.push({ count, res })
    } else res.writeHead(404).end()
    return
  }
  const at = now()
  req.resume()
  req.on('end', () => {
    const id = req.headers['webhook-id']
    if (typeof id === 'string' && !arrivals.has(id)) arrivals.set(id, at)
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"error_code":0}')
    if (waiters.length > 0) {
      const ready = waiters.filter((w) => arrivals.size >= w.count)
      waiters = waiters.filter((w) => arrivals.size < w.count)
      for (const w of ready) w.res.end('{}')
    }
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => process.exit(0))
