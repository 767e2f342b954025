// What an operator does on a fresh machine, against real service processes:
// the CLI beside a running service (over the admin API, never a second
// writer), the first start's printed credentials used as printed, health
// probes, and the metrics a scenario moves.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import { lockStore, StoreLockedError } from '../src/store/lock.ts'
import { startListener } from './listener.ts'
import { download, publish } from './media-helpers.ts'
import { startRequest, startServer, tiwClient } from './server-process.ts'

const bin = fileURLToPath(new URL('../bin/online-record.js', import.meta.url))
const dirs: string[] = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-operator-'))
  dirs.push(dir)
  return dir
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** The installed command, as an operator runs it. */
const cli = (env: Record<string, string>, ...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  })

interface CreatedApp {
  sdkAppId: number
  secretId: string
  secretKey: string
  userSigKey: string
}

test('apps create beside a running service: usable at once, after a restart too; one writer only', async () => {
  const dir = tempDir()
  const env = {
    ONLINE_RECORD_DATA_DIR: dir,
    ONLINE_RECORD_APPS: '',
    ONLINE_RECORD_DEV_APP: 'false',
  }
  const first = await startServer(env)
  try {
    const created = cli(env, 'apps', 'create', '--sdk-app-id', '1400000777')
    assert.equal(created.status, 0, created.stderr)
    const app = JSON.parse(created.stdout) as CreatedApp
    // The running service knows it at once: the CLI went through its admin API.
    const tiw = tiwClient(first.url, app)
    const { TaskId } = await tiw.StartOnlineRecord(startRequest(4101, app))
    assert.match(String(TaskId), /\S/)
    const again = cli(env, 'apps', 'create', '--sdk-app-id', '1400000777')
    assert.equal(again.status, 1)
    assert.match(again.stderr, /app 1400000777 exists already/)

    // The store is the service's: a second service, or a direct opener, is refused.
    const second = spawnSync(process.execPath, [bin, 'serve'], {
      encoding: 'utf8',
      env: { ...process.env, ...env, ONLINE_RECORD_HTTP_PORT: '0', ONLINE_RECORD_RTMP_PORT: '0' },
      timeout: 60_000,
    })
    assert.equal(second.status, 1)
    assert.match(
      second.stderr.trim(),
      new RegExp(
        `^online-record cannot start: the store in ${dir} is in use by process ${first.child.pid} \\(online-record serve, since [^)]+\\): only one process may open it$`,
      ),
    )
    assert.throws(() => lockStore(dir, 'test'), StoreLockedError)
    assert.equal(await first.stop(), 0)

    // No service: the CLI opens the store itself, under the same lock.
    const shown = cli(env, 'apps', 'show', '1400000777')
    assert.equal(shown.status, 0, shown.stderr)
    assert.equal((JSON.parse(shown.stdout) as CreatedApp).secretKey, app.secretKey)

    const restarted = await startServer(env)
    try {
      const described = await tiwClient(restarted.url, app).DescribeOnlineRecord({
        SdkAppId: app.sdkAppId,
        TaskId: TaskId as string,
      })
      assert.equal(described.TaskId, TaskId)
      const viaService = cli(env, 'apps', 'show', '1400000777')
      assert.equal(viaService.status, 0, viaService.stderr)
      assert.equal((JSON.parse(viaService.stdout) as CreatedApp).secretId, app.secretId)
      assert.equal(cli(env, 'apps', 'create', '--sdk-app-id', '1400000777').status, 1)
      const list = JSON.parse(cli(env, 'apps', 'list').stdout) as CreatedApp[]
      assert.deepEqual(
        list.map((a) => a.sdkAppId),
        [1400000777],
      )
    } finally {
      await restarted.stop()
    }
  } finally {
    await first.kill()
  }
})

/** The metric samples of a scrape, by `name{labels}` as printed. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`)
  assert.equal(response.status, 200)
  assert.match(String(response.headers.get('content-type')), /^text\/plain; version=0\.0\.4/)
  const samples = new Map<string, number>()
  for (const line of (await response.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m) samples.set(m[1] as string, Number(m[2]))
  }
  return samples
}

/** How much each sample moved between two scrapes (only those that moved). */
function moved(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>()
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0)
    if (d !== 0) delta.set(k, d)
  }
  return delta
}

test('first start: the printed credentials, publisher command and listen command work as printed; health and metrics', async () => {
  const dir = tempDir()
  const env = { ONLINE_RECORD_DATA_DIR: dir, ONLINE_RECORD_APPS: '' }
  const server = await startServer(env)
  let publisher: ChildProcess | undefined
  const listener = { stop: () => {} }
  try {
    const banner = server.output()
    const field = (name: string) =>
      (new RegExp(`^ {2}${name} +(\\S+)$`, 'm').exec(banner) as RegExpExecArray)[1] as string
    const app = {
      sdkAppId: Number(field('SdkAppId')),
      secretId: field('SecretId'),
      secretKey: field('SecretKey'),
    }
    assert.equal(app.sdkAppId, 1400000000)
    // Printed once: a second start of the same directory prints no credentials.
    const publishCommand = (/^ {2}(\S+ -re -f lavfi .*)$/m.exec(banner) as RegExpExecArray)[1]
    const startLines = /^Record it: StartOnlineRecord (\{.*,)\n {2}(.*\})$/m.exec(banner)
    assert.ok(publishCommand && startLines, banner)
    const start = JSON.parse(`${startLines[1]}${startLines[2]}`) as StartOnlineRecordRequest
    const listenArgs = (/npx online-record listen (.*)$/m.exec(banner) as RegExpExecArray)[1]
    assert.ok(listenArgs)

    // Health: alive and ready.
    const healthz = await fetch(`${server.url}/healthz`)
    assert.deepEqual([healthz.status, await healthz.text()], [200, 'ok\n'])
    const readyz = await fetch(`${server.url}/readyz`)
    assert.equal(readyz.status, 200)
    assert.match(await readyz.text(), /^ready: store, recovery, draining, storage, ingest$/m)

    // The printed listen command (on any free port) and callback setting.
    const listening = await startListener(
      ...listenArgs.replace('--port 3000', '').trim().split(/\s+/),
    )
    listener.stop = listening.stop
    const updated = cli(
      { ONLINE_RECORD_DATA_DIR: dir },
      'apps',
      'update',
      String(app.sdkAppId),
      '--callback',
      listening.url,
    )
    assert.equal(updated.status, 0, updated.stderr)

    const before = await scrape(server.url)
    const tiw = tiwClient(server.url, app)
    const { TaskId } = await tiw.StartOnlineRecord(start)
    const taskId = TaskId as string
    // The printed publisher command, pasted into a shell as it is.
    publisher = spawn('sh', ['-c', `exec ${publishCommand} -loglevel error`], { stdio: 'ignore' })
    const deadline = Date.now() + 30_000
    for (;;) {
      const d = await tiw.DescribeOnlineRecord({ SdkAppId: app.sdkAppId, TaskId: taskId })
      if (d.Status === 'RECORDING') break
      assert.ok(Date.now() < deadline, `the task stays ${d.Status}`)
      await new Promise((r) => setTimeout(r, 200))
    }
    await new Promise((r) => setTimeout(r, 5000))
    // Two refusals, with their codes.
    await assert.rejects(
      tiw.DescribeOnlineRecord({ SdkAppId: app.sdkAppId, TaskId: 'no-such-task' }),
      { code: 'InvalidParameter.TaskNotFound' },
    )
    await assert.rejects(tiw.StopOnlineRecord({ SdkAppId: 1400000999, TaskId: taskId }), {
      code: 'UnauthorizedOperation.SdkAppId',
    })
    await tiw.StopOnlineRecord({ SdkAppId: app.sdkAppId, TaskId: taskId })
    publisher.kill('SIGINT')
    await listening.waitFor(/OnlineRecordFinished/, 60_000)

    const described = await tiw.DescribeOnlineRecord({ SdkAppId: app.sdkAppId, TaskId: taskId })
    assert.equal(described.Status, 'FINISHED')
    assert.equal(described.ExceptionCnt, 0)
    const video = described.VideoInfos?.find((v) => v.UserId === 'teacher')
    assert.ok(video?.VideoUrl, JSON.stringify(described.VideoInfos))
    const { durationMs } = await download(video.VideoUrl, dir)
    assert.ok(durationMs >= 4000, `about five seconds of the class, not ${durationMs} ms`)

    // The scenario moved the counters by exactly what happened in it.
    const delta = moved(before, await scrape(server.url))
    assert.equal(delta.get('online_record_callback_attempts_total{outcome="delivered"}'), 3)
    assert.equal(delta.get('online_record_callback_attempts_total{outcome="retry"}'), undefined)
    const errors = [...delta].filter(
      ([k]) => k.startsWith('online_record_api_requests_total{') && !k.includes('code=""'),
    )
    assert.deepEqual(errors.sort(), [
      [
        'online_record_api_requests_total{action="DescribeOnlineRecord",code="InvalidParameter.TaskNotFound"}',
        1,
      ],
      [
        'online_record_api_requests_total{action="StopOnlineRecord",code="UnauthorizedOperation.SdkAppId"}',
        1,
      ],
    ])
    assert.equal(
      delta.get('online_record_api_requests_total{action="StartOnlineRecord",code=""}'),
      1,
    )
    assert.equal(
      delta.get('online_record_api_request_duration_seconds_count{action="StartOnlineRecord"}'),
      1,
    )
    assert.equal(
      delta.get('online_record_postprocessing_duration_seconds_count{outcome="finished"}'),
      1,
    )

    // Storage that cannot be written: not ready, naming the check; back when fixed.
    const media = join(dir, 'media')
    rmSync(media, { recursive: true, force: true })
    writeFileSync(media, 'not a directory')
    const broken = await fetch(`${server.url}/readyz`)
    assert.equal(broken.status, 503)
    assert.match(await broken.text(), /^not ready: storage: /m)
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200)
    rmSync(media)
    mkdirSync(media)
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200)
  } finally {
    publisher?.kill('SIGKILL')
    listener.stop()
    await server.stop()
  }
  // The credentials are printed on the first start only.
  const second = await startServer(env)
  try {
    assert.doesNotMatch(second.output(), /SecretKey/)
    assert.match(second.output(), /Apps: 1400000000/)
  } finally {
    await second.stop()
  }
})

test('an operator token is needed for the admin API, and a wrong one is refused', async () => {
  const dir = tempDir()
  const server = await startServer({ ONLINE_RECORD_DATA_DIR: dir })
  try {
    const none = await fetch(`${server.url}/admin/v1/apps`)
    assert.equal(none.status, 401)
    assert.deepEqual(
      ((await none.json()) as { error: { code: string } }).error.code,
      'unauthorized',
    )
    const wrong = await fetch(`${server.url}/admin/v1/apps`, {
      headers: { authorization: 'Bearer nope' },
    })
    assert.equal(wrong.status, 401)
    const elsewhere = cli(
      { ONLINE_RECORD_DATA_DIR: dir, ONLINE_RECORD_ADMIN_TOKEN: 'not-the-operator-token' },
      'apps',
      'list',
    )
    assert.equal(elsewhere.status, 1)
    assert.match(elsewhere.stderr, /operator token/)
    // Malformed requests with the token: each its 4xx, never a 500.
    const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim()
    const admin = (method: string, path: string, body?: string) =>
      fetch(`${server.url}/admin/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body }),
      })
    const forged = Buffer.from(JSON.stringify([1.5, 'x'])).toString('base64url')
    for (const [method, path, body, status] of [
      ['POST', '/apps/1400000000/rotate', 'null', 400],
      ['POST', '/apps/1400000000/rotate', '{"kind":"api","also":1}', 400],
      ['POST', '/apps', '{"sdkAppId":1400000077,"__proto__":{"x":1}}', 400],
      ['POST', '/apps', '[', 400],
      ['GET', `/tasks?cursor=${forged}`, undefined, 400],
      ['GET', '/tasks?limit=100000', undefined, 400],
      ['GET', '/apps/14000000000000000000', undefined, 400],
      ['GET', '/nothing-here', undefined, 404],
    ] as const) {
      const r = await admin(method, path, body)
      assert.equal(r.status, status, `${method} ${path} ${body?.slice(0, 40)}: ${await r.text()}`)
    }
    // Over the body cap: 413, from the declared length, before any of it is read.
    const oversize = await new Promise<number | undefined>((resolve, reject) => {
      const request = httpRequest(
        `${server.url}/admin/v1/apps`,
        {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'content-length': 2_000_000,
          },
        },
        (response) => {
          response.resume()
          resolve(response.statusCode)
          request.destroy()
        },
      )
      request.on('error', reject)
      request.flushHeaders()
    })
    assert.equal(oversize, 413)
    const info = cli({ ONLINE_RECORD_DATA_DIR: dir }, 'info')
    assert.equal(info.status, 0, info.stderr)
    const parsed = JSON.parse(info.stdout) as { store: { kind: string }; processes: unknown[] }
    assert.equal(parsed.store.kind, 'pglite')
    assert.equal(parsed.processes.length, 1)
  } finally {
    await server.stop()
  }
})

test('SIGTERM twice (npm and a terminal both pass one Ctrl-C on): the wait ends, the store is still closed', async () => {
  const dir = tempDir()
  const env = { ONLINE_RECORD_DATA_DIR: dir, ONLINE_RECORD_DRAIN_S: '60' }
  const server = await startServer(env)
  const publisher = publish({ rtmp: server.rtmp, room: 4321, userId: 'alice', seconds: 120 })
  try {
    const deadline = Date.now() + 30_000
    while (!(await readyPublishers(server.url))) {
      assert.ok(Date.now() < deadline, server.output())
      await new Promise((r) => setTimeout(r, 200))
    }
    const exited = once(server.child, 'exit')
    const t0 = Date.now()
    server.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 1000))
    server.child.kill('SIGTERM')
    const [code] = await exited
    // Not the 60 s drain, not a forced exit: closed, with 0.
    assert.equal(code, 0, server.output())
    assert.ok(Date.now() - t0 < 20_000, `${Date.now() - t0} ms`)
    assert.match(server.output(), /not waiting for publishers any longer/)
    assert.ok(!existsSync(join(dir, 'online-record.lock')), 'the lock is released')
  } finally {
    await publisher.kill()
  }
  // The store opens again, whole.
  const again = await startServer(env)
  try {
    const apps = cli({ ONLINE_RECORD_DATA_DIR: dir }, 'apps', 'list')
    assert.equal(apps.status, 0, apps.stderr)
  } finally {
    await again.stop()
  }
})

/** Whether a publisher is connected, from the metrics. */
async function readyPublishers(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return /^online_record_publishers\{ingest="rtmp"\} [1-9]/m.test(text)
}
