// `online-record`: the operator and developer command line.
import { RECEIVER_USAGE, runReceiverCommand } from '@online-record/receiver/cli'
import { VERSION } from './version.ts'

const USAGE = `online-record ${VERSION}

Usage: online-record <command>

Service:
  serve       run the service (same as npm start)
  version     print the version
  Not yet available: apps, callbacks (see the README's status table).

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

export function serve(): number {
  console.log(`online-record ${VERSION}
The wire contract (@online-record/protocol) and the callback verifier
(@online-record/receiver) are built. The service itself is not yet available:
  control API (TIW OnlineRecord actions)   not yet available
  callback delivery                        not yet available
  media recording (RTMP ingest, recorder)  not yet available
Nothing is listening and nothing is recorded. See README.md for the status.`)
  return 0
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  if (code !== undefined) process.exitCode = code
}
