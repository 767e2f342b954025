// Media acceptance with real processes: the classroom scenario with Concat,
// files in the local store served by the API.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { suiteServers } from './media-helpers.ts'
import { concatScenario } from './media-scenario.ts'

const servers = suiteServers('online-record-media-')

test('two publishers, Concat, pause, a user leaving and returning: one spliced video each', async () => {
  const server = await servers.start('data')
  await concatScenario(server, 9101, (url) =>
    assert.ok(url.startsWith(`${server.url}/files/`), url),
  )
})
