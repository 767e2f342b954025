// JSON Schema (draft 2020-12) of the callback events, generated from the same
// zod schemas, for receivers that do not use TypeScript.
import { z } from 'zod'
import { EVENT_TYPES, eventSchemas } from './events.ts'

export const JSON_SCHEMA_BASE_ID = 'https://online-record.dev/schema/'

/** One JSON Schema per event type plus `OnlineRecordCallback.json`, keyed by file name. */
export function eventJsonSchemas(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {}
  const add = (name: string, schema: z.ZodType, description: string): void => {
    out[`${name}.json`] = {
      ...z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' }),
      // The zod refinement that couples the two is code; say it in JSON Schema terms.
      dependentRequired: { Sign: ['ExpireTime'], ExpireTime: ['Sign'] },
      $id: `${JSON_SCHEMA_BASE_ID}${name}.json`,
      title: name,
      description,
    }
  }
  for (const type of EVENT_TYPES) {
    add(type, eventSchemas[type], `Body of the ${type} callback (POST, application/json).`)
  }
  add(
    'OnlineRecordCallback',
    eventSchemas.Callback,
    'Any OnlineRecord callback body; EventType tells which. Sign and ExpireTime are present together, only when the app has a CallbackKey.',
  )
  return out
}
