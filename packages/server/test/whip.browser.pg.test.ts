// Two service processes on one PostgreSQL: a browser publishes through WHIP
// to one; the task is started, paused, resumed and stopped through the other,
// which the publishing process learns of from the store. Runs when
// TEST_DATABASE_URL is set and /usr/bin/chromium exists.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { launchBrowser } from './browser.ts'
import { download, pauseResumeStop, suiteServers } from './media-helpers.ts'
import { startRequest, suiteSchema, tiwClient } from './server-process.ts'
import {
  clientPage,
  publishersOf,
  publishFrom,
  servePage,
  sigOf,
  unpublishFrom,
  WHIP_ENV,
  whipUrl,
} from './whip-helpers.ts'

const servers = suiteServers('online-record-whip-pg-')
const schema = suiteSchema('e2e_whip')
const browser = await launchBrowser({ media: true })
const origin = await servePage()

test('a WHIP publisher on one process records a task controlled through another', async () => {
  const env = { ...WHIP_ENV, DATABASE_URL: schema.databaseUrl }
  const [control, media] = await Promise.all([
    servers.start('shared', env),
    servers.start('shared', env),
  ])
  const client = tiwClient(control.url)
  const room = 9702
  const page = await clientPage(browser, origin)
  const published = await publishFrom(page, {
    url: whipUrl(media.url, room, 'alice'),
    token: sigOf('alice'),
  })
  assert.equal(published.status, 201, published.reason)
  assert.equal(await publishersOf(media.url, 'whip'), 1)
  assert.equal(
    await publishersOf(control.url, 'whip'),
    0,
    'the controlling process holds no publisher',
  )
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const { pausedAt, done } = await pauseResumeStop(client, TaskId as string, {
    before: 4000,
    paused: 2000,
    after: 4000,
  })
  assert.equal(await unpublishFrom(page, published.location as string), 200)
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => v.UserId),
    ['alice'],
  )
  const v = videos[0] as VideoInfo
  assert.equal(done.OmittedDurations.length, 1)
  assert.ok(Math.abs((done.OmittedDurations[0]?.PauseTime ?? 0) - pausedAt) < 1000)
  assert.ok(v.VideoDuration > 5000 && v.VideoDuration < 9500, `${v.VideoDuration}`)
  const got = await download(v.VideoUrl, servers.root)
  assert.ok(
    Math.abs(got.durationMs - v.VideoDuration) <= 300,
    `${got.durationMs} vs ${v.VideoDuration}`,
  )
  for (const s of [control, media]) assert.equal(await s.stop(), 0)
})
