import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const bin = fileURLToPath(new URL('../bin/online-record.js', import.meta.url))
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' })

test('sign prints the spec vector', () => {
  const out = cli('sign', '--key', 'Xz4ZgayTr7rMgWQrH', '--expire-time', '1588040109')
  assert.equal(out.status, 0, out.stderr)
  assert.equal(out.stdout.trim(), 'a2dabb362a9b811c0e26953a6276a41c')
})

test('bad input gets a usage error and exit code 2', () => {
  assert.equal(cli('sign', '--key', 'k').status, 2)
  assert.equal(cli('frobnicate').status, 2)
})

test('serve says plainly what is not yet available', () => {
  const out = cli('serve')
  assert.equal(out.status, 0)
  assert.match(out.stdout, /not yet available/)
})
