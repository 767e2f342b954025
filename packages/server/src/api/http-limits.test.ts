// The API's listener against slow and greedy peers, through the real service:
// a body trickled a byte at a time is cut at the request deadline (not kept
// alive by each byte), and connections beyond the per-address cap are closed
// at accept while those within it are served.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { loadConfig } from '../config.ts'
import { type Service, startService } from '../service.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-http-limits-'))
let service: Service
let port: number

before(async () => {
  const config = loadConfig({
    ONLINE_RECORD_HTTP_PORT: '0',
    ONLINE_RECORD_RTMP_PORT: '0',
    ONLINE_RECORD_DATA_DIR: dir,
    ONLINE_RECORD_LOG_LEVEL: 'silent',
    ONLINE_RECORD_DEV_APP: 'false',
    ONLINE_RECORD_HTTP_REQUEST_TIMEOUT_S: '2',
    ONLINE_RECORD_MAX_CONNECTIONS_PER_IP: '3',
  })
  service = await startService(config, { log: () => {} })
  port = Number(new URL(service.url).port)
})
after(async () => {
  await service.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Opens a connection; resolves once connected. */
function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

/** Everything the server sends until it closes, and when it closed. */
function readAll(socket: Socket): Promise<{ text: string; closedAt: number }> {
  return new Promise((resolve) => {
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => {
      text += c
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve({ text, closedAt: Date.now() }))
  })
}

test('a body trickled a byte at a time ends at the deadline with an envelope', async () => {
  const socket = await open()
  const answer = readAll(socket)
  const started = Date.now()
  socket.write(
    'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nX-TC-Action: DescribeOnlineRecord\r\n\r\n',
  )
  // A byte every 200 ms: an idle timer would never fire.
  const trickle = setInterval(() => {
    if (!socket.destroyed) socket.write('{')
  }, 200)
  try {
    const { text, closedAt } = await answer
    // The 2 s deadline, checked every second: cut within about 3.5 s.
    assert.ok(closedAt - started < 5000, `cut after ${closedAt - started} ms`)
    assert.ok(closedAt - started >= 1900, `cut after ${closedAt - started} ms`)
    assert.match(text, /^HTTP\/1\.1 200 OK/)
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as {
      Response: { Error: { Code: string; Message: string } }
    }
    assert.equal(body.Response.Error.Code, 'InvalidRequest')
    assert.match(body.Response.Error.Message, /did not arrive whole within 2000 ms/)
  } finally {
    clearInterval(trickle)
    socket.destroy()
  }
})

test('connections beyond the per-address cap are closed at accept; those within it are served', async () => {
  const held = await Promise.all([open(), open(), open()])
  try {
    const extra = await open()
    const { text } = await readAll(extra)
    assert.equal(text, '', 'closed without an answer')
    // One of those within the cap still gets its answer.
    const [first] = held
    const answer = readAll(first)
    first.end('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    assert.match((await answer).text, /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok\n$/)
  } finally {
    for (const s of held) s.destroy()
  }
  // Freed: a new connection is served again.
  await new Promise((r) => setTimeout(r, 100))
  const again = await open()
  const answer = readAll(again)
  again.end('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  assert.match((await answer).text, /\r\n\r\nok\n$/)
})
