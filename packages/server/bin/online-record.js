#!/usr/bin/env node
// The service runs from its TypeScript sources, which Node strips of their
// types from 22.18 on. On an older Node (the system's 20, say) this launcher
// runs them with the Node 24 that `npm install` brings (the `node` package),
// so `npx online-record` works whatever Node runs npx.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

/** A Node that runs .ts files: this one if new enough, else the `node` package's. */
function typeStrippingNode() {
  const [major, minor] = process.versions.node.split('.').map(Number)
  if (major > 22 || (major === 22 && minor >= 18)) return process.execPath
  try {
    const pkg = createRequire(import.meta.url).resolve('node/package.json')
    const bin = join(dirname(pkg), 'bin', 'node')
    if (existsSync(bin)) return bin
  } catch {}
  return undefined
}

const node = typeStrippingNode()
if (node === undefined) {
  console.error(
    `online-record needs Node 22.18 or later to run its sources (this is ${process.versions.node}); run \`npm install\` in the project (it brings Node 24), or install Node 24.`,
  )
  process.exit(1)
}
const child = spawn(node, ['--conditions=@online-record/source', cli, ...process.argv.slice(2)], {
  stdio: 'inherit',
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal))
}
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 128 : 1)
})
