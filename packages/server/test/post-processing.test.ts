// Post-processing runs on its own pool, through the real server: Stop answers
// once the task is STOPPED, and while one task's post-processing is held up
// (here by a pad image whose server does not answer yet), another app's
// timers fire on time.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { genUserSig } from '../src/apps/usersig.ts'
import { publish, sleep, suiteServers, waitForStatus } from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-post-')

const OTHER = {
  sdkAppId: 1400000077,
  secretId: 'AKIDe2eother000000000077',
  secretKey: 'e2e-other-secret-key-00000000077',
  userSigKey: 'd'.repeat(64),
}

test('Stop does not wait for post-processing, and timers do not wait for it either', async () => {
  // The pad image's server holds every answer until the test lets it go.
  const held: ServerResponse[] = []
  const images = createServer((_req, res) => {
    held.push(res)
  })
  images.listen(0, '127.0.0.1')
  await once(images, 'listening')
  const image = `http://127.0.0.1:${(images.address() as AddressInfo).port}/pad.png`
  try {
    const server = await servers.start('data', {
      ONLINE_RECORD_MIN_AUTO_STOP_TIMEOUT_S: '1',
      ONLINE_RECORD_APPS: JSON.stringify([TEST_APP, OTHER]),
    })
    const client = tiwClient(server.url)
    const ids = (taskId: string) => ({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
    const room = 9301
    const { TaskId } = await client.StartOnlineRecord({
      ...startRequest(room),
      Concat: { Enabled: true, Image: image },
    })
    const taskId = TaskId as string
    // Two spans with an absence between them: the spliced video needs a pad.
    const first = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 2.5 })
    await first.exited
    await sleep(1000)
    const second = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 2.5 })
    await second.exited
    await client.StopOnlineRecord(ids(taskId))
    assert.equal((await client.DescribeOnlineRecord(ids(taskId))).Status, 'STOPPED')
    // Post-processing now waits on the pad image.
    const deadline = Date.now() + 30_000
    while (held.length === 0 && Date.now() < deadline) await sleep(50)
    assert.equal(held.length, 1, 'post-processing asked for the pad image')

    // Meanwhile another app's task goes idle: its timer fires at once (its
    // post-processing then waits for a place in the pool, after the first).
    const otherClient = tiwClient(server.url, OTHER)
    const user = 'tic_record_user_9302_other'
    const { TaskId: idle } = await otherClient.StartOnlineRecord({
      SdkAppId: OTHER.sdkAppId,
      RoomId: 9302,
      RecordUserId: user,
      RecordUserSig: genUserSig(OTHER.sdkAppId, OTHER.userSigKey, user, 3600),
      AutoStopTimeout: 1,
    })
    const stopped = Date.now()
    for (;;) {
      const d = await otherClient.DescribeOnlineRecord({
        SdkAppId: OTHER.sdkAppId,
        TaskId: idle as string,
      })
      if (d.Status === 'STOPPED') {
        assert.equal(d.FinishReason, 'AUTO')
        break
      }
      assert.ok(Date.now() - stopped < 20_000, `the idle task is ${d.Status}`)
      await sleep(100)
    }
    assert.equal(
      (await client.DescribeOnlineRecord(ids(taskId))).Status,
      'STOPPED',
      'the first task is still being post-processed',
    )

    // The image arrives (not a usable image: black pads); the first task finishes too.
    for (const res of held) res.end('not an image')
    const done = await waitForStatus(client, taskId, 'FINISHED', 60_000)
    assert.equal(done.FinishReason, 'USER_CALL')
    assert.equal(done.VideoInfos.length, 1)
    const after = await otherClient.DescribeOnlineRecord({
      SdkAppId: OTHER.sdkAppId,
      TaskId: idle as string,
    })
    assert.notEqual(after.Status, 'RECORDING')
    assert.equal(await server.stop(), 0)
  } finally {
    images.closeAllConnections()
    images.close()
  }
})
