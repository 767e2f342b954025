// The store speaks one SQL dialect, PostgreSQL's: PGlite (PostgreSQL in WASM)
// in the data directory by default, a PostgreSQL server when DATABASE_URL is set.
import { createHash } from 'node:crypto'
import { mkdirSync, statfsSync } from 'node:fs'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'

export interface Queryable {
  /**
   * Runs one statement. On PostgreSQL a statement with parameters is prepared
   * once per connection and reused; `prepare: false` plans it afresh each time,
   * for a large batch whose best plan depends on how much it finds.
   */
  query<T = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: { prepare?: boolean },
  ): Promise<T[]>
  /** Runs several statements without parameters (migrations). */
  exec(sql: string): Promise<void>
}

export interface Db extends Queryable {
  readonly dialect: 'pglite' | 'postgres'
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
  /**
   * Calls `onNotify` for each NOTIFY on `channel` from any process; resolves
   * to a function that stops listening. On PGlite, which one process owns,
   * it does nothing: that process wakes its own listeners directly.
   */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>
  close(): Promise<void>
}

const INT8 = 20
const NUMERIC = 1700

export interface OpenDbOptions {
  /** postgres:// URL; when absent, PGlite in `dataDir` (or in memory when that is absent too). */
  databaseUrl?: string
  dataDir?: string
  /** Connections in the PostgreSQL pool. Default 10. */
  poolSize?: number
  /** PostgreSQL schema to work in (tests use one schema each). */
  schema?: string
}

export async function openDb(options: OpenDbOptions): Promise<Db> {
  return options.databaseUrl
    ? openPostgres(options.databaseUrl, options.poolSize ?? 10, options.schema)
    : openPglite(options.dataDir)
}

/** Why the store could not be opened, in words an operator can act on. */
export class StoreError extends Error {
  override name = 'StoreError'
}

/** Emscripten's errno numbers (PGlite's file system) that mean something to an operator. */
const WASM_ERRNO: Record<number, string> = {
  2: 'permission denied',
  44: 'a file or directory is missing',
  51: 'no space left on the device',
  63: 'permission denied',
  69: 'the file system is read-only',
}

/** Free space of the file system holding `dir`, in MB, if it can be read. */
export function freeMegabytes(dir: string): number | undefined {
  try {
    const stats = statfsSync(dir)
    return Math.floor((stats.bavail * stats.bsize) / 1_048_576)
  } catch {
    return undefined
  }
}

/** The store in `dataDir` could not be opened (or locked): why, with the free space there. */
export function cannotOpen(dataDir: string | undefined, error: unknown): StoreError {
  const e = error as { errno?: unknown; code?: unknown; message?: string }
  const why =
    typeof e.errno === 'number' && e.errno in WASM_ERRNO
      ? WASM_ERRNO[e.errno]
      : e.code === 'ENOSPC'
        ? 'no space left on the device'
        : e.code === 'EACCES' || e.code === 'EPERM'
          ? 'permission denied'
          : e.code === 'EROFS'
            ? 'the file system is read-only'
            : (e.message ?? String(error))
  const free = dataDir === undefined ? undefined : freeMegabytes(dataDir)
  return new StoreError(
    `cannot open the store in ${dataDir ?? 'memory'}: ${why}${free === undefined ? '' : ` (${free} MB free there)`}`,
  )
}

async function openPglite(dataDir: string | undefined): Promise<Db> {
  // Unix-ms timestamps and ids live in int8 columns; they fit in a double.
  const parsers = { [INT8]: Number, [NUMERIC]: Number }
  let lite: PGlite
  try {
    if (dataDir) mkdirSync(dataDir, { recursive: true })
    lite = await PGlite.create(dataDir, { parsers })
  } catch (error) {
    throw cannotOpen(dataDir, error)
  }
  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<T>(sql: string, params: readonly unknown[] = []) {
      return (await q.query<T>(sql, params as unknown[])).rows
    },
    async exec(sql: string) {
      await q.exec(sql)
    },
  })
  const root = wrap(lite)
  return {
    dialect: 'pglite',
    query: root.query,
    exec: root.exec,
    transaction: (fn) => lite.transaction((tx) => fn(wrap(tx))),
    listen: async () => async () => {},
    close: () => lite.close(),
  }
}

async function openPostgres(url: string, max: number, schema: string | undefined): Promise<Db> {
  if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schema))
    throw new Error(`bad schema name ${schema}`)
  const pool = new pg.Pool({
    connectionString: url,
    max,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8 || oid === NUMERIC
          ? Number
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  })
  pool.on('error', () => {
    // An idle client's connection dropped; the pool replaces it on next use.
  })
  // Statements with parameters are prepared once per connection, named by
  // their text: the engine's and the dispatcher's are single statements of
  // several CTEs, whose planning cost as much as running them.
  const names = new Map<string, string>()
  const nameOf = (sql: string) => {
    let name = names.get(sql)
    if (name === undefined) {
      name = `s${createHash('sha1').update(sql).digest('base64url').slice(0, 20)}`
      if (names.size < 10_000) names.set(sql, name)
    }
    return name
  }
  const query = async <T>(
    client: Pick<pg.Pool, 'query'>,
    sql: string,
    params: readonly unknown[] = [],
    options: { prepare?: boolean } = {},
  ) =>
    (params.length === 0
      ? await client.query(sql)
      : options.prepare === false
        ? await client.query(sql, params as unknown[])
        : await client.query({ name: nameOf(sql), text: sql, values: params as unknown[] })
    ).rows as T[]
  await query(pool, 'select 1')
  // Without parameters pg uses the simple protocol, which runs several statements.
  const exec = async (client: Pick<pg.Pool, 'query'>, sql: string) => void (await client.query(sql))
  return {
    dialect: 'postgres',
    query: (sql, params, options) => query(pool, sql, params, options),
    exec: (sql) => exec(pool, sql),
    async transaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('begin')
        const result = await fn({
          query: (sql, params, options) => query(client, sql, params, options),
          exec: (sql) => exec(client, sql),
        })
        await client.query('commit')
        return result
      } catch (error) {
        await client.query('rollback').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    },
    listen: (channel, onNotify) => listenPostgres(url, schema, channel, onNotify),
    close: () => pool.end(),
  }
}

/**
 * LISTEN on a connection of its own, outside the pool. A dropped connection is
 * replaced after a second, and `onNotify` is called then too, since
 * notifications sent meanwhile are lost.
 */
async function listenPostgres(
  url: string,
  schema: string | undefined,
  channel: string,
  onNotify: () => void,
): Promise<() => Promise<void>> {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`bad channel name ${channel}`)
  let client: pg.Client | undefined
  let stopped = false
  let retry: NodeJS.Timeout | undefined
  const connect = async (): Promise<void> => {
    const c = new pg.Client({
      connectionString: url,
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    })
    c.on('notification', (m) => {
      if (m.channel === channel) onNotify()
    })
    c.on('error', () => {
      if (stopped || client !== c) return
      client = undefined
      c.end().catch(() => {})
      retry = setTimeout(() => void reconnect(), 1000)
    })
    await c.connect()
    await c.query(`listen ${channel}`)
    client = c
  }
  const reconnect = async () => {
    if (stopped) return
    try {
      await connect()
      onNotify()
    } catch {
      retry = setTimeout(() => void reconnect(), 1000)
    }
  }
  await connect()
  return async () => {
    stopped = true
    clearTimeout(retry)
    await client?.end().catch(() => {})
  }
}
