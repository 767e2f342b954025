// `online-record`: the operator and developer command line.
import { RECEIVER_USAGE, runReceiverCommand } from '@online-record/receiver/cli'
import { ADMIN_USAGE, runAdminCommand } from './admin/admin-cli.ts'
import { type Config, loadConfig } from './config.ts'
import { StartError, startService } from './service.ts'
import { StoreError } from './store/db.ts'
import { StoreLockedError } from './store/lock.ts'
import { VERSION } from './version.ts'

const USAGE = `online-record ${VERSION}

Usage: online-record <command>

Service:
  serve       run the service (same as npm start)
  version     print the version

${ADMIN_USAGE}

${RECEIVER_USAGE}`

/** Runs one command; `undefined` means it keeps running (serve, listen). */
export async function main(argv: readonly string[]): Promise<number | undefined> {
  const [command] = argv
  switch (command) {
    case 'serve':
      return serve()
    case 'sign':
    case 'listen':
    case 'trigger':
      return runReceiverCommand(argv)
    case 'apps':
    case 'tasks':
    case 'callbacks':
    case 'usersig':
    case 'info':
      try {
        return await runAdminCommand(argv)
      } catch (error) {
        console.error((error as Error).message)
        return 1
      }
    case 'version':
    case '--version':
      console.log(VERSION)
      return 0
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE)
      return 0
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`)
      return 2
  }
}

/**
 * Runs the service until SIGINT/SIGTERM; returns an exit code only if it
 * cannot start. SIGTERM drains (publishers go on for ONLINE_RECORD_DRAIN_S
 * while they move elsewhere), SIGINT closes without draining, a second signal
 * ends the drain's wait; a shutdown not done 15 s past the drain exits 1.
 */
export async function serve(): Promise<number | undefined> {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    console.error((error as Error).message)
    return 2
  }
  let service: Awaited<ReturnType<typeof startService>>
  try {
    service = await startService(config)
  } catch (error) {
    // What an operator can act on is one line; anything else keeps its stack.
    if (
      error instanceof StoreError ||
      error instanceof StartError ||
      error instanceof StoreLockedError
    ) {
      console.error(`online-record cannot start: ${error.message}`)
      return 1
    }
    throw error
  }
  let stopping = false
  const hurry = new AbortController()
  const stop = async (signal: string) => {
    if (stopping) {
      // A second signal (npm and a terminal both pass one Ctrl-C on, and
      // supervisors signal a process group): no more waiting for publishers,
      // but the store is still closed as it must be (PGlite's files are
      // damaged by an exit mid-write).
      if (!hurry.signal.aborted) {
        process.stderr.write(`${signal}: not waiting for publishers any longer\n`)
        hurry.abort()
      }
      return
    }
    stopping = true
    const draining = signal === 'SIGTERM' && config.drainMs > 0
    // A shutdown that hangs (a store that does not answer, a long
    // post-processing job) does not keep the process: 15 s past the drain.
    const limitMs = (draining ? config.drainMs : 0) + 15_000
    setTimeout(() => {
      process.stderr.write(`${signal}: shutdown not done after ${limitMs / 1000} s; exiting\n`)
      process.exit(1)
    }, limitMs).unref()
    if (draining) {
      process.stderr.write(
        `${signal}: draining (no new tasks or publishers; up to ${config.drainMs / 1000} s for those connected)\n`,
      )
      await service.drain(config.drainMs, hurry.signal)
    } else {
      process.stderr.write(`${signal}: shutting down\n`)
      await service.close()
    }
    process.exit(0)
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))
  return undefined
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  if (code !== undefined) process.exitCode = code
}
