import { serve } from './cli.ts'

process.exit(serve())
