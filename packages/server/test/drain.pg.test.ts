// A graceful restart: SIGTERM during a recording. The process stops taking
// publishers, lets the connected one record on for ONLINE_RECORD_DRAIN_S,
// then closes its segments cleanly and exits 0; the publisher reconnects to a
// second process on the same PostgreSQL and the task records on. No
// exception is counted, and the video holds both sides with only the
// reconnect between them. Runs when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import {
  blackSpans,
  download,
  publish,
  sleep,
  suiteServers,
  waitForStatus,
} from './media-helpers.ts'
import { startRequest, suiteSchema, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-drain-pg-')
const schema = suiteSchema('e2e_drain')

test('SIGTERM drains: the publisher moves to another process, ExceptionCnt 0, video on both sides', async (t) => {
  const env = { DATABASE_URL: schema.databaseUrl, ONLINE_RECORD_DRAIN_S: '3' }
  const old = await servers.start('shared', env)
  const next = await servers.start('shared', env)
  const client = tiwClient(next.url)
  const ids = { SdkAppId: TEST_APP.sdkAppId }
  const room = 9801
  const { TaskId } = await tiwClient(old.url).StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  const first = publish({ rtmp: old.rtmp, room, userId: 'alice', seconds: 60 })
  await waitForStatus(client, taskId, 'RECORDING')
  await sleep(4000)

  const termAt = Date.now()
  old.child.kill('SIGTERM')
  // While it drains, the old process takes no new task and no new publisher…
  await sleep(500)
  await assert.rejects(
    tiwClient(old.url).StartOnlineRecord(startRequest(room + 1)),
    (e: { code?: string }) => e.code === 'ResourceUnavailable',
  )
  // …and the connected one records on until the drain time is up.
  await first.exited
  const droppedAt = Date.now()
  assert.ok(droppedAt - termAt > 2500, `the publisher was kept ${droppedAt - termAt} ms`)
  // It exits by itself once the drain is over, with 0.
  const [code] = old.child.exitCode !== null ? [old.child.exitCode] : await once(old.child, 'exit')
  assert.equal(code, 0, old.output())

  // The publisher reconnects, to the process that is still up.
  const second = publish({ rtmp: next.rtmp, room, userId: 'alice', seconds: 60 })
  await sleep(5000)
  const during = await client.DescribeOnlineRecord({ ...ids, TaskId: taskId })
  assert.equal(during.Status, 'RECORDING')
  assert.equal(during.ExceptionCnt, 0, 'a drain is not a fault')
  await client.StopOnlineRecord({ ...ids, TaskId: taskId })
  const done = await waitForStatus(client, taskId, 'FINISHED')
  await second.stop()
  assert.equal(done.ExceptionCnt, 0)
  assert.equal(done.FinishReason, 'USER_CALL')
  const videos = done.VideoInfos as VideoInfo[]
  assert.equal(videos.length, 1, JSON.stringify(videos))
  const v = videos[0] as VideoInfo
  const got = await download(v.VideoUrl, servers.root)
  assert.equal(got.bytes, v.VideoSize)
  // Media before the SIGTERM (4 s + the 3 s drain) and after the reconnect
  // (5 s); between them only the reconnect, padded black.
  const black = (await blackSpans(got.file)).filter((b) => b.end - b.start >= 0.5)
  assert.ok(black.length <= 1, JSON.stringify(black))
  const gap = black[0]
  t.diagnostic(
    `kept ${droppedAt - termAt} ms after SIGTERM; video ${v.VideoDuration} ms, padded ${gap ? (gap.end - gap.start).toFixed(2) : 0} s at ${gap?.start ?? '-'} s`,
  )
  if (gap) {
    assert.ok(gap.start > 6, `media before the restart: ${gap.start} s`)
    assert.ok(gap.end - gap.start < 3, `the reconnect gap: ${gap.end - gap.start} s`)
    assert.ok(v.VideoDuration / 1000 - gap.end > 4, `media after the restart: ${gap.end} s`)
  }
  // Without a gap (the reconnect was within a frame or two), the video is the
  // whole of both sides.
  assert.ok(v.VideoDuration > 11_000, `${v.VideoDuration} ms`)
  assert.equal(await next.stop(), 0)
})
