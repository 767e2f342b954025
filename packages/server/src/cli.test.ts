import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { EVENT_TYPES } from '@online-record/protocol'
import { type Listener, startListener } from '../test/listener.ts'

const bin = fileURLToPath(new URL('../bin/online-record.js', import.meta.url))
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' })

test('sign prints the spec vector', () => {
  const out = cli('sign', '--key', 'Xz4ZgayTr7rMgWQrH', '--expire-time', '1588040109')
  assert.equal(out.status, 0, out.stderr)
  assert.equal(out.stdout.trim(), 'a2dabb362a9b811c0e26953a6276a41c')
})

// The launcher promises any Node >= 20: where the machine has an older Node
// than the project's own, the bin is run with it (it re-executes the sources
// with the Node 24 the install brought).
const systemNode = '/usr/bin/node'
const systemVersion = existsSync(systemNode)
  ? spawnSync(systemNode, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim()
  : undefined
if (systemVersion !== undefined && systemVersion !== process.versions.node) {
  test(`the bin runs on the system Node ${systemVersion}`, () => {
    const run = spawnSync(systemNode, [bin, 'version'], { encoding: 'utf8' })
    assert.equal(run.status, 0, run.stderr)
    assert.match(run.stdout, /^\d+\.\d+\.\d+\n$/)
    const help = spawnSync(systemNode, [bin, 'help'], { encoding: 'utf8' })
    assert.equal(help.status, 0, help.stderr)
    assert.match(help.stdout, /^online-record .*\n\nUsage: online-record <command>/)
  })
}

test('bad input gets a usage error and exit code 2', () => {
  for (const args of [
    ['sign', '--key', 'k'],
    ['sign', '--key', 'k', '--expire-time', '-5'],
    ['frobnicate'],
    ['listen', '--port', 'x', '--key', 'k'],
    ['listen', '--port', '0'],
    ['trigger', 'OnlineRecordPaused', '--url', 'http://127.0.0.1:1/'],
    ['trigger', 'OnlineRecordStarted', '--url', 'ftp://x'],
    ['sign', '--nope'],
  ]) {
    const out = cli(...args)
    assert.equal(out.status, 2, `${args.join(' ')}: ${out.stderr}`)
    assert.match(out.stderr, /listen --port/)
  }
})

test('serve starts on the embedded defaults: the banner on stderr, pure JSON logs on stdout; SIGTERM stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-serve-'))
  try {
    const child = spawn(process.execPath, [bin, 'serve'], {
      env: {
        ...process.env,
        ONLINE_RECORD_HTTP_PORT: '0',
        ONLINE_RECORD_RTMP_PORT: '0',
        ONLINE_RECORD_DATA_DIR: dir,
        ONLINE_RECORD_LOG_LEVEL: 'info',
        ONLINE_RECORD_DEV_APP: 'false',
      },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (c: string) => {
      stdout += c
    })
    child.stderr.on('data', (c: string) => {
      stderr += c
    })
    while (!/Admin API: /.test(stderr)) await once(child.stderr, 'data')
    const url = (/listening on (\S+)/.exec(stderr) as RegExpExecArray)[1] as string
    assert.match(stderr, /No apps yet/)
    // With port 0 the line gives the port taken, and TRTC's URL convention.
    assert.match(
      stderr,
      /RTMP ingest listening on rtmp:\/\/127\.0\.0\.1:[1-9]\d*\/push\/\{room\}\?sdkappid=\{SdkAppId\}&userid=\{UserId\}&usersig=\{UserSig\}/,
    )
    const response = await fetch(url, {
      method: 'POST',
      body: '{}',
      headers: { 'x-tc-action': 'DescribeOnlineRecord' },
    })
    assert.equal(response.status, 200)
    assert.equal(
      ((await response.json()) as { Response: { Error: { Code: string } } }).Response.Error.Code,
      'AuthFailure.InvalidAuthorization',
    )
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    assert.equal(code, 0)
    // Every stdout line is a JSON log record; the request's names its action and code.
    const records = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    assert.ok(records.length > 0)
    assert.ok(
      records.some(
        (r) =>
          r.msg === 'request' &&
          r.action === 'DescribeOnlineRecord' &&
          r.code === 'AuthFailure.InvalidAuthorization',
      ),
      stdout,
    )
    assert.ok(!/secret|SecretKey/i.test(stdout), 'no secret is logged')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('with no service running, apps commands open the store themselves under its lock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-apps-'))
  const env = { ...process.env, ONLINE_RECORD_DATA_DIR: dir }
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [bin, 'apps', ...args], { encoding: 'utf8', env })
  try {
    const created = run('create', '--sdk-app-id', '1400000123')
    assert.equal(created.status, 0, created.stderr)
    const app = JSON.parse(created.stdout) as {
      secretId: string
      secretKey: string
      webhookSecret: string
    }
    assert.match(app.secretId, /^AKID/)
    assert.equal(run('create', '--sdk-app-id', '1400000123').status, 1)
    assert.equal(run('create', '--sdk-app-id', 'x').status, 2)
    const list = JSON.parse(run('list').stdout) as { sdkAppId: number; secretKey?: string }[]
    assert.deepEqual(
      list.map((a) => [a.sdkAppId, a.secretKey]),
      [[1400000123, undefined]],
    )
    const rotated = JSON.parse(run('rotate-secret', '1400000123', '--kind', 'webhook').stdout) as {
      webhookSecret: string
      previousWebhookSecret: string
    }
    assert.equal(rotated.previousWebhookSecret, app.webhookSecret)
    assert.equal(JSON.parse(run('show', '1400000123').stdout).webhookSecret, rotated.webhookSecret)
    const updated = JSON.parse(
      run('update', '1400000123', '--rate-limit', '50', '--rate-burst', '80').stdout,
    )
    assert.deepEqual([updated.rateLimit, updated.rateBurst], [50, 80])
    assert.equal(JSON.parse(run('disable', '1400000123').stdout).disabled, true)
    assert.equal(run('show', '999').status, 1)
    assert.equal(run('rotate-secret', '1400000123', '--kind', 'everything').status, 2)
    const sig = spawnSync(
      process.execPath,
      [bin, 'usersig', '--sdk-app-id', '1400000123', '--user-id', 'teacher'],
      { encoding: 'utf8', env },
    )
    assert.equal(sig.status, 0, sig.stderr)
    assert.match(sig.stdout.trim(), /^[A-Za-z0-9*_-]{100,}$/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

describe('listen receives what trigger sends', () => {
  let listener: Listener
  let url = ''
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

  before(async () => {
    listener = await startListener('--key', 'k1', '--secret', secret, '--path', '/cb')
    url = listener.url
  })
  after(() => {
    listener.stop()
  })

  const trigger = (...args: string[]) =>
    new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, 'trigger', ...args])
      let stdout = ''
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString()
      })
      child.on('exit', (status) => resolve({ status, stdout }))
    })
  const waitFor = (pattern: RegExp) => listener.waitFor(pattern)

  test('every event type, signed with the key, is verified and printed', async () => {
    for (const type of EVENT_TYPES) {
      const result = await trigger(type, '--url', url, '--key', 'k1', '--task-id', `task-${type}`)
      assert.equal(result.status, 0, result.stdout)
      assert.match(result.stdout, /^200 \{"error_code":0\}/)
      await waitFor(new RegExp(`✔ ${type}  task task-${type} .* verified by sign`))
    }
  })

  test('with the secret too, the Standard Webhooks signature is used and the id shown', async () => {
    const result = await trigger(
      'OnlineRecordStopped',
      '--url',
      url,
      '--key',
      'k1',
      '--secret',
      secret,
      '--task-id',
      'task-sw',
    )
    assert.equal(result.status, 0)
    await waitFor(
      /✔ OnlineRecordStopped {2}task task-sw .* verified by webhook-signature {2}id evt_[0-9a-f]{32}/,
    )
  })

  test('a wrong key is refused with 401 and the listener says why', async () => {
    const result = await trigger('OnlineRecordStarted', '--url', url, '--key', 'wrong')
    assert.equal(result.status, 1)
    assert.match(result.stdout, /^401 .*BAD_SIGNATURE/)
    await waitFor(/✖ refused: BAD_SIGNATURE/)
  })
})
