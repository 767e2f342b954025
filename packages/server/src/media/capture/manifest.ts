// The media plane's rows in the store: the segment manifest (every segment
// from the moment it opens, where it is stored once closed), the recording
// processes' heartbeats, finished outputs, and the few reads and writes it
// makes of tasks (which task a room belongs to, its state, its media key and
// its problems).
import { randomBytes } from 'node:crypto'
import type { StartOnlineRecordRequest, VideoInfo } from '@online-record/protocol'
import type { Clock } from '../../clock.ts'
import { MAX_PROBLEMS } from '../../engine/ports.ts'
import type { Db } from '../../store/db.ts'

export type SegmentEndReason =
  | 'pause'
  | 'stop'
  | 'leave'
  | 'drop'
  | 'replaced'
  | 'codec-change'
  | 'fault'
  | 'shutdown'
  | 'crash'

export interface SegmentRow {
  segmentId: string
  taskId: string
  streamId: string
  userId: string
  videoType: number
  /** Where the writer wrote it, relative to the media directory of `instanceId`'s process. */
  file: string
  /** `mkv` (the media core) or `mp4` (segments of older versions). */
  format: 'mkv' | 'mp4'
  startMs: number
  endMs: number | null
  endReason: SegmentEndReason | null
  instanceId: string
  /** Its key in object storage once stored; null while open or not yet stored. */
  storageKey: string | null
}

/** Something a task could not record or keep, for operators. */
export interface TaskProblem {
  atMs: number
  streamId?: string
  message: string
  /** Media time lost, ms, when known. */
  lostMs?: number
}

export interface ActiveTask {
  taskId: string
  sdkAppId: number
  status: 'PREPARED' | 'RECORDING' | 'PAUSED'
  recordUserId: string
  request: StartOnlineRecordRequest
}

export interface OutputRow {
  outputKey: string
  videoInfo: VideoInfo
}

const SEGMENT_COLUMNS = `segment_id as "segmentId", task_id as "taskId", stream_id as "streamId",
  user_id as "userId", video_type as "videoType", file, format, start_ms as "startMs", end_ms as "endMs",
  end_reason as "endReason", instance_id as "instanceId", storage_key as "storageKey"`

/** The TRTC room a task records: TRTCRoomIdStr, else TRTCRoomId, else RoomId (as the index computes it). */
const ROOM_KEY = `coalesce(request->>'TRTCRoomIdStr', request->>'TRTCRoomId', room_id::text)`

export function roomKeyOf(request: StartOnlineRecordRequest): string {
  return request.TRTCRoomIdStr ?? String(request.TRTCRoomId ?? request.RoomId)
}

/** What a service process says of itself with its heartbeat (the admin API lists them). */
export interface ProcessInfo {
  pid: number
  host: string
  version: string
  /** Its HTTP address (the API, the admin API). */
  url: string
  startedAtMs: number
}

export class Manifest {
  readonly #db: Db
  readonly #clock: Clock
  readonly instanceId: string
  /** Filled in once the process knows it (its URL after listening). */
  process: ProcessInfo | undefined

  constructor(db: Db, clock: Clock, instanceId: string) {
    this.#db = db
    this.#clock = clock
    this.instanceId = instanceId
  }

  async openSegment(
    row: Omit<SegmentRow, 'endMs' | 'endReason' | 'instanceId' | 'storageKey' | 'format'>,
  ): Promise<void> {
    await this.#db.query(
      `insert into media_segments (segment_id, task_id, stream_id, user_id, video_type, file,
         format, start_ms, instance_id, created_at_ms) values ($1, $2, $3, $4, $5, $6, 'mkv', $7, $8, $9)`,
      [
        row.segmentId,
        row.taskId,
        row.streamId,
        row.userId,
        row.videoType,
        row.file,
        row.startMs,
        this.instanceId,
        this.#clock.now(),
      ],
    )
  }

  /** The segment is in object storage under `storageKey`: any process can read it now. */
  async markStored(segmentId: string, storageKey: string): Promise<void> {
    await this.#db.query(
      'update media_segments set storage_key = $2, stored_at_ms = $3 where segment_id = $1',
      [segmentId, storageKey, this.#clock.now()],
    )
  }

  /** Rows of these segments (found on this process's disk after a restart, say). */
  async segmentsById(
    ids: readonly string[],
  ): Promise<(SegmentRow & { taskStatus: string | null })[]> {
    if (ids.length === 0) return []
    return this.#db.query(
      `select ${SEGMENT_COLUMNS}, t.status as "taskStatus"
       from media_segments s left join tasks t using (task_id) where s.segment_id = any($1::text[])`,
      [ids],
    )
  }

  /** The task's media key, made on first use: VideoIds are derived from it. */
  async mediaKey(taskId: string): Promise<string> {
    const [row] = await this.#db.query<{ key: string }>(
      `update tasks set media_key = coalesce(media_key, $2) where task_id = $1 returning media_key as key`,
      [taskId, randomBytes(32).toString('base64url')],
    )
    if (row === undefined) throw new Error(`task ${taskId} does not exist`)
    return row.key
  }

  /** Adds to what the task could not record or keep (at most MAX_PROBLEMS kept). */
  async addProblems(taskId: string, problems: readonly TaskProblem[]): Promise<void> {
    if (problems.length === 0) return
    await this.#db.query(
      `update tasks set problems = case when jsonb_array_length(problems) >= $3 then problems
         else problems || $2::jsonb end where task_id = $1`,
      [taskId, JSON.stringify(problems), MAX_PROBLEMS],
    )
  }

  async closeSegment(segmentId: string, endMs: number, reason: SegmentEndReason): Promise<void> {
    await this.#db.query(
      'update media_segments set end_ms = $2, end_reason = $3 where segment_id = $1 and end_ms is null',
      [segmentId, endMs, reason],
    )
  }

  /** The task's segments not yet consumed by a finished post-processing, in start order. */
  async segments(taskId: string): Promise<SegmentRow[]> {
    return this.#db.query<SegmentRow>(
      `select ${SEGMENT_COLUMNS} from media_segments where task_id = $1 and consumed_at_ms is null
       order by start_ms, segment_id`,
      [taskId],
    )
  }

  /** Every output was made from the task's segments: a re-run does not look for them. */
  async consumeSegments(taskId: string): Promise<void> {
    await this.#db.query(
      'update media_segments set consumed_at_ms = $2 where task_id = $1 and consumed_at_ms is null',
      [taskId, this.#clock.now()],
    )
  }

  /** Open segments of the task that a live process other than this one is still writing. */
  async openElsewhere(taskId: string, staleMs: number): Promise<number> {
    const [row] = await this.#db.query<{ n: number }>(
      `select count(*)::int4 as n from media_segments s join media_instances i using (instance_id)
       where s.task_id = $1 and s.end_ms is null and s.instance_id <> $2 and i.heartbeat_ms >= $3`,
      [taskId, this.instanceId, this.#clock.now() - staleMs],
    )
    return row?.n ?? 0
  }

  async heartbeat(): Promise<void> {
    const p = this.process
    await this.#db.query(
      `insert into media_instances (instance_id, heartbeat_ms, pid, host, version, url, started_at_ms)
       values ($1, $2, $3, $4, $5, $6, $7)
       on conflict (instance_id) do update set heartbeat_ms = excluded.heartbeat_ms,
         pid = excluded.pid, host = excluded.host, version = excluded.version, url = excluded.url,
         started_at_ms = excluded.started_at_ms`,
      [
        this.instanceId,
        this.#clock.now(),
        p?.pid ?? null,
        p?.host ?? null,
        p?.version ?? null,
        p?.url ?? null,
        p?.startedAtMs ?? null,
      ],
    )
  }

  async retire(): Promise<void> {
    await this.#db.query('delete from media_instances where instance_id = $1', [this.instanceId])
  }

  /**
   * Closes the open segments of processes whose heartbeat is older than
   * `staleMs` (or gone): their writer died with the process. Each task still
   * recording that was so cut counts one exception; a segment of a task that
   * had stopped already ends at the stop, without one. One statement, so
   * processes sweeping together count a task once. Returns the tasks cut.
   */
  async sweepOrphans(staleMs: number): Promise<string[]> {
    const now = this.#clock.now()
    const rows = await this.#db.query<{ taskId: string }>(
      `with dead as (
         select s.segment_id from media_segments s
         left join media_instances i using (instance_id)
         where s.end_ms is null and s.instance_id <> $1
           and (i.instance_id is null or i.heartbeat_ms < $2)
         for update of s skip locked),
       closed as (
         update media_segments m set
           end_ms = case when t.status in ('STOPPED', 'FINISHED')
             then least(coalesce(t.record_stop_ms, $3), $3) else $3 end,
           end_reason = case when t.status in ('STOPPED', 'FINISHED') then 'stop' else 'crash' end
         from dead left join tasks t on t.task_id = (
           select task_id from media_segments where segment_id = dead.segment_id)
         where m.segment_id = dead.segment_id returning m.task_id, m.end_reason),
       counted as (
         update tasks set exception_cnt = exception_cnt + 1,
           problems = case when jsonb_array_length(problems) >= $5 then problems
             else problems || jsonb_build_array($4::jsonb) end
         where task_id in (select distinct task_id from closed where end_reason = 'crash')
         returning task_id),
       gone as (
         delete from media_instances where instance_id <> $1 and heartbeat_ms < $2)
       select task_id as "taskId" from counted`,
      [
        this.instanceId,
        now - staleMs,
        now,
        JSON.stringify({
          atMs: now,
          message:
            staleMs === 0
              ? 'the recording was cut: the service stopped while it recorded (a crash or a kill), and has started again'
              : `the recording was cut: the process writing it stopped (a crash, a kill or a lost machine); its heartbeat was not seen for ${Math.round(staleMs / 1000)} s`,
        }),
        MAX_PROBLEMS,
      ],
    )
    return rows.map((r) => r.taskId)
  }

  /** Segments this process opened that have no end in the store, oldest first. */
  async openHere(): Promise<{ segmentId: string; taskId: string; startMs: number }[]> {
    return this.#db.query(
      `select segment_id as "segmentId", task_id as "taskId", start_ms as "startMs"
       from media_segments where instance_id = $1 and end_ms is null order by start_ms limit 1000`,
      [this.instanceId],
    )
  }

  /** The recording processes whose heartbeat is newer than `staleMs`. */
  async liveInstances(staleMs: number): Promise<Set<string>> {
    const rows = await this.#db.query<{ id: string }>(
      'select instance_id as id from media_instances where heartbeat_ms >= $1',
      [this.#clock.now() - staleMs],
    )
    return new Set(rows.map((r) => r.id))
  }

  /** The active task of `sdkAppId` recording TRTC room `room`, the oldest if several. */
  async activeTaskForRoom(sdkAppId: number, room: string): Promise<ActiveTask | undefined> {
    const [row] = await this.#db.query<ActiveTask>(
      `select task_id as "taskId", sdk_app_id as "sdkAppId", status,
         record_user_id as "recordUserId", request
       from tasks where sdk_app_id = $1 and ${ROOM_KEY} = $2
         and status in ('PREPARED', 'RECORDING', 'PAUSED')
       order by created_at_ms limit 1`,
      [sdkAppId, room],
    )
    return row
  }

  /** Current status of each of `taskIds` (absent: no such task). */
  async statuses(taskIds: readonly string[]): Promise<Map<string, string>> {
    if (taskIds.length === 0) return new Map()
    const rows = await this.#db.query<{ taskId: string; status: string }>(
      'select task_id as "taskId", status from tasks where task_id = any($1::text[])',
      [taskIds],
    )
    return new Map(rows.map((r) => [r.taskId, r.status]))
  }

  async outputs(taskId: string): Promise<Map<string, VideoInfo>> {
    const rows = await this.#db.query<OutputRow>(
      `select output_key as "outputKey", video_info as "videoInfo" from media_outputs
       where task_id = $1`,
      [taskId],
    )
    return new Map(rows.map((r) => [r.outputKey, r.videoInfo]))
  }

  /** Records uploaded outputs together, so a unit (a video and its mp3) is done or not as one. */
  async saveOutputs(
    taskId: string,
    outputs: readonly { key: string; info: VideoInfo; storageKey: string }[],
  ): Promise<void> {
    if (outputs.length === 0) return
    const params: unknown[] = [taskId, this.#clock.now()]
    const values = outputs.map((o) => {
      params.push(o.key, JSON.stringify(o.info), o.storageKey)
      const n = params.length
      return `($1, $${n - 2}, $${n - 1}::jsonb, $${n}, $2)`
    })
    await this.#db.query(
      `insert into media_outputs (task_id, output_key, video_info, storage_key, created_at_ms)
       values ${values.join(', ')} on conflict (task_id, output_key) do nothing`,
      params,
    )
  }

  /** Outputs stored before `beforeMs` and not deleted yet, oldest first. */
  async expiredOutputs(
    beforeMs: number,
    limit: number,
  ): Promise<{ taskId: string; outputKey: string; storageKey: string }[]> {
    return this.#db.query(
      `select task_id as "taskId", output_key as "outputKey", storage_key as "storageKey"
       from media_outputs where deleted_at_ms is null and created_at_ms < $1
       order by created_at_ms limit $2`,
      [beforeMs, limit],
    )
  }

  async markDeleted(taskId: string, outputKey: string): Promise<void> {
    await this.#db.query(
      'update media_outputs set deleted_at_ms = $3 where task_id = $1 and output_key = $2',
      [taskId, outputKey, this.#clock.now()],
    )
  }
}
