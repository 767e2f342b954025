// Databases for tests: PGlite in memory, or a fresh schema on TEST_DATABASE_URL
// that is dropped again on close.
import { randomBytes } from 'node:crypto'
import type { Clock } from '../clock.ts'
import { type Db, openDb } from './db.ts'
import { migrate } from './migrations.ts'

export type TestDbFactory = {
  name: string
  /** Opens a migrated database; `reopen` gives another connection to the same data. */
  open(clock: Clock): Promise<{ db: Db; reopen(): Promise<Db>; dispose(): Promise<void> }>
}

export const pgliteFactory: TestDbFactory = {
  name: 'PGlite',
  async open(clock) {
    const { mkdtempSync, rmSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = mkdtempSync(join(tmpdir(), 'online-record-test-'))
    let db = await openDb({ dataDir: dir })
    await migrate(db, clock)
    return {
      db,
      // PGlite allows one instance per directory: the old one is closed first.
      async reopen() {
        await db.close()
        db = await openDb({ dataDir: dir })
        return db
      },
      async dispose() {
        await db.close().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      },
    }
  },
}

export function postgresFactory(url: string): TestDbFactory {
  return {
    name: 'PostgreSQL',
    async open(clock) {
      const schema = `test_${randomBytes(6).toString('hex')}`
      const admin = await openDb({ databaseUrl: url, poolSize: 1 })
      await admin.exec(`create schema ${schema}`)
      const opened: Db[] = []
      const connect = async () => {
        const db = await openDb({ databaseUrl: url, schema, poolSize: 5 })
        opened.push(db)
        return db
      }
      const db = await connect()
      await migrate(db, clock)
      return {
        db,
        reopen: connect,
        async dispose() {
          for (const d of opened) await d.close().catch(() => {})
          await admin.exec(`drop schema ${schema} cascade`)
          await admin.close()
        },
      }
    },
  }
}
