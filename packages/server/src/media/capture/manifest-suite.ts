// The manifest's statements on a real store, run on PGlite (manifest.test.ts)
// and, with TEST_DATABASE_URL, on PostgreSQL (manifest.pg.test.ts).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Apps } from '../../apps/apps.ts'
import { ManualClock } from '../../clock.ts'
import type { Db } from '../../store/db.ts'
import type { TestDbFactory } from '../../store/test-db.ts'
import { Manifest } from './manifest.ts'

export function manifestSuite(factory: TestDbFactory): void {
  describe(`media manifest on ${factory.name}`, () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 25))
    let handle: Awaited<ReturnType<TestDbFactory['open']>>
    let db: Db

    before(async () => {
      handle = await factory.open(clock)
      db = handle.db
      await new Apps(db, clock).create({ sdkAppId: 1 })
    })
    after(() => handle.dispose())

    async function task(taskId: string, roomId: number, status: string, request: object = {}) {
      await db.query(
        `insert into tasks (task_id, sdk_app_id, room_id, group_id, record_user_id, status, request,
       created_at_ms, last_activity_ms) values ($1, 1, $2, $6, 'rec_' || $1, $3, $4::jsonb, $5, $5)`,
        [
          taskId,
          roomId,
          status,
          JSON.stringify({ RoomId: roomId, ...request }),
          clock.now(),
          String(roomId),
        ],
      )
      clock.advance(1)
    }

    test('a publisher room is matched by TRTCRoomIdStr, else TRTCRoomId, else RoomId; active tasks only', async () => {
      const m = new Manifest(db, clock, 'me')
      await task('t_room', 100, 'RECORDING')
      await task('t_num', 101, 'PAUSED', { TRTCRoomId: 555 })
      await task('t_str', 102, 'PREPARED', { TRTCRoomId: 556, TRTCRoomIdStr: 'class-a' })
      await task('t_done', 103, 'FINISHED')
      assert.equal((await m.activeTaskForRoom(1, '100'))?.taskId, 't_room')
      assert.equal((await m.activeTaskForRoom(1, '555'))?.taskId, 't_num')
      assert.equal(await m.activeTaskForRoom(1, '101'), undefined, 'TRTCRoomId takes over RoomId')
      assert.equal((await m.activeTaskForRoom(1, 'class-a'))?.taskId, 't_str')
      assert.equal(await m.activeTaskForRoom(1, '556'), undefined)
      assert.equal(await m.activeTaskForRoom(1, '103'), undefined, 'finished')
      assert.equal(await m.activeTaskForRoom(2, '100'), undefined, 'another app')
    })

    test("a dead process's open segments are closed once and counted once per task", async () => {
      const me = new Manifest(db, clock, 'me')
      const dead = new Manifest(db, clock, 'dead')
      const live = new Manifest(db, clock, 'live')
      await task('t_cut', 200, 'RECORDING')
      await dead.heartbeat()
      await live.heartbeat()
      await me.heartbeat()
      const seg = (id: string, m: Manifest) =>
        m.openSegment({
          segmentId: id,
          taskId: 't_cut',
          streamId: id,
          userId: id,
          videoType: 0,
          file: `segments/t_cut/${id}.mp4`,
          startMs: clock.now(),
        })
      await seg('a', dead)
      await seg('b', dead)
      await seg('c', live)
      await seg('d', me)
      clock.advance(20_000)
      await live.heartbeat()
      assert.equal(await me.openElsewhere('t_cut', 15_000), 1, "the live process's segment")
      assert.deepEqual(await me.sweepOrphans(15_000), ['t_cut'])
      assert.deepEqual(await me.sweepOrphans(15_000), [], 'once')
      const [row] = await db.query<{ n: number }>(
        `select exception_cnt as n from tasks where task_id = 't_cut'`,
      )
      assert.equal(row?.n, 1, 'one exception for the task, not one per segment')
      const segments = await me.segments('t_cut')
      assert.deepEqual(
        segments.map((s) => [s.segmentId, s.endReason]),
        [
          ['a', 'crash'],
          ['b', 'crash'],
          ['c', null],
          ['d', null],
        ],
      )
    })

    test('outputs of a unit are saved together and once; expired ones are listed until marked', async () => {
      const m = new Manifest(db, clock, 'me')
      const info = (id: string) => ({
        UserId: 'u',
        VideoDuration: 1,
        VideoFormat: 'mp4',
        VideoId: id,
        VideoPlayTime: 0,
        VideoSize: 1,
        VideoType: 0 as const,
        VideoUrl: 'x',
      })
      await m.saveOutputs('t_out', [
        { key: 'u', info: info('1'), storageKey: 't_out/1.mp4' },
        { key: 'u.mp3', info: info('2'), storageKey: 't_out/2.mp3' },
      ])
      await m.saveOutputs('t_out', [{ key: 'u', info: info('3'), storageKey: 't_out/3.mp4' }])
      const outputs = await m.outputs('t_out')
      assert.deepEqual([...outputs.keys()].sort(), ['u', 'u.mp3'])
      assert.equal(outputs.get('u')?.VideoId, '1', 'the first save stands')
      clock.advance(1000)
      const expired = await m.expiredOutputs(clock.now(), 10)
      assert.deepEqual(expired.map((e) => e.storageKey).sort(), ['t_out/1.mp4', 't_out/2.mp3'])
      await m.markDeleted('t_out', 'u')
      assert.equal((await m.expiredOutputs(clock.now(), 10)).length, 1)
    })
  })
}
