// Secrets the whole deployment shares, made once at first start and kept in
// the store, so every process (and every restart) uses the same ones.
import { randomBytes } from 'node:crypto'
import type { Clock } from '../clock.ts'
import type { Queryable } from './db.ts'

/** The secret `name`, made (256 random bits) the first time it is asked for. */
export async function serviceSecret(db: Queryable, name: string, clock: Clock): Promise<string> {
  await db.query(
    `insert into service_secrets (name, value, created_at_ms) values ($1, $2, $3)
     on conflict (name) do nothing`,
    [name, randomBytes(32).toString('base64url'), clock.now()],
  )
  const [row] = await db.query<{ value: string }>(
    'select value from service_secrets where name = $1',
    [name],
  )
  if (row === undefined) throw new Error(`service secret ${name} is missing`)
  return row.value
}
