// Media acceptance with real processes: the classroom scenario with Concat,
// files in the local store served by the API.

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { concatScenario } from './media-scenario.ts'
import { type ServerProcess, startServer } from './server-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-media-'))
const servers: ServerProcess[] = []
after(async () => {
  for (const s of servers) await s.kill()
  rmSync(dir, { recursive: true, force: true })
})

test('two publishers, Concat, pause, a user leaving and returning: one spliced video each', async () => {
  const server = await startServer({
    ONLINE_RECORD_DATA_DIR: dir,
    ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
  })
  servers.push(server)
  await concatScenario(server, dir, 9101, (url) =>
    assert.ok(url.startsWith(`${server.url}/files/`), url),
  )
})
