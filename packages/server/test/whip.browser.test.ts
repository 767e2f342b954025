// WHIP ingest end to end with Debian's chromium and its fake camera and
// microphone, publishing from a page that is not the service's (a minimal
// WHIP client: RTCPeerConnection and fetch, served from another origin, so
// CORS is exercised): one H.264 and one VP8 camera, a canvas screen share as
// a sub-stream, and an RTMP publisher in the same room; a task through the
// official client with Concat, a pause and a resume. Then every refusal, a
// closed tab, and capacity. Runs where /usr/bin/chromium exists (CI installs it).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { genUserSig } from '../src/apps/usersig.ts'
import { probe } from '../src/media/ffmpeg/probe.ts'
import { launchBrowser } from './browser.ts'
import {
  childProcesses,
  download,
  publish,
  segmentEnds,
  sleep,
  suiteServers,
  taskEvents,
  tools,
  waitForStatus,
} from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'
import {
  abandonedOffer,
  clientPage as clientPageOf,
  type Outcome,
  publishersOf,
  publishFrom,
  servePage,
  sigOf,
  unpublishFrom,
  WHIP_ENV,
  whipUrl,
} from './whip-helpers.ts'

const servers = suiteServers('online-record-whip-')
const browser = await launchBrowser({ media: true })
const pageOrigin = await servePage()
const clientPage = () => clientPageOf(browser, pageOrigin)

/** A frame of `file` at `seconds`, grey, at its own size. */
function greyFrame(file: string, seconds: number): Buffer {
  const run = spawnSync(
    tools.ffmpeg,
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-i',
      file,
      '-vf',
      'fps=30',
      '-ss',
      String(seconds),
    ].concat(['-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1']),
    { maxBuffer: 64 * 1024 * 1024 },
  )
  return run.stdout
}

/** Pixels that differ clearly between the frames at `at` and `at + apart` (a live picture, not a frozen one). */
function changedPixels(file: string, at: number, apart: number): number {
  const a = greyFrame(file, at)
  const b = greyFrame(file, at + apart)
  assert.ok(a.length > 0 && a.length === b.length, 'two frames read')
  let n = 0
  for (let i = 0; i < a.length; i++) if (Math.abs((a[i] as number) - (b[i] as number)) > 40) n++
  return n
}

test('two browsers over WHIP (H.264 and VP8), a screen share and an RTMP publisher in one class, paused and resumed', async () => {
  const server = await servers.start('class', WHIP_ENV)
  const client = tiwClient(server.url)
  const room = 9401
  const alice = await clientPage()
  const bob = await clientPage()
  const obs = publish({ rtmp: server.rtmp, room, userId: 'obs', seconds: 90 })
  const a = await publishFrom(alice, {
    url: whipUrl(server.url, room, 'alice'),
    token: sigOf('alice'),
    codec: 'H264',
  })
  assert.equal(a.status, 201, a.reason)
  const b = await publishFrom(bob, {
    url: whipUrl(server.url, room, 'bob'),
    token: sigOf('bob'),
    codec: 'VP8',
  })
  assert.equal(b.status, 201, b.reason)
  const share = await publishFrom(alice, {
    url: whipUrl(server.url, room, 'alice', true),
    token: sigOf('alice'),
    canvas: true,
  })
  assert.equal(share.status, 201, share.reason)
  assert.equal(await publishersOf(server.url, 'whip'), 3)
  await sleep(1000)

  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Concat: { Enabled: true },
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await sleep(6000)
  await client.PauseOnlineRecord(ids)
  const pausedAt = performance.now()
  await sleep(3000)
  await client.ResumeOnlineRecord(ids)
  const pauseMs = performance.now() - pausedAt
  await sleep(2000)
  // The shared screen changes size mid-stream: the file goes on, whole.
  await alice.evaluate(() =>
    (globalThis as unknown as { resizeShare(w: number, h: number): void }).resizeShare(960, 540),
  )
  await sleep(4000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 180_000)
  for (const [page, outcome] of [
    [alice, a],
    [bob, b],
    [alice, share],
  ] as const) {
    const status = await unpublishFrom(page, outcome.location as string)
    assert.equal(status, 200, 'DELETE ends the publish')
  }
  await obs.stop()

  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(videos.map((v) => `${v.UserId}/${v.VideoType}`).sort(), [
    'alice/0',
    'bob/0',
    'obs/0',
    'tic_substream_alice/1',
  ])
  assert.equal(done.OmittedDurations.length, 1, 'one pause')
  const cut = done.OmittedDurations[0]
  const omitted = cut ? cut.ResumeTime - cut.PauseTime : 0
  assert.ok(Math.abs(omitted - pauseMs) <= 1000, `omitted ${omitted} ms, paused ${pauseMs} ms`)
  for (const v of videos) {
    const got = await download(v.VideoUrl, servers.root)
    assert.ok(
      Math.abs(got.durationMs - v.VideoDuration) <= 300,
      `${v.UserId}: file ${got.durationMs} ms, stated ${v.VideoDuration} ms`,
    )
    const info = await probe(tools.ffprobe, got.file)
    assert.equal(info.video?.codec, 'h264', `${v.UserId}: H.264 in the MP4`)
    if (v.VideoType === 0) assert.equal(info.audio?.codec, 'aac', `${v.UserId}: audio`)
    // Frames 3 s apart differ: the camera's clock and pie, the canvas's box and text move.
    const changed = changedPixels(got.file, 1, 3)
    assert.ok(changed > 200, `${v.UserId}: frames 3 s apart differ (${changed} pixels changed)`)
  }
  const alicePicture = videos.find((v) => v.UserId === 'alice') as VideoInfo
  assert.deepEqual([alicePicture.Width, alicePicture.Height], [640, 480])

  await server.kill()
  const events = await taskEvents(join(servers.root, 'class'), ids.TaskId)
  const finished = events.find((e) => e.eventType === 'OnlineRecordFinished')
  const listed = ((finished?.eventData.VideoInfos as VideoInfo[] | undefined) ?? []).map(
    (v) => v.UserId,
  )
  assert.deepEqual(listed.sort(), ['alice', 'bob', 'obs', 'tic_substream_alice'])
  const ends = await segmentEnds(join(servers.root, 'class'), ids.TaskId)
  assert.deepEqual(
    ends.get('tic_substream_alice'),
    ['pause', 'codec-change', 'stop'],
    'the new picture size started a new segment, joined in the one video',
  )
})

test('refusals get their status and record nothing; a closed tab ends its publish within 5 s with a valid file', async (t) => {
  const server = await servers.start('refusals', WHIP_ENV)
  const client = tiwClient(server.url)
  const room = 9402
  const { TaskId } = await client.StartOnlineRecord(startRequest(room))
  const url = whipUrl(server.url, room, 'carol')
  const page = await clientPage()
  const post = (headers: Record<string, string>, body: string, to = url) =>
    fetch(to, { method: 'POST', headers, body })
  const offer = await page.evaluate(async () => {
    type Pc = {
      addTransceiver(kind: string, init: object): void
      createOffer(): Promise<{ sdp?: string }>
      close(): void
    }
    const pc = new (
      globalThis as unknown as { RTCPeerConnection: new () => Pc }
    ).RTCPeerConnection()
    pc.addTransceiver('video', { direction: 'sendonly' })
    const o = await pc.createOffer()
    pc.close()
    return o.sdp as string
  })
  const sdp = { 'content-type': 'application/sdp' }
  const cases: [string, Promise<Response>, number][] = [
    ['no token', post(sdp, offer), 401],
    ['a forged token', post({ ...sdp, authorization: 'Bearer forged' }, offer), 401],
    [
      "another app's UserSig",
      post(
        {
          ...sdp,
          authorization: `Bearer ${genUserSig(1400009999, 'd'.repeat(64), 'carol', 3600)}`,
        },
        offer,
      ),
      401,
    ],
    [
      'a body that is not SDP',
      post({ 'content-type': 'application/json', authorization: `Bearer ${sigOf('carol')}` }, '{}'),
      415,
    ],
    [
      'an SDP without media',
      post(
        { ...sdp, authorization: `Bearer ${sigOf('carol')}` },
        offer.split(/\r\n(?=m=)/)[0] as string,
      ),
      400,
    ],
    [
      'an offer over 64 KiB',
      post(
        { ...sdp, authorization: `Bearer ${sigOf('carol')}` },
        `${offer}${'a=x\r\n'.repeat(20_000)}`,
      ),
      413,
    ],
    ['a bad stream type', post(sdp, offer, `${url}&streamtype=side`), 400],
  ]
  for (const [name, pending, status] of cases) {
    const res = await pending
    assert.equal(res.status, status, `${name}: ${await res.clone().text()}`)
    const reason = await res.text()
    assert.ok(reason.trim().length > 5 && !reason.includes('\n\n'), `${name}: a one-line reason`)
    if (status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
  }
  assert.equal(await publishersOf(server.url, 'whip'), 0, 'nothing was admitted')

  // CORS preflight: a page elsewhere may send Authorization and read Location.
  const pre = await fetch(url, {
    method: 'OPTIONS',
    headers: {
      origin: pageOrigin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    },
  })
  assert.equal(pre.status, 204)
  assert.equal(pre.headers.get('access-control-allow-origin'), pageOrigin)
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /Authorization/)
  assert.match(pre.headers.get('access-control-expose-headers') ?? '', /Location/)

  // A real publish; the same stream again is a conflict; PATCH is not supported.
  const ok = await publishFrom(page, { url, token: sigOf('carol'), codec: 'H264' })
  assert.equal(ok.status, 201, ok.reason)
  const again = await publishFrom(await clientPage(), { url, token: sigOf('carol') })
  assert.equal(again.status, 409, again.reason)
  const session = ok.location as string
  const patch = await fetch(session, {
    method: 'PATCH',
    headers: { 'content-type': 'application/trickle-ice-sdpfrag' },
    body: 'a=end-of-candidates\r\n',
  })
  assert.equal(patch.status, 405)
  const wrongDelete = await fetch(session, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${sigOf('mallory')}` },
  })
  assert.equal(wrongDelete.status, 401, 'DELETE checks the token again')
  const guessed = await fetch(`${server.url}/whip/session/not-a-session`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${sigOf('carol')}` },
  })
  assert.equal(guessed.status, 404)

  // The tab closes without DELETE: the publish ends on RTP silence.
  await sleep(4000)
  const closed = performance.now()
  await page.close()
  let endedMs = Number.POSITIVE_INFINITY
  while (performance.now() - closed < 15_000) {
    if ((await publishersOf(server.url, 'whip')) === 0) {
      endedMs = performance.now() - closed
      break
    }
    await sleep(100)
  }
  assert.ok(endedMs <= 5000, `the publish ended ${Math.round(endedMs)} ms after the tab closed`)
  t.diagnostic(`the publish ended ${Math.round(endedMs)} ms after the tab closed`)
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual(
    videos.map((v) => v.UserId),
    ['carol'],
    'only the admitted publish is recorded',
  )
  const v = videos[0] as VideoInfo
  const got = await download(v.VideoUrl, servers.root)
  assert.ok(
    Math.abs(got.durationMs - v.VideoDuration) <= 300,
    `${got.durationMs} vs ${v.VideoDuration}`,
  )
  assert.ok(v.VideoDuration > 3000, `${v.VideoDuration} ms recorded before the tab closed`)
})

test('at capacity a publish is refused with 503 and Retry-After', async () => {
  const server = await servers.start('capacity', {
    ...WHIP_ENV,
    ONLINE_RECORD_WHIP_MAX_PUBLISHERS: '1',
  })
  const room = 9403
  const page = await clientPage()
  const first = await publishFrom(page, {
    url: whipUrl(server.url, room, 'dave'),
    token: sigOf('dave'),
  })
  assert.equal(first.status, 201, first.reason)
  const second = await publishFrom(await clientPage(), {
    url: whipUrl(server.url, room, 'erin'),
    token: sigOf('erin'),
  })
  assert.equal(second.status, 503)
  assert.match(second.reason ?? '', /capacity/)
  const offer = await page.evaluate(async () => {
    type Pc = {
      addTransceiver(kind: string, init: object): void
      createOffer(): Promise<{ sdp?: string }>
    }
    const pc = new (
      globalThis as unknown as { RTCPeerConnection: new () => Pc }
    ).RTCPeerConnection()
    pc.addTransceiver('video', { direction: 'sendonly' })
    return (await pc.createOffer()).sdp as string
  })
  const raw = await fetch(whipUrl(server.url, room, 'erin'), {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${sigOf('erin')}` },
    body: offer,
  })
  assert.equal(raw.status, 503)
  assert.equal(raw.headers.get('retry-after'), '5')
})

test('a media worker that dies ends its publishes as an exception of their task; the service goes on and takes new ones', async (t) => {
  const server = await servers.start('worker', WHIP_ENV)
  const client = tiwClient(server.url)
  const room = 9404
  const { TaskId } = await client.StartOnlineRecord(startRequest(room))
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  const page = await clientPage()
  const first = await publishFrom(page, {
    url: whipUrl(server.url, room, 'frank'),
    token: sigOf('frank'),
  })
  assert.equal(first.status, 201, first.reason)
  await sleep(3000)
  const workers = () =>
    childProcesses(server.child.pid as number, (argv) =>
      argv.some((a) => /whip[/\\]worker\.[jt]s$/.test(a)),
    )
  const [worker] = workers()
  assert.ok(worker, 'the media worker is a child of the service')
  process.kill(worker, 'SIGKILL')
  const killed = performance.now()
  while ((await publishersOf(server.url, 'whip')) !== 0 && performance.now() - killed < 5000)
    await sleep(100)
  assert.equal(await publishersOf(server.url, 'whip'), 0, 'its publish ended')
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200, 'the service is ready')
  // What a WHIP client sees (nothing tells it): its session resource is gone, its connection stalls.
  const gone = await fetch(first.location as string, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${sigOf('frank')}` },
  })
  assert.equal(gone.status, 404, 'the session resource is gone')
  const states = () =>
    page.evaluate(() => (globalThis as unknown as { states(): string[] }).states()[0] ?? '')
  while ((await states()) === 'connected' && performance.now() - killed < 30_000) await sleep(100)
  const stalled = await states()
  assert.notEqual(stalled, 'connected', 'the client’s connection leaves "connected"')
  t.diagnostic(
    `the WHIP client's connection was "${stalled}" ${Math.round(performance.now() - killed)} ms after the worker died`,
  )

  // A new worker takes the next publish, recorded in the same task.
  let again: Outcome = { status: 0 }
  for (let i = 0; i < 20 && again.status !== 201; i++) {
    again = await publishFrom(await clientPage(), {
      url: whipUrl(server.url, room, 'frank'),
      token: sigOf('frank'),
    })
    if (again.status !== 201) await sleep(250)
  }
  assert.equal(again.status, 201, again.reason)
  assert.notEqual(workers()[0], worker, 'a new worker')
  await sleep(3000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  assert.ok(done.ExceptionCnt >= 1, `ExceptionCnt ${done.ExceptionCnt}`)
  // Without Concat each publish is a video of its own: both are there and whole.
  const parts = (done.VideoInfos as VideoInfo[]).filter((x) => x.UserId === 'frank')
  assert.equal(parts.length, 2, 'the publish before the crash and the one after')
  for (const v of parts) {
    const got = await download(v.VideoUrl, servers.root)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 300)
    assert.ok(v.VideoDuration > 2000, `${v.VideoDuration} ms`)
  }
})

test('the class page publishes camera, microphone and screen, and shows the recording state', async () => {
  const server = await servers.start('class-page', WHIP_ENV)
  const client = tiwClient(server.url)
  const room = 9405
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text())
  })
  await page.goto(
    `${server.url}/class/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=gina&usersig=${encodeURIComponent(sigOf('gina'))}`,
  )
  const state = page.locator('#recording')
  await page.locator('#recording[data-state="not recording"]').waitFor({ timeout: 10_000 })
  await page.locator('#camera').click()
  await page.getByText('publishing', { exact: true }).waitFor({ timeout: 15_000 })
  await page.locator('#screen').click()
  await page.locator('#screen-figure').waitFor({ state: 'visible', timeout: 15_000 })
  assert.equal(
    await page.locator('#message').isVisible(),
    false,
    await page.locator('#message').innerText(),
  )
  assert.equal(await publishersOf(server.url, 'whip'), 2, 'camera and screen')

  const { TaskId } = await client.StartOnlineRecord(startRequest(room))
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await page.locator('#recording[data-state="recording"]').waitFor({ timeout: 10_000 })
  assert.equal(await state.innerText(), 'Recording')
  await sleep(3000)
  const shot = async (name: string) => {
    await page.screenshot({ path: join(servers.root, name) })
    if (process.env.ONLINE_RECORD_SCREENSHOTS)
      await page.screenshot({ path: join(process.env.ONLINE_RECORD_SCREENSHOTS, name) })
  }
  await shot('class-page.png')
  await client.PauseOnlineRecord(ids)
  await page.locator('#recording[data-state="paused"]').waitFor({ timeout: 10_000 })
  // Not in the same second: the official client's signature does not cover the action.
  await sleep(1100)
  await client.ResumeOnlineRecord(ids)
  await page.locator('#recording[data-state="recording"]').waitFor({ timeout: 10_000 })
  await sleep(3000)
  await client.StopOnlineRecord(ids)
  await page.locator('#recording[data-state="not recording"]').waitFor({ timeout: 10_000 })
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  const videos = done.VideoInfos as VideoInfo[]
  assert.deepEqual([...new Set(videos.map((v) => `${v.UserId}/${v.VideoType}`))].sort(), [
    'gina/0',
    'tic_substream_gina/1',
  ])
  for (const v of videos) {
    const got = await download(v.VideoUrl, servers.root)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 300, `${v.UserId}`)
  }
  // Stopping the camera ends the publish (DELETE).
  await page.locator('#camera').click()
  await page.getByText('camera off', { exact: true }).waitFor({ timeout: 10_000 })
  // DELETE ends it at once for the publisher; the count follows when the worker has closed it.
  for (let i = 0; i < 50 && (await publishersOf(server.url, 'whip')) !== 1; i++) await sleep(100)
  assert.equal(await publishersOf(server.url, 'whip'), 1, 'only the screen share is left')
  assert.deepEqual(errors, [])

  // A bad UserSig: the page says so, and nothing is published.
  const refused = await browser.newPage()
  await refused.goto(
    `${server.url}/class/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=gina&usersig=forged`,
  )
  await refused.locator('#camera').click()
  await refused.getByText(/^Not allowed: /).waitFor({ timeout: 10_000 })
  await refused.screenshot({ path: join(servers.root, 'class-refused.png') })
  if (process.env.ONLINE_RECORD_SCREENSHOTS)
    await refused.screenshot({
      path: join(process.env.ONLINE_RECORD_SCREENSHOTS, 'class-refused.png'),
    })
  assert.equal(await publishersOf(server.url, 'whip'), 1)
  // Without credentials: the join form.
  const bare = await browser.newPage()
  await bare.goto(`${server.url}/class/${room}`)
  await bare.locator('form#join').waitFor({ state: 'visible', timeout: 10_000 })
  assert.equal(await bare.locator('#bar').isVisible(), false)
})

test('the class page waits out a quota, learns that its media worker died, says so, publishes again by itself, and is recorded after', async (t) => {
  // One offer of the app connecting at a time, so that the page meets the quota.
  const server = await servers.start('class-crash', {
    ...WHIP_ENV,
    ONLINE_RECORD_WHIP_MAX_CONNECTING_PER_APP: '1',
  })
  const client = tiwClient(server.url)
  const room = 9406
  const { TaskId } = await client.StartOnlineRecord(startRequest(room))
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(
    `${server.url}/class/${room}?sdkappid=${TEST_APP.sdkAppId}&userid=hana&usersig=${encodeURIComponent(sigOf('hana'))}`,
  )
  await page.locator('#recording[data-state="recording"]').waitFor({ timeout: 10_000 })
  // Another participant's offer that never connects holds the app's one place for 5 s.
  const held = await fetch(whipUrl(server.url, room, 'ivan'), {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${sigOf('ivan')}` },
    body: await abandonedOffer(),
  })
  assert.equal(held.status, 201)
  await page.locator('#camera').click()
  await page
    .locator('#message')
    .filter({
      hasText:
        'Waiting for the service to take your camera: Refused (429): too many offers of app 1400000001 not yet connected (at most 1)',
    })
    .waitFor({ timeout: 10_000 })
  await page.getByText('publishing', { exact: true }).waitFor({ timeout: 15_000 })
  await sleep(4000)

  const workers = () =>
    childProcesses(server.child.pid as number, (argv) =>
      argv.some((a) => /whip[/\\]worker\.[jt]s$/.test(a)),
    )
  // Every message the page shows, kept as it is shown (one may last less than a frame).
  await page.evaluate(() => {
    type Node = { textContent: string | null }
    const w = globalThis as unknown as {
      shown: [number, string][]
      document: { getElementById(id: string): Node }
      MutationObserver: new (
        seen: () => void,
      ) => { observe(node: Node, options: Record<string, boolean>): void }
    }
    w.shown = []
    const el = w.document.getElementById('message')
    new w.MutationObserver(() => w.shown.push([performance.now(), el.textContent ?? ''])).observe(
      el,
      { childList: true, characterData: true, subtree: true },
    )
  })
  const shown = () =>
    page.evaluate(() => (globalThis as unknown as { shown: [number, string][] }).shown)
  const [worker] = workers()
  assert.ok(worker, 'the media worker is a child of the service')
  const killedInPage = await page.evaluate(() => performance.now())
  process.kill(worker, 'SIGKILL')
  const killed = performance.now()
  const republished = 'Your camera was published again after the service lost it'
  while (!(await shown()).some(([, m]) => m.startsWith(republished)))
    if (performance.now() - killed < 30_000) await sleep(100)
    else assert.fail(`not published again: ${JSON.stringify(await shown())}`)
  const messages = await shown()
  const told = messages.find(([, m]) =>
    m.startsWith("The service lost your camera (the service's media process stopped)"),
  )
  assert.ok(told, `the page said so: ${JSON.stringify(messages)}`)
  const toldMs = told[0] - killedInPage
  const answered = messages.find(([, m]) => m.startsWith(republished)) as [number, string]
  await page.getByText('publishing', { exact: true }).waitFor({ timeout: 15_000 })
  const connectedMs = performance.now() - killed
  t.diagnostic(
    `after the worker died, the page said so at ${Math.round(toldMs)} ms, was answered again at ${Math.round(answered[0] - killedInPage)} ms and connected by ${Math.round(connectedMs)} ms`,
  )
  t.diagnostic(
    `its messages: ${messages.map(([at, m]) => `${Math.round(at - killedInPage)} ms: ${m}`).join(' / ')}`,
  )
  assert.notEqual(workers()[0], worker, 'a new worker')
  assert.equal(await publishersOf(server.url, 'whip'), 1, 'one publish, the new one')
  await page.screenshot({ path: join(servers.root, 'class-republished.png') })
  if (process.env.ONLINE_RECORD_SCREENSHOTS)
    await page.screenshot({
      path: join(process.env.ONLINE_RECORD_SCREENSHOTS, 'class-republished.png'),
    })
  await sleep(4000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  assert.ok(done.ExceptionCnt >= 1, `ExceptionCnt ${done.ExceptionCnt}`)
  const parts = (done.VideoInfos as VideoInfo[]).filter((v) => v.UserId === 'hana')
  assert.equal(parts.length, 2, 'the publish before the crash and the one after')
  const [before, afterCrash] = [...parts].sort((a, b) => a.VideoPlayTime - b.VideoPlayTime)
  for (const v of parts) {
    const got = await download(v.VideoUrl, servers.root)
    assert.ok(Math.abs(got.durationMs - v.VideoDuration) <= 300)
  }
  assert.ok((before?.VideoDuration ?? 0) > 3000, `before: ${before?.VideoDuration} ms`)
  assert.ok((afterCrash?.VideoDuration ?? 0) > 3000, `after: ${afterCrash?.VideoDuration} ms`)
  assert.deepEqual(errors, [])
})
