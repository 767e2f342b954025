// Runs the developer CLI's `online-record listen` as a real process for tests.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const bin = fileURLToPath(new URL('../bin/online-record.js', import.meta.url))

export interface Listener {
  /** Where it receives callbacks, as it printed it. */
  url: string
  /** Everything it printed so far. */
  output(): string
  /** Resolves once its output matches `pattern`; fails after `timeoutMs` or if it exits. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>
  stop(): void
}

/** Starts `online-record listen --port 0 …args` and waits until it is listening. */
export async function startListener(...args: string[]): Promise<Listener> {
  const child = spawn(process.execPath, [bin, 'listen', '--port', '0', ...args])
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (c: string) => {
    output += c
  })
  const waitFor = async (pattern: RegExp, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(output)) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `listen printed:\n${output}`)
      await Promise.race([once(child, 'exit'), once(child.stdout, 'data')])
    }
  }
  await waitFor(/listening on (\S+)/)
  return {
    url: (/listening on (\S+)/.exec(output) as RegExpExecArray)[1] as string,
    output: () => output,
    waitFor,
    stop: () => child.kill('SIGTERM'),
  }
}
