// The operator token of the admin API: ONLINE_RECORD_ADMIN_TOKEN when set
// (never written to disk; the CLI needs it in its environment too);
// otherwise one made at first start and kept in the store (so every process on
// one PostgreSQL accepts the same one), and written to `{dataDir}/admin-token`
// (mode 0600) for the CLI on the same machine. Where the running service is
// (its admin URL) is written beside it, in `{dataDir}/service.json`.
import { timingSafeEqual } from 'node:crypto'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const TOKEN_FILE = 'admin-token'
export const SERVICE_FILE = 'service.json'

/** What the CLI needs to reach the running service. */
export interface ServiceFile {
  url: string
  pid: number
  startedAtMs: number
}

export function writeTokenFile(dataDir: string, token: string): void {
  writeFileSync(join(dataDir, TOKEN_FILE), `${token}\n`, { mode: 0o600 })
}

export function removeTokenFile(dataDir: string): void {
  rmSync(join(dataDir, TOKEN_FILE), { force: true })
}

export function readTokenFile(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, TOKEN_FILE), 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

export function writeServiceFile(dataDir: string, service: ServiceFile): () => void {
  const file = join(dataDir, SERVICE_FILE)
  writeFileSync(file, JSON.stringify(service), { mode: 0o600 })
  return () => {
    if (readServiceFile(dataDir)?.pid === service.pid) rmSync(file, { force: true })
  }
}

export function readServiceFile(dataDir: string): ServiceFile | undefined {
  try {
    const s = JSON.parse(readFileSync(join(dataDir, SERVICE_FILE), 'utf8')) as ServiceFile
    return typeof s.url === 'string' && typeof s.pid === 'number' ? s : undefined
  } catch {
    return undefined
  }
}

/** Whether `header` (an Authorization header) carries `token` as a Bearer token; constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '')
  const expected = Buffer.from(token)
  return given.length === expected.length && timingSafeEqual(given, expected)
}
