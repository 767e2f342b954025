// A callback endpoint for bench/receiver-http.bench.ts, in its own process:
// `bare` answers 200 after reading the body; `receiver` runs the Node adapter.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createNodeMiddleware, createReceiver } from '@online-record/receiver'

const [mode, key, secret] = process.argv.slice(2)
let handled = 0
const receiver = createReceiver({ callbackKeys: key as string, webhookSecrets: secret as string })
receiver.on('OnlineRecordFinished', () => {
  handled++
})
const middleware = createNodeMiddleware(receiver)
const server =
  mode === 'bare'
    ? createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          handled++
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('{"error_code":0}')
        })
      })
    : createServer((req, res) => void middleware(req, res))
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  process.stdout.write(`handled ${handled}\n`)
  process.exit(0)
})
