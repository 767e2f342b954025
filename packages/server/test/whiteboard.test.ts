// The whiteboard end to end: stock y-websocket providers in Node (not this
// project's code) draw on a board while a task records it through the
// official client; the whiteboard video is downloaded and read pixel by
// pixel. Refused clients and updates change nothing; board activity keeps a
// task from stopping idle.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { VideoInfo } from '@online-record/protocol'
import { WebSocket } from 'ws'
import { genUserSig } from '../src/apps/usersig.ts'
import { assertColours } from '../src/media/test-media.ts'
import { addPage, connect, draw, els, shape, synced, until } from './board-helpers.ts'
import { download, publish, sleep, suiteServers, tools, waitForStatus } from './media-helpers.ts'
import { startRequest, TEST_APP, tiwClient } from './server-process.ts'

const servers = suiteServers('online-record-board-')

test('two stock clients draw on two pages while a task records; a pause; the whiteboard video shows each shape where and when it was drawn', async () => {
  const server = await servers.start('board')
  const client = tiwClient(server.url)
  const room = 9401
  const teacher = connect(server.url, String(room), 'teacher')
  const student = connect(server.url, String(room), 'student')
  await Promise.all([synced(teacher), synced(student)])
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Whiteboard: { Width: 640, Height: 480 },
    Concat: { Enabled: true },
    MixStream: { Enabled: true, ModelId: 2 },
    Extras: ['MIX_STREAM'],
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  const t0 = Date.now()
  const at = (ms: number) => sleep(Math.max(0, t0 + ms - Date.now()))
  const marks: Record<string, number> = {}
  const mark = (name: string) => {
    marks[name] = Date.now()
  }

  await at(500)
  teacher.doc.transact(() => {
    const meta = teacher.doc.getMap('meta')
    meta.set('v', 1)
    meta.set('ratio', '4:3')
    meta.set('page', 'p1')
    addPage(teacher.doc, 'p1')
  })
  draw(
    teacher.doc,
    'p1',
    'red',
    shape('rect', { color: '#FF0000', fill: '#FF0000', x: 0.1, y: 0.1, w: 0.3, h: 0.3 }),
  )
  mark('red')
  // The student sees the teacher's stroke.
  await until('the red rectangle at the student', () => els(student.doc, 'p1')?.has('red') === true)
  // The service stamped it between the send and this (on a loaded machine, hundreds of ms apart).
  mark('redSeen')
  await at(2000)
  draw(
    student.doc,
    'p1',
    'green',
    shape('ellipse', { color: '#00FF00', fill: '#00FF00', x: 0.6, y: 0.6, w: 0.2, h: 0.2 }),
  )
  mark('green')
  await at(3000)
  await client.PauseOnlineRecord(ids)
  await at(4000)
  // Drawn while paused: it appears at the resume instant.
  draw(
    teacher.doc,
    'p1',
    'blue',
    shape('rect', { color: '#0000FF', fill: '#0000FF', x: 0.6, y: 0.1, w: 0.3, h: 0.2 }),
  )
  await at(6000)
  await client.ResumeOnlineRecord(ids)
  await at(7000)
  student.doc.transact(() => {
    addPage(student.doc, 'p2', '#FFFFE0')
    student.doc.getMap('meta').set('page', 'p2')
  })
  draw(
    student.doc,
    'p2',
    'text',
    shape('text', { color: '#000000', x: 0.1, y: 0.8, size: 0.06, text: 'Board 白板' }),
  )
  draw(
    student.doc,
    'p2',
    'yellow',
    shape('rect', { color: '#FFFF00', fill: '#FFFF00', x: 0.3, y: 0.3, w: 0.4, h: 0.3 }),
  )
  mark('page2')
  await at(9000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  teacher.destroy()
  student.destroy()

  const board = (done.VideoInfos as VideoInfo[]).find((v) => v.VideoType === 2)
  assert.ok(board, JSON.stringify(done.VideoInfos))
  assert.deepEqual([board.UserId, board.Width, board.Height], ['', 640, 480])
  const file = await download(board.VideoUrl, servers.root)
  assert.ok(
    Math.abs(board.VideoPlayTime + file.durationMs - done.TotalTime) <= 200,
    `${board.VideoPlayTime} + ${file.durationMs} ≈ TotalTime ${done.TotalTime}`,
  )
  // Replay positions: the recording began at RecordStartTime; the pause is cut.
  const [pause] = done.OmittedDurations
  assert.ok(pause)
  const start = pause.PauseTime - pause.VideoTime
  const replay = (wall: number) =>
    wall < pause.PauseTime ? wall - start : wall - start - (pause.ResumeTime - pause.PauseTime)
  const video = (replayMs: number) => (replayMs - board.VideoPlayTime) / 1000
  assert.ok(
    board.VideoPlayTime >= replay(marks.red as number) - 150 &&
      board.VideoPlayTime <= replay(marks.redSeen as number) + 150,
    `VideoPlayTime ${board.VideoPlayTime}: the red rectangle was sent at ${replay(marks.red as number)} and seen by the other client at ${replay(marks.redSeen as number)}`,
  )
  const red: [number, number, string] = [160, 120, '#FF0000']
  const green: [number, number, string] = [448, 336, '#00FF00']
  const blue: [number, number, string] = [480, 96, '#0000FF']
  const white = (x: number, y: number): [number, number, string] => [x, y, '#FFFFFF']
  // Before the student's ellipse: the red rectangle only.
  await assertColours(tools, file.file, video(replay((marks.green as number) - 600)), [
    red,
    white(448, 336),
    white(480, 96),
  ])
  // Before the pause: both; the blue rectangle drawn in the pause is not there yet.
  await assertColours(tools, file.file, video(pause.VideoTime - 300), [red, green, white(480, 96)])
  // From the resume instant on: the blue rectangle too.
  await assertColours(tools, file.file, video(pause.VideoTime + 300), [red, green, blue])
  // After the switch to page 2: its background and yellow rectangle; page 1's shapes are gone.
  await assertColours(tools, file.file, video(replay((marks.page2 as number) + 500)), [
    [320, 240, '#FFFF00'],
    [160, 120, '#FFFFE0'],
    [480, 96, '#FFFFE0'],
  ])
  // The mixed video shows the board in its tile (1280x960 at 8,8): page 2 at the end.
  const mix = (done.VideoInfos as VideoInfo[]).find((v) => v.VideoType === 3)
  assert.ok(mix)
  const mixed = await download(mix.VideoUrl, servers.root)
  await assertColours(tools, mixed.file, (done.TotalTime - 400) / 1000, [
    [8 + 640, 8 + 432, '#FFFF00'],
    [8 + 100, 8 + 100, '#FFFFE0'],
    [1400, 900, '#34363B'],
  ])
})

test("refused: a bad UserSig, another app's UserSig, a malformed update; the board is unchanged for a third client", async () => {
  const server = await servers.start('refusals')
  const group = 'class-refusals'
  const good = connect(server.url, group, 'teacher')
  await synced(good)
  good.doc.transact(() => {
    good.doc.getMap('meta').set('page', 'p1')
    addPage(good.doc, 'p1')
  })
  draw(good.doc, 'p1', 'r1', shape('rect', { color: '#FF0000', x: 0.1, y: 0.1, w: 0.2, h: 0.2 }))

  const forged = connect(server.url, group, 'mallory', {
    userSig: 'eJyrVkrOzytJzSvJL1KyUnJ0dFDSUUrOz',
  })
  const otherApp = connect(server.url, group, 'mallory', { key: 'f'.repeat(64) })
  await until('both refused', () => forged.closes.length > 0 && otherApp.closes.length > 0)
  for (const c of [forged, otherApp]) {
    assert.equal(c.closes[0]?.code, 4401)
    assert.match(c.closes[0]?.reason ?? '', /^refused: /)
    assert.equal(c.doc.getMap('pages').size, 0, 'a refused client never receives the board')
    c.destroy()
  }

  // A client that writes outside the model: its connection is closed with the reason.
  const vandal = connect(server.url, group, 'vandal')
  await synced(vandal)
  await until('the board at the vandal', () => els(vandal.doc, 'p1')?.has('r1') === true)
  draw(vandal.doc, 'p1', 'bad', shape('star', { color: 'red', x: 5 }))
  await until('the vandal closed', () => vandal.closes.length > 0)
  assert.equal(vandal.closes[0]?.code, 4400)
  assert.match(vandal.closes[0]?.reason ?? '', /update refused: .*kind/)
  vandal.destroy()

  // Raw sockets: garbage, text, a message over 1 MB, an unknown path, no credentials.
  const sig = genUserSig(TEST_APP.sdkAppId, TEST_APP.userSigKey, 'raw', 3600)
  const raw = (path: string) =>
    new Promise<{ code: number; reason: string }>((resolve) => {
      const ws = new WebSocket(`${server.url.replace('http', 'ws')}${path}`)
      ws.on('error', () => {})
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    })
  const rawWith = (send: (ws: WebSocket) => void) =>
    new Promise<{ code: number; reason: string }>((resolve) => {
      const ws = new WebSocket(
        `${server.url.replace('http', 'ws')}/whiteboard/${group}?sdkappid=${TEST_APP.sdkAppId}&userid=raw&usersig=${sig}`,
      )
      ws.on('error', () => {})
      ws.on('open', () => send(ws))
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    })
  assert.equal(
    (await rawWith((ws) => ws.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])))).code,
    4400,
  )
  assert.equal((await rawWith((ws) => ws.send('hello'))).code, 4400)
  assert.equal((await rawWith((ws) => ws.send(Buffer.alloc(1_100_000)))).code, 1009)
  assert.equal((await raw(`/whiteboard/${group}`)).code, 4401)
  assert.equal((await raw('/elsewhere')).code, 1006, 'another path: the upgrade is refused')
  // The service is still there for everyone else.
  assert.equal((await fetch(`${server.url}/healthz`)).status, 200)

  const third = connect(server.url, group, 'observer')
  await synced(third)
  await until('the board at the observer', () => els(third.doc, 'p1')?.has('r1') === true)
  assert.deepEqual([...(els(third.doc, 'p1')?.keys() ?? [])], ['r1'])
  assert.equal(els(good.doc, 'p1')?.has('bad'), false)
  good.destroy()
  third.destroy()
})

test('a room with only whiteboard activity does not stop idle while drawing goes on, and does after it stops', async () => {
  const server = await servers.start('idle', { ONLINE_RECORD_MIN_AUTO_STOP_TIMEOUT_S: '2' })
  const client = tiwClient(server.url)
  const room = 9402
  const pen = connect(server.url, String(room), 'teacher')
  await synced(pen)
  pen.doc.transact(() => {
    pen.doc.getMap('meta').set('page', 'p1')
    addPage(pen.doc, 'p1')
  })
  const { TaskId } = await client.StartOnlineRecord({ ...startRequest(room), AutoStopTimeout: 3 })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  for (let i = 0; i < 8; i++) {
    draw(
      pen.doc,
      'p1',
      `dot${i}`,
      shape('rect', { color: '#000000', x: i / 10, y: 0.5, w: 0.05, h: 0.05 }),
    )
    await sleep(1000)
  }
  const drawing = await client.DescribeOnlineRecord(ids)
  assert.equal(drawing.Status, 'RECORDING', 'eight seconds of drawing, AutoStopTimeout 3 s')
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 30_000)
  assert.equal(done.FinishReason, 'AUTO')
  pen.destroy()
})

test('a board that cannot be drawn within its budget (10,000 large texts at 4096x4096, its ratio flipped 15 times a second): the task finishes with it counted as a problem, the camera video kept', async () => {
  const server = await servers.start('hostile', { ONLINE_RECORD_LOG_LEVEL: 'warn' })
  const client = tiwClient(server.url)
  const room = 9403
  const teacher = connect(server.url, String(room), 'teacher')
  const observer = connect(server.url, String(room), 'observer')
  await Promise.all([synced(teacher), synced(observer)])
  teacher.doc.transact(() => {
    teacher.doc.getMap('meta').set('page', 'p1')
    addPage(teacher.doc, 'p1')
  })
  // 10,000 texts of 8 lines of 8 glyphs 20 % of the board high (~40 CPU-s a full redraw at
  // 4096x4096 on the reference machine), 1,000 an update (each well under 1 MB).
  const text = `${'W'.repeat(8)}\n`.repeat(8)
  for (let batch = 0; batch < 10; batch++) {
    teacher.doc.transact(() => {
      for (let i = batch * 1000; i < (batch + 1) * 1000; i++) {
        const at = { x: (i % 100) / 100, y: (i % 50) / 100 }
        draw(
          teacher.doc,
          'p1',
          `t${i}`,
          shape('text', { color: '#000000', ...at, size: 0.2, text }),
        )
      }
    })
  }
  await until('the page at the observer', () => els(observer.doc, 'p1')?.size === 10_000, 60_000)
  const camera = publish({ rtmp: server.rtmp, room, userId: 'camera', seconds: 20 })
  await sleep(1000)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Whiteboard: { Width: 4096, Height: 4096 },
  })
  const ids = { SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string }
  await sleep(1000)
  for (let i = 0; i < 45; i++) {
    teacher.doc.getMap('meta').set('ratio', i % 2 === 0 ? '16:9' : '4:3')
    await sleep(1000 / 15)
  }
  await sleep(1000)
  await client.StopOnlineRecord(ids)
  const done = await waitForStatus(client, ids.TaskId, 'FINISHED', 120_000)
  await camera.stop()
  teacher.destroy()
  observer.destroy()

  const videos = done.VideoInfos as VideoInfo[]
  assert.equal(videos.filter((v) => v.VideoType === 2).length, 0, JSON.stringify(videos))
  assert.ok(
    videos.some((v) => v.UserId === 'camera' && v.VideoType === 0),
    JSON.stringify(videos),
  )
  assert.equal(done.ExceptionCnt, 1)
  assert.match(
    server.output(),
    new RegExp(
      `task ${ids.TaskId}: tic_record_user: no whiteboard video: drawing the board at 4096x4096 would take about \\d+ CPU-s at least \\(its first and last pictures\\), over 2 times the render's budget of \\d+ CPU-s`,
    ),
  )
})

test('a board picture the URL policy refuses is logged with the task, and the rest of the board is drawn', async () => {
  const server = await servers.start('pictures', {
    ONLINE_RECORD_LOG_LEVEL: 'warn',
    ONLINE_RECORD_CALLBACK_BLOCK_PRIVATE: 'true',
  })
  const client = tiwClient(server.url)
  const room = 9404
  const teacher = connect(server.url, String(room), 'teacher')
  await synced(teacher)
  const { TaskId } = await client.StartOnlineRecord({
    ...startRequest(room),
    Whiteboard: { Width: 320, Height: 240 },
  })
  await sleep(500)
  teacher.doc.transact(() => {
    teacher.doc.getMap('meta').set('page', 'p1')
    addPage(teacher.doc, 'p1')
  })
  const picture = `${server.url}/whiteboard-app/nothing.png`
  draw(
    teacher.doc,
    'p1',
    'picture',
    shape('image', { src: picture, x: 0.1, y: 0.1, w: 0.3, h: 0.3 }),
  )
  draw(
    teacher.doc,
    'p1',
    'red',
    shape('rect', { color: '#FF0000', fill: '#FF0000', x: 0.6, y: 0.6, w: 0.3, h: 0.3 }),
  )
  await sleep(1500)
  await client.StopOnlineRecord({ SdkAppId: TEST_APP.sdkAppId, TaskId: TaskId as string })
  const done = await waitForStatus(client, TaskId as string, 'FINISHED', 60_000)
  teacher.destroy()
  const board = (done.VideoInfos as VideoInfo[]).find((v) => v.VideoType === 2)
  assert.ok(board)
  const file = await download(board.VideoUrl, servers.root)
  await assertColours(tools, file.file, file.durationMs / 1000 - 0.3, [
    [240, 180, '#FF0000'],
    [60, 50, '#FFFFFF'],
  ])
  const warning = server
    .output()
    .split('\n')
    .find((line) => line.includes(`board picture ${picture} not drawn`))
  assert.ok(warning, server.output())
  assert.match(warning, new RegExp(`"level":40.*task ${TaskId}: whiteboard ${room}: board picture`))
  assert.match(warning, /loopback or private address/)
})
