// A real server process with paused tasks is killed with SIGKILL; its timers
// come due while it is down, and fire exactly once after the restart.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { openDb } from '../src/store/db.ts'
import {
  assertLongPauseOutbox,
  startPausedTasks,
  startServer,
  tiwClient,
  waitFinished,
} from './server-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-restart-'))
after(() => rmSync(dir, { recursive: true, force: true }))

// Short long-pause thresholds (deployment settings) so the real processes need
// only seconds; the lifecycle at the real 20/30 minutes is covered with a
// moved clock in the engine suite.
const env = {
  ONLINE_RECORD_DATA_DIR: dir,
  ONLINE_RECORD_PAUSE_WARNING_S: '2',
  ONLINE_RECORD_PAUSE_STOP_S: '4',
  ONLINE_RECORD_TIMER_INTERVAL_MS: '100',
}

test('timers of paused tasks fire once after a SIGKILL and a restart', async () => {
  const first = await startServer(env)
  const taskIds = await startPausedTasks([tiwClient(first.url)], 7001, 5)
  await first.kill()
  await new Promise((r) => setTimeout(r, 4500)) // both timers come due while no process runs

  const second = await startServer(env)
  await waitFinished(tiwClient(second.url), taskIds)
  assert.equal(await second.stop(), 0)

  const db = await openDb({ dataDir: dir })
  try {
    await assertLongPauseOutbox(db, taskIds)
    const [timers] = await db.query<{ n: number }>('select count(*)::int4 as n from timers')
    assert.equal(timers?.n, 0)
  } finally {
    await db.close()
  }
})
