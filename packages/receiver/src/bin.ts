#!/usr/bin/env node
import { RECEIVER_USAGE, runReceiverCommand } from './cli.ts'

const argv = process.argv.slice(2)
if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help') {
  console.log(`online-record-receiver\n\n${RECEIVER_USAGE}`)
} else {
  // No top-level await: this file is also compiled to CommonJS.
  void runReceiverCommand(argv).then((code) => {
    if (code !== undefined) process.exitCode = code
  })
}
