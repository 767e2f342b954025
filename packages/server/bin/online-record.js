#!/usr/bin/env node
// The service runs from its TypeScript sources on Node >= 22.18 (type stripping);
// the source condition makes the workspace packages resolve to theirs as well.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const result = spawnSync(
  process.execPath,
  ['--conditions=@online-record/source', cli, ...process.argv.slice(2)],
  { stdio: 'inherit' },
)
process.exit(result.status ?? 1)
