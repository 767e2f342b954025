// A real server process sends its callbacks to a real receiver: every event
// type, signed both ways, retried, listed and resent through the official
// client's generic request and through the CLI, and kept across a restart.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { actions, generateWebhookSecret } from '@online-record/protocol'
import { Webhook } from 'standardwebhooks'
import { assertSeedCallback, TestReceiver } from '../src/delivery/test-receiver.ts'
import {
  type ServerProcess,
  startRequest,
  startServer,
  TEST_APP,
  tiwClient,
  waitFinished,
} from './server-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-callbacks-'))
const KEY = 'Xz4ZgayTr7rMgWQrH'
const APP = { ...TEST_APP, webhookSecret: generateWebhookSecret() }
const env = {
  ONLINE_RECORD_DATA_DIR: dir,
  ONLINE_RECORD_APPS: JSON.stringify([APP]),
  ONLINE_RECORD_PAUSE_WARNING_S: '1',
  ONLINE_RECORD_PAUSE_STOP_S: '2',
  ONLINE_RECORD_TIMER_INTERVAL_MS: '50',
  ONLINE_RECORD_CALLBACK_RETRY_S: '1,1,1',
}
const bin = fileURLToPath(new URL('../bin/online-record.js', import.meta.url))
let receiver: TestReceiver
let server: ServerProcess | undefined

after(async () => {
  await server?.kill()
  await receiver?.close()
  rmSync(dir, { recursive: true, force: true })
})

type Tiw = ReturnType<typeof tiwClient>
const ext = async <T>(client: Tiw, action: string, params: object): Promise<T> =>
  (await client.request(action, { SdkAppId: APP.sdkAppId, ...params })) as T

test('a real server delivers every event, signed, retries, and resends on demand', async () => {
  receiver = await TestReceiver.start()
  server = await startServer(env)
  const client = tiwClient(server.url)
  await client.SetOnlineRecordCallback({ SdkAppId: APP.sdkAppId, Callback: receiver.url })
  await client.SetOnlineRecordCallbackKey({ SdkAppId: APP.sdkAppId, CallbackKey: KEY })

  // A: a long pause (five events); B: start and stop, its first callback
  // refused once; C: a bad RecordUserSig (one Finished with Error).
  const { TaskId: a } = await client.StartOnlineRecord(startRequest(9001))
  await client.PauseOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: a as string })
  const { TaskId: b } = await client.StartOnlineRecord(startRequest(9002))
  receiver.answer = (r, n) => (r.taskId === b && r.seq === 1 && n === 0 ? { status: 503 } : {})
  await client.StopOnlineRecord({ SdkAppId: APP.sdkAppId, TaskId: b as string })
  const { TaskId: c } = await client.StartOnlineRecord({
    ...startRequest(9003),
    RecordUserSig: 'expired-or-forged',
  })
  await waitFinished(client, [a, b] as string[])
  await receiver.waitFor(() => receiver.ids().size === 9, 15_000, 'nine events')

  const byTask = (t: unknown) => receiver.received.filter((r) => r.taskId === t)
  assert.deepEqual(
    byTask(a).map((r) => [r.seq, r.json.EventType]),
    [
      [1, 'OnlineRecordStarted'],
      [2, 'OnlineRecordLongPauseWarning'],
      [3, 'OnlineRecordLongPauseForceStopped'],
      [4, 'OnlineRecordStopped'],
      [5, 'OnlineRecordFinished'],
    ],
  )
  // B's Started failed once and was retried before Stopped went.
  assert.deepEqual(
    byTask(b).map((r) => [r.seq, r.attempt]),
    [
      [1, 1],
      [1, 2],
      [2, 1],
      [3, 1],
    ],
  )
  const failed = byTask(c)
  assert.equal(failed.length, 1)
  assert.equal(
    (failed[0]?.json.EventData as { Error?: { Code: string } } | undefined)?.Error?.Code,
    'FailedOperation.Record',
  )

  const reference = new Webhook(APP.webhookSecret)
  for (const r of receiver.received) {
    const expire = assertSeedCallback(r, KEY, r.taskId === c)
    assert.equal(r.json.SdkAppId, APP.sdkAppId)
    assert.ok(
      Math.abs(expire - (Date.now() / 1000 + 600)) < 30,
      'ExpireTime is attempt time + 600 s',
    )
    assert.deepEqual(reference.verify(r.body, r.headers as Record<string, string>), r.json)
  }

  // The attempt log and redelivery through the same signed API.
  const list = await ext<{
    Total: number
    Events: { EventId: string; TaskId: string; Seq: number; State: string }[]
  }>(client, 'ExtDescribeCallbacks', { TaskId: b })
  actions.ExtDescribeCallbacks.response.parse(list) // the documented shape, strictly
  assert.equal(list.Total, 3)
  assert.ok(list.Events.every((e) => e.State === 'DELIVERED'))
  const started = list.Events.find((e) => e.Seq === 1)?.EventId as string
  const attempts = await ext<{
    Attempts: { Attempt: number; Status: number | null }[]
    EventData: object
  }>(client, 'ExtDescribeCallbackAttempts', { EventId: started })
  assert.deepEqual(
    attempts.Attempts.map((x) => [x.Attempt, x.Status]),
    [
      [1, 503],
      [2, 200],
    ],
  )
  actions.ExtDescribeCallbackAttempts.response.parse(attempts)
  assert.deepEqual(attempts.EventData, byTask(b)[0]?.json.EventData)
  const resent = await ext<{ EventIds: string[] }>(client, 'ExtResendCallbacks', {
    EventIds: [started],
  })
  assert.deepEqual(resent.EventIds, [started])
  await receiver.waitFor(() => byTask(b).length === 5, 10_000, 'the resent event')
  assert.deepEqual([byTask(b).at(-1)?.id, byTask(b).at(-1)?.attempt], [started, 3])
  await assert.rejects(
    ext(client, 'ExtResendCallbacks', { EventIds: [started, 'evt_nope'] }),
    (e: { code?: string }) => e.code === 'ResourceNotFound',
  )
  await assert.rejects(
    ext(client, 'ExtResendCallbacks', {}),
    (e: { code?: string }) => e.code === 'InvalidParameter',
  )
  assert.equal(await server.stop(), 0)

  // With the service stopped, the CLI reads the same store and resends;
  // the next start delivers it.
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [bin, 'callbacks', ...args], {
      encoding: 'utf8',
      env: { ...process.env, ONLINE_RECORD_DATA_DIR: dir },
    })
  const listed = cli('list', '--app', String(APP.sdkAppId), '--task', a as string, '--json')
  assert.equal(listed.status, 0, listed.stderr)
  const events = (
    JSON.parse(listed.stdout) as { events: { eventId: string; state: string; seq: number }[] }
  ).events
  assert.deepEqual(
    events.map((e) => [e.seq, e.state]),
    [5, 4, 3, 2, 1].map((seq) => [seq, 'delivered']),
  )
  const table = cli('list', '--state', 'delivered', '--since', '1h')
  assert.equal(table.status, 0, table.stderr)
  assert.match(table.stdout, /EVENT\s+TASK\s+SEQ\s+TYPE\s+STATE/)
  assert.match(table.stdout, /of 9 shown/)
  const shown = cli('show', started)
  assert.equal(shown.status, 0, shown.stderr)
  assert.deepEqual(
    (JSON.parse(shown.stdout) as { attemptLog: { status: number }[] }).attemptLog.map(
      (x) => x.status,
    ),
    [503, 200, 200],
  )
  const warning = events.find((e) => e.seq === 2)?.eventId as string
  const again = cli('resend', warning)
  assert.equal(again.status, 0, again.stderr)
  assert.match(again.stdout, /1 event will be sent again now/)
  for (const bad of [
    ['resend'],
    ['list', '--state', 'lost'],
    ['list', '--since', 'yesterday'],
    ['show'],
  ]) {
    assert.equal(cli(...bad).status, 2, bad.join(' '))
  }
  assert.equal(cli('resend', 'evt_nope').status, 1)

  server = await startServer(env)
  await receiver.waitFor(
    () => receiver.received.filter((r) => r.id === warning).length === 2,
    15_000,
    'the event resent from the CLI',
  )
  assert.equal(await server.stop(), 0)
})
