// Starts `online-record serve` (or another script) for a benchmark and waits
// for a line of its start banner. The banner goes to stderr (stdout is the
// JSON log), so both are read; stderr is passed on to the bench's own.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

export const cli = fileURLToPath(new URL('../packages/server/src/cli.ts', import.meta.url))

export interface BenchProcess {
  child: ChildProcess
  /** Everything it printed so far, stdout and stderr. */
  output(): string
}

/** Spawns `args` under Node with the source condition; resolves once `ready` matches its output. */
export async function spawnService(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<BenchProcess> {
  const child = spawn(process.execPath, ['--conditions=@online-record/source', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.setEncoding('utf8')
  child.stderr?.setEncoding('utf8')
  child.stdout?.on('data', (c: string) => {
    output += c
  })
  child.stderr?.on('data', (c: string) => {
    output += c
    process.stderr.write(c)
  })
  while (!ready.test(output)) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`exited with ${child.exitCode ?? child.signalCode}: ${output}`)
    await Promise.race([
      once(child.stdout as NodeJS.ReadableStream, 'data'),
      once(child.stderr as NodeJS.ReadableStream, 'data'),
      once(child, 'exit'),
    ])
  }
  return { child, output: () => output }
}
