// Post-processing runs on its own pool, through the real server: Stop answers
// once the task is STOPPED, and while one task's post-processing is held up
// (here by a pad image whose server does not answer yet), another app's
// timers fire on time; while one app's heavy mixes run, another app's task
// is post-processed beside them.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { genUserSig } from '../src/apps/usersig.ts'
import { mixUnsupported } from '../src/media/post/mix.ts'
import { mixers, publish, sleep, suiteServers, tools, waitForStatus } from './media-helpers.ts'
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

test("one app's heavy post-processing never holds every slot: another app's short recording finishes right after its stop", async (t) => {
  if (await mixUnsupported(tools)) {
    return t.diagnostic('this ffmpeg cannot mix: the refusal is tested in mix.test.ts')
  }
  // App OTHER stops two classes with a heavy mixed video each (a 3000x3000
  // canvas on one encoder thread); then TEST_APP stops a short recording.
  // Default pool: 2 slots, 1 per app.
  const server = await servers.start('fair', {
    ONLINE_RECORD_APPS: JSON.stringify([TEST_APP, OTHER]),
    ONLINE_RECORD_MIX_THREADS: '1',
  })
  const heavy = tiwClient(server.url, OTHER)
  const light = tiwClient(server.url)
  const publishers = [9411, 9412].map((room) =>
    publish({ rtmp: server.rtmp, room, userId: 'teacher', seconds: 60, app: OTHER }),
  )
  const b = publish({ rtmp: server.rtmp, room: 9413, userId: 'bob', seconds: 60 })
  await sleep(1500)
  const heavyTasks: string[] = []
  for (const room of [9411, 9412]) {
    const user = `tic_record_user_${room}_other`
    const { TaskId } = await heavy.StartOnlineRecord({
      SdkAppId: OTHER.sdkAppId,
      RoomId: room,
      RecordUserId: user,
      RecordUserSig: genUserSig(OTHER.sdkAppId, OTHER.userSigKey, user, 3600),
      MixStream: {
        Enabled: true,
        Custom: {
          Canvas: { LayoutParams: { Width: 3000, Height: 3000 } },
          InputStreamList: [{ LayoutParams: { Width: 3000, Height: 3000 } }],
        },
      },
      Extras: ['MIX_STREAM'],
    })
    heavyTasks.push(TaskId as string)
  }
  await sleep(5000)
  const { TaskId: shortTask } = await light.StartOnlineRecord(startRequest(9413))
  await sleep(3000)
  for (const TaskId of heavyTasks)
    await heavy.StopOnlineRecord({ SdkAppId: OTHER.sdkAppId, TaskId })
  // OTHER's first mix is under way (its second waits: one slot per app).
  const serverPid = server.child.pid as number
  const deadline = Date.now() + 120_000
  while (mixers(serverPid).length === 0) {
    assert.ok(Date.now() < deadline, `no mix began:\n${server.output()}`)
    await sleep(50)
  }
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: shortTask as string }
  const stopped = performance.now()
  await light.StopOnlineRecord(ids)
  const done = await waitForStatus(light, ids.TaskId, 'FINISHED', 120_000)
  const afterStopS = (performance.now() - stopped) / 1000
  const states = await Promise.all(
    heavyTasks.map(
      async (TaskId) =>
        (await heavy.DescribeOnlineRecord({ SdkAppId: OTHER.sdkAppId, TaskId })).Status,
    ),
  )
  assert.deepEqual(states, ['STOPPED', 'STOPPED'], "OTHER's mixes were still being made")
  assert.equal(mixers(serverPid).length, 1, 'one mix of OTHER at a time')
  assert.deepEqual(
    done.VideoInfos.map((v) => v.UserId),
    ['bob'],
  )
  t.diagnostic(`TEST_APP's task finished ${afterStopS.toFixed(1)} s after its stop`)

  // OTHER's classes are not starved either: each gets its mixed video.
  for (const TaskId of heavyTasks) {
    const d = await waitForStatus(heavy, TaskId, 'FINISHED', 300_000, OTHER.sdkAppId)
    assert.ok(
      d.VideoInfos.some((v) => v.VideoType === 3),
      JSON.stringify(d.VideoInfos),
    )
  }
  await Promise.all([...publishers, b].map((p) => p.kill()))
  assert.equal(await server.stop(), 0)
})
