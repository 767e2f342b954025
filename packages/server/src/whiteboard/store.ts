// Where boards live: every accepted update with its server time (the board's
// history, which the recording renders) and periodic snapshots (so a board
// loads, and a replay starts, without reading its whole history). Rows are
// the same in PGlite and PostgreSQL; on PostgreSQL processes learn of each
// other's writes by NOTIFY and re-read with a look-back, which is harmless
// because a Yjs update applied twice changes nothing.
import type { Db, Queryable } from '../store/db.ts'

export interface BoardKey {
  sdkAppId: number
  groupId: string
}

export interface StoredUpdate {
  seq: number
  atMs: number
  update: Uint8Array
}

export const BOARD_CHANNEL = 'online_record_board'
/** Rows re-read behind the last one seen: writes of other processes commit out of order. */
export const LOOK_BACK = 500
/** A board is read this much at a time (at least one row a page). */
const PAGE_BYTES = 1024 * 1024
const PAGE_ROWS = 2000

const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : new Uint8Array(0))

/** What a stored update counts in its board's usage: its bytes and its row's own cost. */
export const storedBytes = (update: Uint8Array): number => update.length + 100

export class BoardStore {
  readonly #db: Db
  readonly #instance: string

  constructor(db: Db, instance: string) {
    this.#db = db
    this.#instance = instance
  }

  get db(): Db {
    return this.#db
  }

  /** Appends accepted updates and counts them in their boards' usage (one transaction), and tells other processes. */
  async append(rows: readonly (BoardKey & { atMs: number; update: Uint8Array })[]): Promise<void> {
    if (rows.length === 0) return
    const values: unknown[] = []
    const tuples = rows.map((r, i) => {
      values.push(r.sdkAppId, r.groupId, r.atMs, this.#instance, r.update)
      const b = i * 5
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5})`
    })
    const usage = new Map<string, BoardKey & { bytes: number; atMs: number }>()
    for (const r of rows) {
      const id = `${r.sdkAppId}/${r.groupId}`
      const u = usage.get(id) ?? { sdkAppId: r.sdkAppId, groupId: r.groupId, bytes: 0, atMs: 0 }
      u.bytes += storedBytes(r.update)
      u.atMs = Math.max(u.atMs, r.atMs)
      usage.set(id, u)
    }
    await this.#db.transaction(async (tx) => {
      await tx.query(
        `insert into board_updates (sdk_app_id, group_id, at_ms, instance_id, update)
         values ${tuples.join(', ')}`,
        values,
      )
      await this.#count(tx, [...usage.values()])
    })
    // The rows are in; a lost notification is made up by the other processes' poll.
    if (this.#db.dialect === 'postgres') {
      await this.#db
        .query('select pg_notify($1, $2)', [BOARD_CHANNEL, this.#instance])
        .catch(() => {})
    }
  }

  /** Adds bytes to boards' usage (made at first). */
  async #count(db: Queryable, rows: readonly (BoardKey & { bytes: number; atMs: number })[]) {
    const values: unknown[] = []
    const tuples = rows.map((r, i) => {
      values.push(r.sdkAppId, r.groupId, r.bytes, r.atMs)
      const b = i * 4
      return `($${b + 1}::int8, $${b + 2}::text, $${b + 3}::int8, $${b + 4}::int8)`
    })
    await db.query(
      `insert into board_usage (sdk_app_id, group_id, bytes, last_at_ms) values ${tuples.join(', ')}
       on conflict (sdk_app_id, group_id) do update set bytes = board_usage.bytes + excluded.bytes,
         last_at_ms = greatest(board_usage.last_at_ms, excluded.last_at_ms)`,
      values,
    )
  }

  /**
   * What an app's boards hold in the store: how many, and their bytes; and
   * whether `groupId` is one of them, and its bytes.
   */
  async usage(
    sdkAppId: number,
    groupId?: string,
  ): Promise<{ boards: number; bytes: number; known: boolean; boardBytes: number }> {
    const [row] = await this.#db.query<{
      boards: string
      bytes: string | null
      known: boolean
      boardBytes: string | null
    }>(
      `select count(*) as boards, sum(bytes) as bytes, coalesce(bool_or(group_id = $2), false) as known,
         sum(bytes) filter (where group_id = $2) as "boardBytes"
       from board_usage where sdk_app_id = $1`,
      [sdkAppId, groupId ?? null],
    )
    return {
      boards: Number(row?.boards ?? 0),
      bytes: Number(row?.bytes ?? 0),
      known: row?.known === true,
      boardBytes: Number(row?.boardBytes ?? 0),
    }
  }

  /**
   * Deletes the boards that have not changed since `beforeMs` (retention),
   * but for those in `keep` (open here); at most `limit` a call. Returns the
   * boards deleted.
   */
  async expire(beforeMs: number, keep: ReadonlySet<string>, limit = 100): Promise<BoardKey[]> {
    const old = await this.#db.query<{ sdkAppId: string; groupId: string }>(
      `select sdk_app_id as "sdkAppId", group_id as "groupId" from board_usage
       where last_at_ms < $1 order by last_at_ms limit $2`,
      [beforeMs, limit + keep.size],
    )
    const gone: BoardKey[] = []
    for (const r of old) {
      const key = { sdkAppId: Number(r.sdkAppId), groupId: r.groupId }
      if (keep.has(`${key.sdkAppId}/${key.groupId}`) || gone.length >= limit) continue
      await this.#db.transaction(async (tx) => {
        // Only if it is still that old: a write since keeps it.
        const [still] = await tx.query(
          `delete from board_usage where sdk_app_id = $1 and group_id = $2 and last_at_ms < $3
           returning 1 as one`,
          [key.sdkAppId, key.groupId, beforeMs],
        )
        if (still === undefined) return
        for (const table of ['board_updates', 'board_snapshots'])
          await tx.query(`delete from ${table} where sdk_app_id = $1 and group_id = $2`, [
            key.sdkAppId,
            key.groupId,
          ])
        gone.push(key)
      })
    }
    return gone
  }

  /** The bytes `load` would read of a board (its latest snapshot and the updates after it), without reading them. */
  async loadSize(key: BoardKey): Promise<number> {
    const [row] = await this.#db.query<{ bytes: string | null }>(
      `with snap as (select upto_seq, octet_length(state) as size from board_snapshots
         where sdk_app_id = $1 and group_id = $2 order by upto_seq desc limit 1)
       select coalesce((select size from snap), 0) + coalesce((select sum(octet_length(update))
         from board_updates where sdk_app_id = $1 and group_id = $2
           and seq > coalesce((select upto_seq from snap), 0)), 0) as bytes`,
      [key.sdkAppId, key.groupId],
    )
    return Number(row?.bytes ?? 0)
  }

  /** The latest snapshot of a board and every update after it. */
  async load(
    key: BoardKey,
  ): Promise<{ snapshot: Uint8Array | undefined; updates: StoredUpdate[]; bytes: number }> {
    const [snap] = await this.#db.query<{ uptoSeq: string; state: Uint8Array }>(
      `select upto_seq as "uptoSeq", state from board_snapshots
       where sdk_app_id = $1 and group_id = $2 order by upto_seq desc limit 1`,
      [key.sdkAppId, key.groupId],
    )
    const updates = await this.#updates(key, Number(snap?.uptoSeq ?? 0), Number.MAX_SAFE_INTEGER)
    const snapshot = snap ? bytes(snap.state) : undefined
    return {
      snapshot,
      updates,
      bytes: (snapshot?.length ?? 0) + updates.reduce((n, u) => n + u.update.length, 0),
    }
  }

  /**
   * What a replay of [fromMs, toMs] needs: the state before `fromMs` (a
   * snapshot and the updates after it) and the updates in the span, by time.
   */
  async history(
    key: BoardKey,
    fromMs: number,
    toMs: number,
  ): Promise<{ before: Uint8Array[]; during: StoredUpdate[] }> {
    const [snap] = await this.#db.query<{ uptoSeq: string; state: Uint8Array }>(
      `select upto_seq as "uptoSeq", state from board_snapshots
       where sdk_app_id = $1 and group_id = $2 and at_ms <= $3
       order by upto_seq desc limit 1`,
      [key.sdkAppId, key.groupId, fromMs],
    )
    const rows = await this.#updates(key, Number(snap?.uptoSeq ?? 0), toMs)
    const before = [...(snap ? [bytes(snap.state)] : [])]
    const during: StoredUpdate[] = []
    for (const r of rows) r.atMs <= fromMs ? before.push(r.update) : during.push(r)
    during.sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)
    return { before, during }
  }

  /** Whether a board changed in (fromMs, toMs]. */
  async changedDuring(key: BoardKey, fromMs: number, toMs: number): Promise<boolean> {
    const rows = await this.#db.query(
      `select 1 from board_updates where sdk_app_id = $1 and group_id = $2
       and at_ms > $3 and at_ms <= $4 limit 1`,
      [key.sdkAppId, key.groupId, fromMs, toMs],
    )
    return rows.length > 0
  }

  /**
   * Updates other processes wrote after `afterSeq` (minus the look-back,
   * but for those `seen` already), in order: a page of them (about 2 MB).
   */
  async others(
    afterSeq: number,
    seen: readonly number[] = [],
  ): Promise<(BoardKey & StoredUpdate)[]> {
    const rows = await this.#db.query<{
      seq: string
      sdkAppId: string
      groupId: string
      atMs: string
      update: Uint8Array
    }>(
      `select seq, "sdkAppId", "groupId", "atMs", update from (
         select *, sum(octet_length(update)) over (order by seq) as running from (
           select seq, sdk_app_id as "sdkAppId", group_id as "groupId", at_ms as "atMs", update
           from board_updates where seq > $1 and instance_id <> $2 and seq <> all($4::int8[])
           order by seq limit ${PAGE_ROWS}) page) counted
       where running - octet_length(update) < $3 order by seq`,
      [Math.max(0, afterSeq - LOOK_BACK), this.#instance, PAGE_BYTES, seen],
    )
    return rows.map((r) => ({
      seq: Number(r.seq),
      sdkAppId: Number(r.sdkAppId),
      groupId: r.groupId,
      atMs: Number(r.atMs),
      update: bytes(r.update),
    }))
  }

  /** The highest sequence number written so far. */
  async lastSeq(): Promise<number> {
    const [row] = await this.#db.query<{ seq: string | null }>(
      'select max(seq) as seq from board_updates',
    )
    return Number(row?.seq ?? 0)
  }

  /**
   * Writes a snapshot of a board: the latest one and the updates written
   * before `beforeMs` after it, merged. It holds exactly the updates up to
   * its `upto_seq`, and its `at_ms` is after the last of them, so a replay
   * from any later time may start from it. `merge` encodes the state of a
   * list of updates (Yjs). Returns the updates it covers, 0 when there was
   * nothing to add.
   */
  async snapshot(
    key: BoardKey,
    beforeMs: number,
    merge: (updates: Uint8Array[]) => Uint8Array | Promise<Uint8Array>,
  ): Promise<number> {
    const [snap] = await this.#db.query<{ uptoSeq: string; atMs: string; state: Uint8Array }>(
      `select upto_seq as "uptoSeq", at_ms as "atMs", state from board_snapshots
       where sdk_app_id = $1 and group_id = $2 order by upto_seq desc limit 1`,
      [key.sdkAppId, key.groupId],
    )
    // Older than `beforeMs`: no write of any process is still on its way below it.
    // In order, up to the first one not older than that (another process's clock may be behind).
    const all = await this.#updates(key, Number(snap?.uptoSeq ?? 0), Number.MAX_SAFE_INTEGER)
    const cut = all.findIndex((r) => r.atMs >= beforeMs)
    const rows = cut < 0 ? all : all.slice(0, cut)
    const last = rows.at(-1)
    if (last === undefined) return 0
    const state = await merge([...(snap ? [bytes(snap.state)] : []), ...rows.map((r) => r.update)])
    // Never earlier than the snapshot it extends: a replay from a time picks the newest one at or before it.
    const atMs = Math.max(Number(snap?.atMs ?? 0), ...rows.map((r) => r.atMs + 1))
    await this.#db.transaction(async (tx) => {
      const [made] = await tx.query(
        `insert into board_snapshots (sdk_app_id, group_id, upto_seq, at_ms, state)
         values ($1, $2, $3, $4, $5) on conflict do nothing returning 1 as one`,
        [key.sdkAppId, key.groupId, last.seq, atMs, state],
      )
      if (made) await this.#count(tx, [{ ...key, bytes: state.length, atMs: 0 }])
    })
    return rows.length
  }

  /** Updates of a board after `afterSeq` up to (and including) those at `toMs`. */
  async #updates(key: BoardKey, afterSeq: number, toMs: number): Promise<StoredUpdate[]> {
    // Read in pages of about PAGE_BYTES, the event loop free between them: a
    // 20 MB board read at once holds the thread that serves everyone else for
    // a second or more (PGlite runs in it).
    const out: StoredUpdate[] = []
    let after = afterSeq
    for (;;) {
      const rows = await this.#db.query<{ seq: string; atMs: string; update: Uint8Array }>(
        `select seq, "atMs", update from (
           select seq, "atMs", update, sum(octet_length(update)) over (order by seq) as running
           from (select seq, at_ms as "atMs", update from board_updates
                 where sdk_app_id = $1 and group_id = $2 and seq > $3 and at_ms <= $4
                 order by seq limit ${PAGE_ROWS}) page) counted
         where running - octet_length(update) < $5 order by seq`,
        [key.sdkAppId, key.groupId, after, toMs, PAGE_BYTES],
      )
      for (const r of rows)
        out.push({ seq: Number(r.seq), atMs: Number(r.atMs), update: bytes(r.update) })
      const last = rows.at(-1)
      if (last === undefined) return out
      after = Number(last.seq)
      await new Promise((r) => setImmediate(r))
    }
  }
}
