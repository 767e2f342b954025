// The recorder driven by a fake ingest and fake segment writers, with the
// real engine and manifest on PGlite and a moved clock: publishers joining
// and leaving, pause and resume, RecordControl, faults, codec changes and a
// restart, without sleeping. Recording itself (real ffmpeg, real RTMP) is
// exercised in test/media-*.test.ts.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import { type App, Apps } from '../../apps/apps.ts'
import { genUserSig } from '../../apps/usersig.ts'
import { ManualClock } from '../../clock.ts'
import { TaskEngine } from '../../engine/engine.ts'
import { type Db, openDb } from '../../store/db.ts'
import { migrate } from '../../store/migrations.ts'
import { UserSigAuthorizer } from '../authorizer.ts'
import type {
  AccessUnit,
  CloseReason,
  Ingest,
  IngestHandler,
  Publisher,
  PublisherIdentity,
  Tracks,
} from '../contracts.ts'
import { resolveMediaTools } from '../ffmpeg/ffmpeg-tools.ts'
import { PostProcessor } from '../post/post-process.ts'
import { LocalStorage } from '../storage/local.ts'
import { Manifest } from './manifest.ts'
import { MediaRecorder, recordPolicy, sameTracks } from './recorder.ts'
import type { SegmentSink, SegmentWriterOptions } from './segment-writer.ts'

const base: StartOnlineRecordRequest = {
  SdkAppId: 1,
  RoomId: 1,
  RecordUserId: 'tic_record_user_1_x',
  RecordUserSig: 's',
}

test('RecordControl: off unless Enabled; globals; the longest StreamId prefix wins', () => {
  assert.deepEqual(recordPolicy(base, 'alice'), { record: true, audio: true })
  assert.deepEqual(
    recordPolicy({ ...base, RecordControl: { Enabled: false, DisableRecord: true } }, 'alice'),
    { record: true, audio: true },
  )
  const rc = {
    ...base,
    RecordControl: {
      Enabled: true,
      DisableAudio: true,
      StreamControls: [
        { StreamId: 'tic_substream', DisableRecord: true },
        { StreamId: 'tic_substream_teacher', DisableRecord: false },
        { StreamId: 'bob', DisableAudio: false },
      ],
    },
  }
  assert.deepEqual(recordPolicy(rc, 'alice'), { record: true, audio: false })
  assert.deepEqual(recordPolicy(rc, 'bob'), { record: true, audio: true })
  assert.deepEqual(recordPolicy(rc, 'tic_substream_alice'), { record: false, audio: false })
  assert.deepEqual(recordPolicy(rc, 'tic_substream_teacher'), { record: true, audio: false })
  assert.deepEqual(
    recordPolicy({ ...base, RecordControl: { Enabled: true, DisableRecord: true } }, 'x'),
    { record: false, audio: true },
  )
})

const VIDEO: Tracks['video'] = {
  type: 'video',
  codec: 'h264',
  config: Buffer.from([1, 66, 0, 30]),
  width: 320,
  height: 240,
}
const AUDIO: Tracks['audio'] = {
  type: 'audio',
  codec: 'aac',
  config: Buffer.from([0x12, 0x10]),
  sampleRate: 44_100,
  channels: 2,
}

test('tracks: the same codecs and parameters, or a new segment', () => {
  assert.ok(sameTracks({ video: VIDEO, audio: AUDIO }, { video: { ...VIDEO }, audio: AUDIO }))
  assert.ok(!sameTracks({ video: VIDEO }, { video: { ...VIDEO, width: 640 } }))
  assert.ok(!sameTracks({ video: VIDEO }, { video: { ...VIDEO, config: Buffer.from([1, 77]) } }))
  assert.ok(!sameTracks({ audio: AUDIO }, { video: VIDEO, audio: AUDIO }), 'a track appeared')
  assert.ok(!sameTracks({ audio: AUDIO }, { audio: { ...AUDIO, codec: 'opus' } }))
})

/** A publisher as an ingest would hand it over; the test sends its media. */
class FakePublisher implements Publisher {
  static next = 1
  readonly id = `fake-${FakePublisher.next++}`
  readonly identity: PublisherIdentity
  tracks: Tracks = {}
  onTracks: (tracks: Tracks) => void = () => {}
  onUnit: (unit: AccessUnit) => void = () => {}
  onClose: (reason: CloseReason, detail?: string) => void = () => {}
  paused = 0
  resumed = 0
  keyFramesAsked = 0
  kicked: CloseReason | undefined
  #time = 0

  constructor(identity: PublisherIdentity) {
    this.identity = identity
  }
  pause(): void {
    this.paused++
  }
  resume(): void {
    this.resumed++
  }
  requestKeyFrame(): void {
    this.keyFramesAsked++
  }
  kick(reason: CloseReason): void {
    this.kicked = reason
    this.onClose(reason)
  }
  announce(tracks: Tracks): void {
    this.tracks = tracks
    this.onTracks(tracks)
  }
  /** `n` video units 40 ms apart (`key` ones where `keyAt` says), each with an audio unit. */
  send(n: number, keyAt: (i: number) => boolean = (i) => i === 0): void {
    for (let i = 0; i < n; i++) {
      const t = this.#time
      this.#time += 40
      if (this.tracks.video) {
        this.onUnit({ type: 'video', dts: t, pts: t, key: keyAt(i), data: Buffer.from([i]) })
      }
      if (this.tracks.audio) {
        this.onUnit({ type: 'audio', dts: t, pts: t, key: true, data: Buffer.from([i]) })
      }
    }
  }
}

class FakeIngest implements Ingest {
  readonly name = 'fake'
  handler: IngestHandler | undefined
  readonly publishers = 0
  async listen(handler: IngestHandler): Promise<string> {
    this.handler = handler
    return 'fake://ingest'
  }
  async stopAccepting(): Promise<void> {}
  async close(): Promise<void> {}
  /** Authorizes and hands over a publisher of `userId` in room `room`. */
  async join(
    app: App,
    room: string,
    userId: string,
    kind: 'main' | 'aux' = 'main',
  ): Promise<FakePublisher> {
    const identity: PublisherIdentity = {
      ingest: 'fake',
      sdkAppId: app.sdkAppId,
      room,
      userId,
      kind,
      remote: 'test',
    }
    const handler = this.handler as IngestHandler
    const sig = genUserSig(app.sdkAppId, app.userSigKey, userId, 3600, clock.now())
    assert.deepEqual(await handler.authorize(identity, sig), { ok: true })
    const p = new FakePublisher(identity)
    handler.publish(p)
    return p
  }
}

/** A segment writer that keeps what it is given; the test makes it fail or fill up. */
class FakeWriter implements SegmentSink {
  readonly units: AccessUnit[] = []
  closed = false
  readonly options: Omit<SegmentWriterOptions, 'ffmpeg'>
  constructor(options: Omit<SegmentWriterOptions, 'ffmpeg'>) {
    this.options = options
    this.units.push(options.first)
  }
  write(unit: AccessUnit): void {
    if (!this.closed) this.units.push(unit)
  }
  async close(): Promise<void> {
    this.closed = true
  }
  /** The recording process dies: its end releases backpressure, then the fault is told. */
  fault(message: string): void {
    this.closed = true
    this.options.onDrain()
    this.options.onFault(message)
  }
}

const clock = new ManualClock(Date.UTC(2026, 11, 1, 9))

describe('recorder with a fake ingest and a moved clock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'online-record-recorder-'))
  let db: Db
  let app: App
  let engine: TaskEngine
  let ingest: FakeIngest
  let recorder: MediaRecorder
  let writers: FakeWriter[]
  let manifest: Manifest
  let room = 100

  const make = (instance: string) => {
    const m = new Manifest(db, clock, instance)
    const storage = new LocalStorage(join(dir, 'media'), () => 'http://files.test')
    const r = new MediaRecorder({
      clock,
      manifest: m,
      ingests: [ingest],
      authorizer: new UserSigAuthorizer(new Apps(db, clock), clock),
      storage,
      post: new PostProcessor({
        manifest: m,
        tools: resolveMediaTools(),
        storage,
        mediaDir: join(dir, 'media'),
        log: () => {},
        urlPolicy: { blockPrivate: false },
      }),
      openSegment: (options) => {
        const w = new FakeWriter(options)
        writers.push(w)
        return w
      },
      mediaDir: join(dir, 'media'),
      pollIntervalMs: 0,
      soleProcess: true,
    })
    return { recorder: r, manifest: m }
  }

  before(async () => {
    db = await openDb({})
    await migrate(db, clock)
    app = await new Apps(db, clock).create({ sdkAppId: 1400000050 })
  })
  after(async () => {
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  beforeEach(async () => {
    writers = []
    ingest = new FakeIngest()
    ;({ recorder, manifest } = make(`rec-${room}`))
    engine = new TaskEngine({ db, clock, recorder })
    recorder.bind(engine.signals)
    await recorder.open()
  })

  const start = async (patch: Partial<StartOnlineRecordRequest> = {}) => {
    const roomId = ++room
    const user = `tic_record_user_${roomId}_r`
    const taskId = await engine.start(app, {
      SdkAppId: app.sdkAppId,
      RoomId: roomId,
      RecordUserId: user,
      RecordUserSig: genUserSig(app.sdkAppId, app.userSigKey, user, 3600, clock.now()),
      ...patch,
    })
    return { taskId, room: String(roomId) }
  }
  const segments = async (taskId: string) =>
    (await manifest.segments(taskId)).map((s) => ({
      stream: s.streamId,
      reason: s.endReason,
      stored: s.storageKey !== null,
      ms: s.endMs === null ? null : s.endMs - s.startMs,
    }))
  const describe_ = (taskId: string) => engine.describe(app, taskId)

  test('a publisher waiting before the start records from its next key frame, and leaves', async () => {
    const early = await ingest.join(app, String(room + 1), 'alice')
    early.announce({ video: VIDEO, audio: AUDIO })
    early.send(5)
    await recorder.idle()
    const { taskId } = await start()
    assert.equal(early.keyFramesAsked, 1, 'asked for a key frame at once')
    early.send(3, () => false)
    assert.equal(writers.length, 0, 'not before a key frame')
    early.send(10, (i) => i === 2)
    assert.equal(writers.length, 1)
    const w = writers[0] as FakeWriter
    assert.deepEqual(w.options.tracks, { video: VIDEO, audio: AUDIO })
    assert.equal(w.units[0]?.key, true)
    clock.advance(4000)
    early.onClose('unpublished')
    await recorder.idle()
    assert.deepEqual(await segments(taskId), [
      { stream: 'alice', reason: 'leave', stored: true, ms: 4000 },
    ])
    assert.deepEqual((await describe_(taskId)).Interrupts, [], 'a clean leave is no interruption')
    // Back again: a new segment.
    const again = await ingest.join(app, String(room), 'alice')
    again.announce({ video: VIDEO, audio: AUDIO })
    again.send(3)
    clock.advance(1000)
    again.onClose('dropped')
    await recorder.idle()
    assert.equal((await segments(taskId)).length, 2)
    assert.deepEqual((await describe_(taskId)).Interrupts, [{ UserId: 'alice', Count: 1 }])
  })

  test('pause closes segments and nothing is written until the next key frame after the resume', async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'bob')
    p.announce({ video: VIDEO, audio: AUDIO })
    p.send(10)
    clock.advance(2000)
    await engine.pause(app, taskId)
    const asked = p.keyFramesAsked
    assert.equal(writers[0]?.closed, true)
    p.send(10, () => true)
    assert.equal(writers.length, 1, 'nothing recorded while paused')
    clock.advance(3000)
    await engine.resume(app, taskId)
    assert.equal(p.keyFramesAsked, asked + 1, 'a key frame asked for at the resume')
    p.send(4, () => false)
    p.send(5)
    assert.equal(writers.length, 2)
    assert.equal(writers[1]?.units.filter((u) => u.type === 'video').length, 5)
    clock.advance(1000)
    await engine.stop(app, taskId)
    await recorder.idle()
    assert.deepEqual(await segments(taskId), [
      { stream: 'bob', reason: 'pause', stored: true, ms: 2000 },
      { stream: 'bob', reason: 'stop', stored: true, ms: 1000 },
    ])
  })

  test("RecordControl and the recording user: who is recorded, with or without audio; a sub-stream's id", async () => {
    const { taskId, room: r } = await start({
      RecordControl: {
        Enabled: true,
        StreamControls: [
          { StreamId: 'mute', DisableAudio: true },
          { StreamId: 'skip', DisableRecord: true },
        ],
      },
    })
    const record = (await describe_(taskId)).RecordUserId
    for (const user of [record, 'skip', 'mute', 'teacher']) {
      const p = await ingest.join(app, r, user)
      p.announce({ video: VIDEO, audio: AUDIO })
      p.send(2)
    }
    const screen = await ingest.join(app, r, 'teacher', 'aux')
    screen.announce({ video: VIDEO })
    screen.send(2)
    assert.deepEqual(
      writers.map((w) => [Object.keys(w.options.tracks).sort().join('+')]),
      [['video'], ['audio+video'], ['video']],
    )
    await engine.stop(app, taskId)
    await recorder.idle()
    assert.deepEqual((await segments(taskId)).map((s) => s.stream).sort(), [
      'mute',
      'teacher',
      'tic_substream_teacher',
    ])
  })

  test('a recording process that dies: the segment is kept, one exception, recording goes on; too many end the task', async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'carol')
    p.announce({ video: VIDEO, audio: AUDIO })
    p.send(3)
    const first = writers[0] as FakeWriter
    first.options.onFull()
    assert.equal(p.paused, 1, 'backpressure reaches the publisher')
    clock.advance(1000)
    first.fault('recording process ended (SIGKILL)')
    assert.equal(p.resumed, 1, 'and is released when the process is gone')
    await recorder.idle()
    assert.equal((await describe_(taskId)).ExceptionCnt, 1)
    p.send(3)
    assert.equal(writers.length, 2, 'a new segment at the next key frame')
    for (let i = 0; i < 3; i++) {
      clock.advance(1000)
      ;(writers.at(-1) as FakeWriter).fault('recording process ended (code 1)')
      p.send(1)
    }
    await recorder.idle()
    const done = await describe_(taskId)
    assert.deepEqual(
      [done.Status, done.FinishReason, done.ExceptionCnt],
      ['STOPPED', 'EXCEPTION', 4],
      'more than three faults in a minute end the task',
    )
    assert.deepEqual(
      (await segments(taskId)).map((s) => s.reason),
      ['fault', 'fault', 'fault', 'fault'],
    )
  })

  test("an ingest's failure is one exception of the task, however many streams it ends; a newer publish of the same stream through another ingest replaces the older", async () => {
    const { taskId, room: r } = await start()
    const a = await ingest.join(app, r, 'dana')
    const b = await ingest.join(app, r, 'dana', 'aux')
    for (const p of [a, b]) {
      p.announce({ video: VIDEO, audio: AUDIO })
      p.send(3)
    }
    assert.equal(writers.length, 2)
    clock.advance(1000)
    a.onClose('failed', 'the media worker ended (SIGKILL)')
    b.onClose('failed', 'the media worker ended (SIGKILL)')
    await recorder.idle()
    const after = await describe_(taskId)
    assert.equal(after.ExceptionCnt, 1, 'one failure, one exception')
    assert.deepEqual((after.Interrupts ?? []).map((i) => i.UserId).sort(), [
      'dana',
      'tic_substream_dana',
    ])
    assert.deepEqual(
      (await segments(taskId)).map((s) => s.reason),
      ['fault', 'fault'],
    )
    // The same user's camera again, then once more (as through another ingest): the older is replaced.
    const older = await ingest.join(app, r, 'dana')
    const newer = await ingest.join(app, r, 'dana')
    assert.equal(older.kicked, 'replaced')
    assert.equal(newer.kicked, undefined)
  })

  test('new codec parameters start a new segment; a refused stream is in the task record', async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'dave')
    p.announce({ video: VIDEO, audio: AUDIO })
    p.send(3)
    clock.advance(1000)
    p.announce({ video: { ...VIDEO, width: 640, height: 480 }, audio: AUDIO })
    p.send(3, () => false)
    assert.equal(writers.length, 1)
    p.send(2)
    assert.equal(writers.length, 2)
    assert.equal(writers[1]?.options.tracks.video?.width, 640)
    const refused = await ingest.join(app, r, 'erin')
    refused.onClose('refused', 'HEVC is not recorded: publish H.264 video and AAC audio')
    await engine.stop(app, taskId)
    await recorder.idle()
    assert.deepEqual(
      (await segments(taskId)).map((s) => s.reason),
      ['codec-change', 'stop'],
    )
    const [row] = await db.query<{ problems: { streamId: string; message: string }[] }>(
      'select problems from tasks where task_id = $1',
      [taskId],
    )
    assert.equal(row?.problems[0]?.streamId, 'erin')
    assert.match(row?.problems[0]?.message ?? '', /erin was refused: HEVC is not recorded/)
  })

  test("a segment whose end the store did not take is closed by this process's own sweep, at the time it ended", async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'fay')
    p.announce({ video: VIDEO, audio: AUDIO })
    p.send(3)
    await recorder.idle()
    // The store refuses the close once (a full disk, a failed connection).
    const close = manifest.closeSegment.bind(manifest)
    let refused = 0
    manifest.closeSegment = async (...args) => {
      if (refused++ === 0) throw new Error('could not extend file: No space left on device')
      return close(...args)
    }
    clock.advance(2000)
    p.onClose('unpublished')
    await recorder.idle()
    assert.deepEqual(
      (await segments(taskId)).map((s) => [s.stream, s.reason, s.ms]),
      [['fay', null, null]],
      'the store has it open',
    )
    clock.advance(5000)
    await recorder.poll()
    assert.deepEqual(
      (await segments(taskId)).map((s) => [s.stream, s.reason, s.ms]),
      [['fay', 'leave', 2000]],
      'closed by the sweep, when it ended',
    )
  })

  test("a refused stream counts on its room's task even before it was matched to it; a stall counts on the tasks recording", async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'gus')
    // Refused at once: it may not be matched yet.
    p.onClose('refused', 'FLV1 video is not recorded: publish H.264 video and AAC audio')
    await recorder.idle()
    let d = await describe_(taskId)
    assert.equal(d.ExceptionCnt, 1)
    const q = await ingest.join(app, r, 'hal')
    q.announce({ video: VIDEO })
    q.send(3)
    recorder.stalled(4200)
    await recorder.idle()
    d = await describe_(taskId)
    assert.equal(d.ExceptionCnt, 2)
    const [row] = await db.query<{ problems: { streamId?: string; message: string }[] }>(
      'select problems from tasks where task_id = $1',
      [taskId],
    )
    assert.deepEqual(
      row?.problems.map((x) => [x.streamId ?? '', x.message]),
      [
        ['gus', 'gus was refused: FLV1 video is not recorded: publish H.264 video and AAC audio'],
        [
          '',
          "the service's process stalled for 4.2 s while recording: media of that time may be missing",
        ],
      ],
    )
  })

  test('media is activity for the idle stop, written at most every quarter of AutoStopTimeout', async () => {
    const { taskId, room: r } = await start({ AutoStopTimeout: 300 })
    const p = await ingest.join(app, r, 'frank')
    p.announce({ video: VIDEO })
    const last = async () =>
      (
        await db.query<{ ms: number }>(
          'select last_activity_ms as ms from tasks where task_id = $1',
          [taskId],
        )
      )[0]?.ms
    for (let s = 0; s < 12; s++) {
      clock.advance(1000)
      p.send(1, () => true)
      await recorder.idle()
    }
    // At 1, 6 and 11 s: every 5 s (a quarter of 300 s is more: capped at 5 s), not per unit.
    assert.equal((await last()) ?? 0, clock.now() - 1000)
    const [timer] = await db.query<{ due: number }>(
      `select due_ms as due from timers where task_id = $1 and kind = 'idle'`,
      [taskId],
    )
    assert.equal(timer?.due, clock.now() - 1000 + 300_000)
  })

  test('a restart: segments the dead process left open are closed as cut, once; its unstored files are stored', async () => {
    const { taskId, room: r } = await start()
    const p = await ingest.join(app, r, 'gina')
    p.announce({ video: VIDEO, audio: AUDIO })
    p.send(3)
    clock.advance(2000)
    await recorder.idle()
    // The process dies here: its segment stays open in the manifest, and a
    // closed one of another task is left on disk unstored.
    const left = await start()
    const q = await ingest.join(app, left.room, 'hank')
    q.announce({ video: VIDEO })
    q.send(2)
    await manifest.closeSegment(
      (await manifest.segments(left.taskId))[0]?.segmentId as string,
      clock.now(),
      'leave',
    )
    const file = join(dir, 'media', (await manifest.segments(left.taskId))[0]?.file as string)
    mkdirSync(join(file, '..'), { recursive: true })
    writeFileSync(file, 'segment')

    const next = make('after-restart')
    writers = []
    const engine2 = new TaskEngine({ db, clock, recorder: next.recorder })
    next.recorder.bind(engine2.signals)
    await next.recorder.open()
    assert.deepEqual(await segments(taskId), [
      { stream: 'gina', reason: 'crash', stored: false, ms: 2000 },
    ])
    assert.equal((await describe_(taskId)).ExceptionCnt, 1)
    assert.equal((await segments(left.taskId))[0]?.stored, true)
    // Recording goes on in this process when the publisher comes back.
    const back = await ingest.join(app, r, 'gina')
    back.announce({ video: VIDEO, audio: AUDIO })
    await next.recorder.idle() // matched to its task through the store
    back.send(2)
    assert.equal(writers.length, 1)
    await next.recorder.open() // a second sweep counts nothing more
    assert.equal((await describe_(taskId)).ExceptionCnt, 1)
  })
})
