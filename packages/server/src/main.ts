import { serve } from './cli.ts'

const code = await serve()
if (code !== undefined) process.exitCode = code
