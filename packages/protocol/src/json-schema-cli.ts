// Writes the event JSON Schemas into the directory given as the first argument.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { eventJsonSchemas } from './json-schema.ts'

const dir = process.argv[2] ?? 'schema'
mkdirSync(dir, { recursive: true })
for (const [file, schema] of Object.entries(eventJsonSchemas())) {
  writeFileSync(join(dir, file), `${JSON.stringify(schema, null, 2)}\n`)
}
console.log(`wrote ${Object.keys(eventJsonSchemas()).length} JSON Schemas to ${dir}/`)
