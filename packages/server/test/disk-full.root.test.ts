// A full disk, for real: small tmpfs file systems mounted under the test's
// directory (which needs root; scripts/test.ts runs this suite only as root).
// The store on a full disk stops the start with one line saying so; media
// filling the disk while recording ends the task with EXCEPTION and a reason,
// and Stop still answers as it should.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { TestReceiver } from '../src/delivery/test-receiver.ts'
import { publish, sleep, suiteServers, waitForStatus } from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

// Unmounted before the servers' directory is removed: hooks run in the order they were added.
const mounted: string[] = []
after(() => {
  for (const m of mounted.reverse()) {
    try {
      execFileSync('umount', ['-l', m])
    } catch {}
  }
})
const servers = suiteServers('online-record-disk-full-')

/** A tmpfs of `size` at `dir`, optionally filled to the last byte. */
function tmpfs(dir: string, size: string, fill = false): void {
  mkdirSync(dir, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  mounted.push(dir)
  if (!fill) return
  try {
    writeFileSync(join(dir, 'filler'), Buffer.alloc(64 * 1024 * 1024))
  } catch {
    // ENOSPC: full, as intended.
  }
}

test('the store on a full disk: the start stops with one line naming the directory and the cause', async () => {
  const data = join(servers.root, 'full')
  tmpfs(data, '1m', true)
  const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
  const child = spawn(process.execPath, ['--conditions=@online-record/source', cli, 'serve'], {
    env: {
      ...process.env,
      ONLINE_RECORD_DATA_DIR: join(data, 'store'),
      ONLINE_RECORD_HTTP_PORT: '0',
      ONLINE_RECORD_RTMP_PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (c: Buffer) => {
    output += c
  })
  child.stderr.on('data', (c: Buffer) => {
    output += c
  })
  const [code] = await once(child, 'exit')
  assert.equal(code, 1)
  assert.match(
    output,
    /^online-record cannot start: cannot open the store in .*full\/store: no space left on the device \(0 MB free there\)\n$/,
  )
})

test('media filling the disk while recording: Stop answers, the task finishes with EXCEPTION and why', async () => {
  const data = join(servers.root, 'data')
  // The store on the real disk, the media directory on a 4 MB file system.
  tmpfs(join(data, 'media'), '4m')
  const server = await servers.start('data', { ONLINE_RECORD_POSTPROCESS_ATTEMPTS: '1' })
  const client = tiwClient(server.url)
  const receiver = await TestReceiver.start()
  await client.SetOnlineRecordCallback({ SdkAppId: TEST_APP.sdkAppId, Callback: receiver.url })
  const room = 9901
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const taskId = TaskId as string
  // About 0.5 MB a second of noise that does not compress: the disk is full in seconds.
  const heavy = publish({ rtmp: server.rtmp, room, userId: 'alice', seconds: 60, noise: true })
  for (let i = 0; i < 200; i++) {
    const d = await client.DescribeOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
    if (d.ExceptionCnt > 0) break
    await sleep(100)
  }
  // Stop answers: the task stops whatever the disk says (or had stopped already
  // because recording could not go on).
  try {
    await client.StopOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: taskId })
  } catch (error) {
    assert.equal((error as { code?: string }).code, 'UnsupportedOperation.TaskHasAlreadyStopped')
  }
  await heavy.kill()
  const done = await waitForStatus(client, taskId, 'FINISHED', 60_000).catch(
    (e: Error & { code?: string }) =>
      e.code === 'FailedOperation.Record' ? undefined : Promise.reject(e),
  )
  assert.equal(done, undefined, 'Describe answers FailedOperation.Record for a task that failed')
  await receiver.waitFor(
    () =>
      receiver.received.some(
        (r) => r.taskId === taskId && r.json.EventType === 'OnlineRecordFinished',
      ),
    30_000,
    'the Finished callback',
  )
  const finished = receiver.received.find(
    (r) => r.taskId === taskId && r.json.EventType === 'OnlineRecordFinished',
  )?.json.EventData as { FinishReason: string; Error: { Code: string; Message: string } }
  assert.equal(finished.FinishReason, 'EXCEPTION')
  assert.equal(finished.Error.Code, 'FailedOperation.Record')
  assert.match(finished.Error.Message, /No space left on device/i)
  assert.deepEqual(
    receiver.received.filter((r) => r.taskId === taskId).map((r) => r.json.EventType),
    ['OnlineRecordStarted', 'OnlineRecordStopped', 'OnlineRecordFinished'],
  )
  await receiver.close()
  assert.equal(await server.stop(), 0)
})
