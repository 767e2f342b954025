// `online-record`: the operator and developer command line.
import { RECEIVER_USAGE, runReceiverCommand } from '@online-record/receiver/cli'
import { APPS_USAGE, runAppsCommand } from './apps/apps-cli.ts'
import { type Config, loadConfig } from './config.ts'
import { CALLBACKS_USAGE, runCallbacksCommand } from './delivery/callbacks-cli.ts'
import { startService } from './service.ts'
import { StoreError } from './store/db.ts'
import { VERSION } from './version.ts'

const USAGE = `online-record ${VERSION}

Usage: online-record <command>

Service:
  serve       run the service (same as npm start)
  version     print the version

${APPS_USAGE}

${CALLBACKS_USAGE}

${RECEIVER_USAGE}`

/** Runs one command; `undefined` means it keeps running (listen). */
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
    case 'callbacks':
      try {
        return await (command === 'apps' ? runAppsCommand : runCallbacksCommand)(argv.slice(1))
      } catch (error) {
        console.error((error as Error).message)
        return String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS') ? 2 : 1
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

/** Runs the service until SIGINT/SIGTERM; returns an exit code only if it cannot start. */
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
    if (error instanceof StoreError) {
      console.error(`online-record cannot start: ${error.message}`)
      return 1
    }
    throw error
  }
  const stop = async (signal: string) => {
    console.log(`${signal}: shutting down`)
    await service.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))
  return undefined
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  if (code !== undefined) process.exitCode = code
}
