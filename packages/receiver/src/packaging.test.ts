// The published shape: protocol and receiver are built to dist/ and loaded the
// way an app backend loads them, through `import` and through `require`.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { before, describe, test } from 'node:test'
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
