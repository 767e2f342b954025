// Nothing lost in silence, through the real service: a process that stalls
// while it records (stopped by a signal, as a paused VM or a host under
// memory pressure would) and a publisher refused for its codec each count on
// the task (ExceptionCnt) with a reason the operator reads in the task's
// problems (the admin API), and what was recorded is kept.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { genUserSig } from '../src/apps/usersig.ts'
import { download, publish, sleep, suiteServers, tools, waitForStatus } from './media-helpers.ts'
import { type ServerProcess, startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-nothing-lost-')

/** The task as the admin API shows it, with its problems. */
async function adminTask(
  server: ServerProcess,
  dir: string,
  taskId: string,
): Promise<{ problems: { streamId?: string; message: string }[] }> {
  const token = readFileSync(join(servers.root, dir, 'admin-token'), 'utf8').trim()
  const r = await fetch(`${server.url}/admin/v1/tasks/${taskId}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  assert.equal(r.status, 200)
  return ((await r.json()) as { task: { problems: { streamId?: string; message: string }[] } }).task
}

test('a process stopped for 4 s while it records: the task counts it, says why, and keeps the media', async () => {
  const server = await servers.start('stall', { ONLINE_RECORD_STALL_S: '2' })
  const client = tiwClient(server.url)
  const room = 9961
  const alice = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 30 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await sleep(3000)
  server.child.kill('SIGSTOP')
  await sleep(4000)
  server.child.kill('SIGCONT')
  await sleep(3000)
  await client.StopOnlineRecord(ids)
  await alice.stop()
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 60_000)
  assert.ok(done.ExceptionCnt >= 1, `ExceptionCnt ${done.ExceptionCnt}`)
  const task = await adminTask(server, 'stall', ids.TaskId)
  assert.ok(
    task.problems.some((p) => /process stalled for [3-9]\.\d s while recording/.test(p.message)),
    JSON.stringify(task.problems),
  )
  // The publisher's media waited in the network meanwhile: the video spans the recording.
  const [video] = done.VideoInfos as VideoInfo[]
  assert.ok(video)
  const file = await download(video.VideoUrl, servers.root)
  assert.ok(
    Math.abs(video.VideoPlayTime + file.durationMs - done.TotalTime) <= 1500,
    `${video.VideoPlayTime} + ${file.durationMs} ≈ ${done.TotalTime}`,
  )
})

test('a publisher refused for its codec: the task counts it and says which and why', async () => {
  const server = await servers.start('codec')
  const client = tiwClient(server.url)
  const room = 9962
  const { TaskId } = await client.StartOnlineRecord(startRequest(room))
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  const bob = publish({ rtmp: server.rtmp, room, userId: 'bob', seconds: 30 })
  // Sorenson Spark (FLV1) video: FLV carries it, the recorder does not take it.
  const sig = genUserSig(TEST_APP.sdkAppId, TEST_APP.userSigKey, 'carol', 3600)
  const carol = spawn(
    tools.ffmpeg,
    [
      ...['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi'],
      ...['-i', 'testsrc=size=320x240:rate=15', '-t', '10', '-c:v', 'flv1', '-f', 'flv'],
      `${server.rtmp}/push/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=carol&usersig=${sig}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  carol.stderr.resume()
  const [code] = (await once(carol, 'exit')) as [number | null]
  assert.notEqual(code, 0, 'the publisher was refused')
  await sleep(2000)
  await client.StopOnlineRecord(ids)
  await bob.stop()
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 60_000)
  assert.equal(done.ExceptionCnt, 1)
  assert.deepEqual(
    (done.VideoInfos as VideoInfo[]).map((v) => v.UserId),
    ['bob'],
  )
  const task = await adminTask(server, 'codec', ids.TaskId)
  assert.ok(
    task.problems.some(
      (p) => p.streamId === 'carol' && /carol was refused: .* is not recorded/.test(p.message),
    ),
    JSON.stringify(task.problems),
  )
})
