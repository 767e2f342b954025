// `online-record`: the operator and developer command line.
import { parseArgs } from 'node:util'
import { signCallback } from '@online-record/protocol'
import { VERSION } from './version.ts'

const USAGE = `online-record ${VERSION}

Usage:
  online-record serve                          run the service (same as npm start)
  online-record sign --key K --expire-time T   print the callback Sign md5(K + T)
  online-record version                        print the version

Not yet available: apps, callbacks, listen, trigger (see the README's status table).`

export function main(argv: readonly string[]): number {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      return serve()
    case 'sign': {
      const { values } = parseArgs({
        args: rest,
        options: { key: { type: 'string' }, 'expire-time': { type: 'string' } },
        strict: true,
      })
      const expireTime = Number(values['expire-time'])
      if (values.key === undefined || !Number.isSafeInteger(expireTime) || expireTime < 0) {
        console.error('sign needs --key and --expire-time (Unix seconds)')
        return 2
      }
      console.log(signCallback(values.key, expireTime))
      return 0
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

if (import.meta.main) process.exit(main(process.argv.slice(2)))
