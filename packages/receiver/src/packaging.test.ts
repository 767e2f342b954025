// The published shape: protocol and receiver are built to dist/ and loaded the
// way an app backend loads them, through `import` and through `require`.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const probe = `
  const body = JSON.stringify({ EventData: { RecordUserId: 'tic_record_user_1_a', RoomId: 1, TaskId: 't' },
    EventType: 'OnlineRecordStarted', ExpireTime: 2000000000, SdkAppId: 1400000001,
    Sign: receiver.signCallback('k', 2000000000), Timestamp: 1 })
  const result = receiver.verify(body, {}, { callbackKeys: 'k' })
  console.log(JSON.stringify({ type: result.event.EventType, by: result.verifiedBy, error: typeof receiver.ReceiverError }))
`
const expected = { type: 'OnlineRecordStarted', by: 'sign', error: 'function' }

function run(args: string[], node = process.execPath): unknown {
  // No source condition here: resolution goes through the exports map to dist/.
  return JSON.parse(execFileSync(node, args, { cwd: root, encoding: 'utf8' }))
}

// The receiver promises Node >= 20 (engines); where the system has an older
// Node than the project's own, the built package is loaded with it too.
const systemNode = '/usr/bin/node'
const systemVersion = existsSync(systemNode)
  ? execFileSync(systemNode, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim()
  : undefined

describe('receiver package', () => {
  before(() => {
    for (const pkg of ['protocol', 'receiver']) {
      execFileSync(process.execPath, ['../../scripts/build-package.ts'], {
        cwd: `${root}packages/${pkg}`,
        stdio: 'inherit',
      })
    }
  })

  test('loads with import (ESM)', () => {
    assert.deepEqual(
      run([
        '--input-type=module',
        '-e',
        `import * as receiver from '@online-record/receiver'\n${probe}`,
      ]),
      expected,
    )
  })

  test('loads with require (CommonJS)', () => {
    assert.deepEqual(
      run([
        '--input-type=commonjs',
        '-e',
        `const receiver = require('@online-record/receiver')\n${probe}`,
      ]),
      expected,
    )
  })

  if (systemVersion !== undefined && systemVersion !== process.versions.node) {
    test(`loads with import and require on the system Node ${systemVersion}`, () => {
      const esm = `import * as receiver from '@online-record/receiver'\n${probe}`
      const cjs = `const receiver = require('@online-record/receiver')\n${probe}`
      assert.deepEqual(run(['--input-type=module', '-e', esm], systemNode), expected)
      assert.deepEqual(run(['--input-type=commonjs', '-e', cjs], systemNode), expected)
    })
  }

  test('the testing helpers load both ways', () => {
    const code = (load: string) => `${load}
      const { body } = t.signPayload(t.sampleEvent('OnlineRecordStopped'), { callbackKey: 'k' })
      console.log(JSON.stringify(JSON.parse(body).EventType))`
    assert.equal(
      run([
        '--input-type=module',
        '-e',
        code(`import * as t from '@online-record/receiver/testing'`),
      ]),
      'OnlineRecordStopped',
    )
    assert.equal(
      run([
        '--input-type=commonjs',
        '-e',
        code(`const t = require('@online-record/receiver/testing')`),
      ]),
      'OnlineRecordStopped',
    )
  })

  test('the built online-record-receiver bin runs', () => {
    const out = execFileSync(
      process.execPath,
      [
        'packages/receiver/dist/esm/bin.js',
        'sign',
        '--key',
        'Xz4ZgayTr7rMgWQrH',
        '--expire-time',
        '1588040109',
      ],
      { cwd: root, encoding: 'utf8' },
    )
    assert.equal(out.trim(), 'a2dabb362a9b811c0e26953a6276a41c')
  })

  test('ships type declarations for both', () => {
    const resolved = run([
      '--input-type=module',
      '-e',
      `
      import { createRequire } from 'node:module'
      import { existsSync } from 'node:fs'
      const pkg = createRequire(import.meta.url)('@online-record/receiver/package.json')
      const e = pkg.exports['.']
      console.log(JSON.stringify([e.import.types, e.require.types].map((p) => existsSync('packages/receiver/' + p))))
    `,
    ])
    assert.deepEqual(resolved, [true, true])
  })
})

describe('npm pack', () => {
  const work = mkdtempSync(join(tmpdir(), 'online-record-pack-'))
  after(() => rmSync(work, { recursive: true, force: true }))
  const npm = (args: string[], cwd: string): string =>
    execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })

  test('the tarballs install into an empty project, and the Express example of docs/receiver.md receives `online-record trigger`', async () => {
    // Packed the way a release is: prepack builds, `files` decides what ships.
    const tarballs = ['protocol', 'receiver'].map((pkg) => {
      // As in a fresh clone: no dist/ until prepack builds it.
      rmSync(`${root}packages/${pkg}/dist`, { recursive: true, force: true })
      const text = npm(['pack', '--json', '--pack-destination', work], `${root}packages/${pkg}`)
      // The build's own lines come first, then npm's JSON report.
      const out = JSON.parse(text.slice(text.search(/^\[/m))) as {
        filename: string
        files: { path: string }[]
      }[]
      const [packed] = out
      assert.ok(packed)
      const paths = packed.files.map((f) => f.path)
      assert.ok(paths.includes('dist/esm/index.js') && paths.includes('dist/cjs/index.js'), pkg)
      assert.ok(!paths.some((p) => p.startsWith('src/') || p.endsWith('.test.js')), pkg)
      return join(work, packed.filename)
    })
    const app = join(work, 'app')
    execFileSync('mkdir', [app])
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'school-backend', private: true, type: 'module' }),
    )
    // express comes from the npm cache the repository's own install filled.
    const express = (
      JSON.parse(readFileSync(`${root}node_modules/express/package.json`, 'utf8')) as {
        version: string
      }
    ).version
    npm(
      ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs, `express@${express}`],
      app,
    )
    assert.deepEqual(readdirSync(join(app, 'node_modules', '@online-record')).sort(), [
      'protocol',
      'receiver',
    ])

    // The docs' core and Express snippets, as they are written, in one file;
    // only the handlers' bodies and the port are the test's own.
    const docs = readFileSync(`${root}docs/receiver.md`, 'utf8')
    const block = (heading: string): string => {
      const at = docs.indexOf(heading)
      assert.ok(at >= 0, heading)
      const match = /```ts\n([\s\S]*?)```/.exec(docs.slice(at))
      assert.ok(match?.[1], heading)
      return match[1]
    }
    const expressBlock = block('### Express')
    assert.match(expressBlock, /app\.listen\(3000\)/)
    const source = [
      `import { createReceiver } from '@online-record/receiver'`,
      `const receiver = createReceiver({ callbackKeys: process.env.TIW_CALLBACK_KEY, webhookSecrets: process.env.ONLINE_RECORD_WEBHOOK_SECRET })`,
      `receiver.on('OnlineRecordFinished', (event, { id }) => console.log(JSON.stringify({ id, type: event.EventType, videos: event.EventData.VideoInfos.length })))`,
      expressBlock.replace(
        'app.listen(3000)',
        `const server = app.listen(0, () => console.log(JSON.stringify({ port: server.address().port })))`,
      ),
    ].join('\n')
    writeFileSync(join(app, 'server.mjs'), source)
    const key = 'school-callback-key'
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
    const child = spawn(process.execPath, ['server.mjs'], {
      cwd: app,
      env: { ...process.env, TIW_CALLBACK_KEY: key, ONLINE_RECORD_WEBHOOK_SECRET: secret },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      child.stdout.setEncoding('utf8')
      let out = ''
      child.stdout.on('data', (c: string) => {
        out += c
      })
      while (!out.includes('\n')) await once(child.stdout, 'data')
      const { port } = JSON.parse(out.split('\n')[0] as string) as { port: number }
      const cli = fileURLToPath(new URL('../../server/src/cli.ts', import.meta.url))
      const trigger = (args: string[]): string =>
        execFileSync(
          process.execPath,
          [
            '--conditions=@online-record/source',
            cli,
            'trigger',
            'OnlineRecordFinished',
            '--url',
            `http://127.0.0.1:${port}/tiw/callback`,
            ...args,
          ],
          { encoding: 'utf8' },
        )
      trigger(['--key', key, '--secret', secret])
      while (out.split('\n').filter(Boolean).length < 2) await once(child.stdout, 'data')
      const got = JSON.parse(out.split('\n')[1] as string) as { type: string; videos: number }
      assert.deepEqual([got.type, got.videos], ['OnlineRecordFinished', 4])
      // A wrong secret is refused by the example, and the CLI says so.
      assert.throws(
        () => trigger(['--secret', 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']),
        (e: { status?: number; stdout?: string }) => e.status === 1 && /^401 /.test(e.stdout ?? ''),
      )
    } finally {
      child.kill()
    }
  })
})
