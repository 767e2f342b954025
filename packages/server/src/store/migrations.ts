// Versioned schema migrations. Each runs once, in its own transaction, in order;
// an advisory lock keeps several processes starting together from racing.
import type { Db } from './db.ts'

export interface Migration {
  version: number
  name: string
  sql: string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'apps, tasks, events, timers',
    sql: `
      create table apps (
        sdk_app_id int8 primary key,
        secret_id text not null unique,
        secret_key text not null,
        usersig_key text not null,
        webhook_secret text not null,
        previous_webhook_secret text,
        callback_url text not null default '',
        callback_key text not null default '',
        max_concurrent_tasks int4 not null default 100,
        created_at_ms int8 not null,
        updated_at_ms int8 not null
      );

      create table tasks (
        task_id text primary key,
        sdk_app_id int8 not null references apps (sdk_app_id),
        room_id int8 not null,
        group_id text not null,
        record_user_id text not null,
        status text not null check (status in ('PREPARED', 'RECORDING', 'PAUSED', 'STOPPED', 'FINISHED')),
        finish_reason text not null default '',
        request jsonb not null,
        created_at_ms int8 not null,
        record_start_ms int8,
        record_stop_ms int8,
        paused_at_ms int8,
        paused_total_ms int8 not null default 0,
        pauses jsonb not null default '[]',
        exception_cnt int4 not null default 0,
        error_code text,
        error_message text,
        result jsonb,
        last_activity_ms int8 not null,
        next_seq int4 not null default 1
      );
      -- One active task per room, and a RecordUserId is used by one active task.
      create unique index tasks_active_room on tasks (sdk_app_id, room_id)
        where status in ('PREPARED', 'RECORDING', 'PAUSED');
      create unique index tasks_active_record_user on tasks (sdk_app_id, record_user_id)
        where status in ('PREPARED', 'RECORDING', 'PAUSED');
      create index tasks_app_created on tasks (sdk_app_id, created_at_ms);

      -- The outbox: every callback, written in the transaction of its state change.
      create table events (
        event_id text primary key,
        sdk_app_id int8 not null references apps (sdk_app_id),
        task_id text not null references tasks (task_id),
        seq int4 not null,
        event_type text not null,
        timestamp_s int8 not null,
        event_data jsonb not null,
        created_at_ms int8 not null,
        state text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
        attempts int4 not null default 0,
        next_attempt_ms int8 not null,
        unique (task_id, seq)
      );
      create index events_due on events (next_attempt_ms) where state = 'pending';

      -- Durable timers: one row per (task, kind), claimed with FOR UPDATE SKIP LOCKED.
      create table timers (
        task_id text not null references tasks (task_id),
        kind text not null,
        due_ms int8 not null,
        primary key (task_id, kind)
      );
      create index timers_due on timers (due_ms);
    `,
  },
  {
    version: 2,
    name: 'count of active tasks per app',
    sql: `
      -- Kept by the start and stop statements, so a start checks the app's
      -- limit with one atomic UPDATE instead of holding a lock while it reads.
      alter table apps add column active_tasks int4 not null default 0;
      update apps set active_tasks = (
        select count(*) from tasks t
        where t.sdk_app_id = apps.sdk_app_id and t.status in ('PREPARED', 'RECORDING', 'PAUSED'));
    `,
  },
  {
    version: 3,
    name: 'cheaper writes on tasks, events and timers',
    sql: `
      -- Room in each page lets the frequent small updates of a task (sequence
      -- number, status) be HOT updates, which skip the four index inserts.
      alter table tasks set (fillfactor = 70);
      -- The outbox and the timers are written only by the engine, beside the
      -- task they belong to; their foreign keys cost a lookup and a row lock on
      -- the task and the app for every insert.
      alter table events drop constraint events_task_id_fkey, drop constraint events_sdk_app_id_fkey;
      alter table timers drop constraint timers_task_id_fkey;
    `,
  },
  {
    version: 4,
    name: 'callback delivery',
    sql: `
      -- json keeps the text the engine wrote (field order of the seed, no
      -- reformatting), and delivery sends it as is; events are never edited.
      alter table events alter column event_data type json using event_data::json;
      alter table events
        add column lease_until_ms int8,
        add column retry_base int4 not null default 0,
        add column last_attempt_ms int8,
        add column last_status int4,
        add column last_error text,
        add column delivered_at_ms int8;
      -- A task's head: its pending event with no pending event before it.
      create index events_task_pending on events (task_id, seq) where state = 'pending';
      create index events_app_created on events (sdk_app_id, created_at_ms);

      -- Every attempt at a callback, kept with the event.
      create table callback_attempts (
        event_id text not null,
        attempt int4 not null,
        sdk_app_id int8 not null,
        at_ms int8 not null,
        url text not null,
        status int4,
        latency_ms int4 not null,
        response text,
        error text,
        primary key (event_id, attempt)
      );

      -- A rotated webhook secret signs beside the new one for a while, not forever.
      alter table apps add column previous_webhook_secret_until_ms int8;

      -- Wakes the dispatchers of every process when events are written.
      create function online_record_events_written() returns trigger language plpgsql as $$
      begin
        perform pg_notify('online_record_events', '');
        return null;
      end $$;
      create trigger events_written after insert on events
        for each statement execute function online_record_events_written();
    `,
  },
  {
    version: 5,
    name: 'media: segment manifest, outputs, recorder instances, interrupts',
    sql: `
      -- Per-user stream drops while recording, {"UserId": count}: DescribeOnlineRecord's Interrupts.
      alter table tasks add column interrupts jsonb not null default '{}';
      -- A publisher's room is matched to the active task by TRTCRoomIdStr, else TRTCRoomId, else RoomId.
      create index tasks_active_trtc_room on tasks (sdk_app_id,
        (coalesce(request->>'TRTCRoomIdStr', request->>'TRTCRoomId', room_id::text)))
        where status in ('PREPARED', 'RECORDING', 'PAUSED');

      -- The manifest: one row per recorded file, written when it opens and when it
      -- closes, so post-processing after a crash rebuilds results from the disk.
      create table media_segments (
        segment_id text primary key,
        task_id text not null,
        -- The stream's TIW UserId: the user, or tic_substream_{user} for a sub-stream.
        stream_id text not null,
        user_id text not null,
        video_type int2 not null,
        -- Relative to the media directory.
        file text not null,
        -- Wall clock (Unix ms) of the first frame written.
        start_ms int8 not null,
        -- Wall clock when it was closed; null while it is being written (or its writer died).
        end_ms int8,
        end_reason text,
        instance_id text not null,
        created_at_ms int8 not null
      );
      create index media_segments_task on media_segments (task_id, start_ms);
      create index media_segments_open on media_segments (instance_id) where end_ms is null;

      -- Recording processes and their heartbeats: an open segment of a process
      -- whose heartbeat stopped was cut by a crash.
      create table media_instances (
        instance_id text primary key,
        heartbeat_ms int8 not null
      );

      -- Finished outputs (uploaded and confirmed): a re-run of post-processing
      -- after a crash skips them; retention deletes them.
      create table media_outputs (
        task_id text not null,
        output_key text not null,
        video_info jsonb not null,
        storage_key text not null,
        created_at_ms int8 not null,
        deleted_at_ms int8,
        primary key (task_id, output_key)
      );
      create index media_outputs_live on media_outputs (created_at_ms) where deleted_at_ms is null;
    `,
  },
  {
    version: 6,
    name: 'outbox: a due window read through its index, one index fewer',
    sql: `
      -- The earliest due events, always read through events_due and stopped
      -- after n rows. Planned inside the function with scans and sorts of the
      -- whole table disabled: after a burst (100,000 long-pause warnings) the
      -- statistics still describe a nearly empty outbox, and the planner would
      -- otherwise read and sort every due event on each claim.
      create function online_record_due_window(now_ms int8, n int4, excluded text[])
        returns table (event_id text, task_id text, seq int4, sdk_app_id int8, next_attempt_ms int8)
        language sql stable
        set enable_seqscan = off set enable_bitmapscan = off set enable_sort = off
        as $$
          select e.event_id, e.task_id, e.seq, e.sdk_app_id, e.next_attempt_ms from events e
          where e.state = 'pending' and e.next_attempt_ms <= now_ms and e.event_id <> all(excluded)
          order by e.next_attempt_ms limit n
        $$;
      -- A task's head is found through the unique (task_id, seq) index, among
      -- its few events; a second index on every event insert is not worth it.
      drop index events_task_pending;
      -- A task row is updated five or six times in its life, and a burst of
      -- warnings updates every paused one at once: half of each page free
      -- keeps those updates HOT (no index entries).
      alter table tasks set (fillfactor = 50);
    `,
  },
  {
    version: 7,
    name: 'TC3 signatures and the action each was first used with',
    sql: `
      -- X-TC-Action is not signed by the SDKs: a signature seen before with
      -- another action is a replay with a swapped action. Rows live as long as
      -- their request's timestamp is inside the skew window; losing them in a
      -- crash only reopens that window, so the table skips the WAL.
      create unlogged table api_signatures (
        signature text primary key,
        action text not null,
        expires_ms int8 not null
      );
    `,
  },
  {
    version: 8,
    name: 'media core: stored segments, post-processing jobs, media keys, problems, secrets',
    sql: `
      -- A closed segment is stored (object storage or the local store) as it
      -- closes; any process post-processes from there. Older rows are MP4
      -- files in the data directory that wrote them.
      alter table media_segments
        add column format text not null default 'mp4',
        add column storage_key text,
        add column stored_at_ms int8,
        -- Post-processing made every output from it and removed it.
        add column consumed_at_ms int8;
      create index media_segments_unstored on media_segments (instance_id)
        where storage_key is null and end_ms is not null;

      -- Post-processing of stopped tasks, taken by any process's worker pool:
      -- a job is due at due_ms, leased while one works on it, retried after a
      -- failure, and deleted with the FINISHED transition.
      create table post_jobs (
        task_id text primary key,
        due_ms int8 not null,
        lease_until_ms int8,
        attempts int4 not null default 0,
        stage text not null default '',
        progress int4 not null default 0,
        last_error text,
        created_at_ms int8 not null
      );
      create index post_jobs_due on post_jobs (due_ms);
      insert into post_jobs (task_id, due_ms, created_at_ms)
        select task_id, due_ms, due_ms from timers where kind = 'finalize';
      delete from timers where kind = 'finalize';

      -- What a task could not record or keep (a refused stream, a lost span),
      -- for operators: [{"atMs", "streamId", "message", "lostMs"?}].
      alter table tasks
        add column problems jsonb not null default '[]',
        -- The key a task's VideoIds are derived from (HMAC): random per task,
        -- so a VideoId cannot be computed from a TaskId and a user id.
        add column media_key text;

      -- Deployment-wide secrets made at first start (signed recording URLs).
      create table service_secrets (
        name text primary key,
        value text not null,
        created_at_ms int8 not null
      );
    `,
  },
  {
    version: 9,
    name: 'operators: per-app rate limits and disabling, the processes of a deployment',
    sql: `
      -- Requests per second an app may make (sustained) and at once (burst);
      -- null: the deployment's default, 0: no limit. A disabled app's requests
      -- and publishers are refused.
      alter table apps
        add column rate_limit int4,
        add column rate_burst int4,
        add column disabled_at_ms int8;
      -- Every service process registers here with its heartbeat (the media
      -- plane's recording instances are these processes).
      alter table media_instances
        add column pid int4,
        add column host text,
        add column version text,
        add column url text,
        add column started_at_ms int8;
    `,
  },
  {
    version: 10,
    name: 'whiteboards: every accepted update with its server time, and snapshots',
    sql: `
      create table board_updates (
        seq int8 generated always as identity primary key,
        sdk_app_id int8 not null,
        group_id text not null,
        at_ms int8 not null,
        -- The process that accepted it (others relay it to their clients).
        instance_id text not null,
        update bytea not null
      );
      create index board_updates_board on board_updates (sdk_app_id, group_id, seq);
      create index board_updates_time on board_updates (sdk_app_id, group_id, at_ms);
      -- The board's state with every update up to upto_seq, all older than at_ms.
      create table board_snapshots (
        sdk_app_id int8 not null,
        group_id text not null,
        upto_seq int8 not null,
        at_ms int8 not null,
        state bytea not null,
        primary key (sdk_app_id, group_id, upto_seq)
      );
    `,
  },
  {
    version: 11,
    name: 'signatures: held by the change they applied, not by a refused one',
    sql: `
      -- The request that claimed a signature while its change runs; it lets
      -- the signature go if the change is refused, and clears this once applied.
      alter table api_signatures add column claim text;
    `,
  },
  {
    version: 12,
    name: 'whiteboards: what each board holds in the store, for the per-app quotas and retention',
    sql: `
      -- Bytes of a board's stored rows (each update counts 100 bytes more, a
      -- row's own cost) and snapshots, and when it last changed.
      create table board_usage (
        sdk_app_id int8 not null,
        group_id text not null,
        bytes int8 not null,
        last_at_ms int8 not null,
        primary key (sdk_app_id, group_id)
      );
      insert into board_usage (sdk_app_id, group_id, bytes, last_at_ms)
        select sdk_app_id, group_id, sum(octet_length(update) + 100), max(at_ms)
        from board_updates group by sdk_app_id, group_id;
      create index board_usage_last on board_usage (last_at_ms);
    `,
  },
]

const LOCK_KEY = 7_351_908_331 // arbitrary, constant: "online-record migrations"

/** Applies the migrations not applied yet; returns the versions it applied. */
export async function migrate(db: Db, clock: { now(): number }): Promise<number[]> {
  return db.transaction(async (tx) => {
    await tx.query('select pg_advisory_xact_lock($1)', [LOCK_KEY])
    await tx.query(`create table if not exists schema_migrations (
      version int4 primary key, name text not null, applied_at_ms int8 not null)`)
    const done = new Set(
      (await tx.query<{ version: number }>('select version from schema_migrations')).map(
        (r) => r.version,
      ),
    )
    const applied: number[] = []
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue
      await tx.exec(m.sql)
      await tx.query(
        'insert into schema_migrations (version, name, applied_at_ms) values ($1, $2, $3)',
        [m.version, m.name, clock.now()],
      )
      applied.push(m.version)
    }
    return applied
  })
}
