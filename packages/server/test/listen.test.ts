// The developer CLI's `listen` receives, verifies and prints the callbacks of a
// real running server, as an app developer would use it.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { generateWebhookSecret } from '@online-record/protocol'
import { type Listener, startListener } from './listener.ts'
import {
  type ServerProcess,
  startRequest,
  startServer,
  TEST_APP,
  tiwClient,
} from './server-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-listen-'))
const secret = generateWebhookSecret()
let listener: Listener | undefined
let server: ServerProcess | undefined

after(async () => {
  listener?.stop()
  await server?.kill()
  rmSync(dir, { recursive: true, force: true })
})

test('listen prints the verified callbacks of a running server', async () => {
  listener = await startListener('--key', 'dev-key', '--secret', secret)
  const { url, waitFor } = listener

  server = await startServer({
    ONLINE_RECORD_DATA_DIR: dir,
    ONLINE_RECORD_APPS: JSON.stringify([{ ...TEST_APP, webhookSecret: secret }]),
  })
  const client = tiwClient(server.url)
  await client.SetOnlineRecordCallback({ SdkAppId: TEST_APP.sdkAppId, Callback: url })
  await client.SetOnlineRecordCallbackKey({ SdkAppId: TEST_APP.sdkAppId, CallbackKey: 'dev-key' })
  const { TaskId } = await client.StartOnlineRecord(startRequest(9101))
  await client.StopOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string })
  const types = ['OnlineRecordStarted', 'OnlineRecordStopped', 'OnlineRecordFinished']
  for (const [i, type] of types.entries()) {
    await waitFor(
      new RegExp(
        `✔ ${type} {2}task ${TaskId} .* verified by webhook-signature {2}id evt_[0-9a-f]{32} {2}seq ${i + 1}\n`,
      ),
    )
  }
  assert.doesNotMatch(listener.output(), /refused/)
  assert.equal(await server.stop(), 0)
})
