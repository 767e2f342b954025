#!/usr/bin/env node
// The service runs from its TypeScript sources on Node >= 22.18 (type stripping);
// the source condition makes the workspace packages resolve to theirs as well.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const child = spawn(
  process.execPath,
  ['--conditions=@online-record/source', cli, ...process.argv.slice(2)],
  { stdio: 'inherit' },
)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal))
}
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 128 : 1)
})
