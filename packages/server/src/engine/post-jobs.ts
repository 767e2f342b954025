// The post-processing worker pool. A stopped task's job is a row in
// `post_jobs`, written by the STOPPED transition; any process's pool takes a
// due job with a lease (FOR UPDATE SKIP LOCKED), renews the lease while it
// works, and the FINISHED transition deletes it. A failure is retried with
// backoff and logged; after the last attempt the task finishes with
// EXCEPTION and what was stored. Timers never wait for this work, and a Stop
// never does either.
//
// Fair and bounded:
// - the app with the fewest jobs running (in every process) is served
//   first, and one app holds at most `perApp` of this process's slots, so
//   with more slots than that another app always finds one free;
// - a job whose lease ran out under it (its process died, or lost the
//   store) goes behind the fresh ones, and that attempt counts: a job that
//   kills its process every time ends as failed after the attempts;
// - a run that loses its lease (renewal finds the job taken, or could not
//   renew it for a whole lease) is aborted: its children are killed and it
//   stores nothing more (JobLease); its writes are fenced by `attempts`.
import { toStorableText } from '@online-record/protocol'
import type { Clock } from '../clock.ts'
import type { Db } from '../store/db.ts'
import { Waker } from '../waker.ts'
import type { TaskEngine } from './engine.ts'
import { type JobLease, LeaseLost } from './ports.ts'

export interface PostJobSettings {
  /** Jobs worked on at once in this process. */
  concurrency: number
  /** Jobs of one app worked on at once in this process (below `concurrency`: others always find a slot). */
  perApp: number
  /** A job's lease; renewed every third of it while the work goes on. */
  leaseMs: number
  /** Waits before attempts 2, 3, …; its length + 1 is the number of attempts. */
  retryDelaysMs: readonly number[]
  /** Due jobs are looked for at least this often (other processes' stops, retries). */
  pollMs: number
  /** The store is this process's alone (PGlite): a lease left by a crash is void at once. */
  soleProcess: boolean
}

export const DEFAULT_POST_JOB_SETTINGS: PostJobSettings = {
  concurrency: 2,
  perApp: 1,
  leaseMs: 30_000,
  retryDelaysMs: [60_000, 5 * 60_000, 15 * 60_000, 3_600_000],
  pollMs: 1000,
  soleProcess: false,
}

export type PostJobLog = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void

export type PostJobOutcome = 'finished' | 'retry' | 'failed' | 'waiting' | 'lost'

interface Claimed {
  taskId: string
  sdkAppId: number
  attempts: number
  /** Its last attempt's lease ran out under it: that process died (or lost the store). */
  crashed: boolean
}

export class PostJobs {
  readonly #db: Db
  readonly #clock: Clock
  readonly #engine: TaskEngine
  readonly #settings: PostJobSettings
  readonly #log: PostJobLog
  readonly #observe: (outcome: PostJobOutcome, seconds: number) => void
  readonly #renewEveryMs: number
  readonly #running = new Set<Promise<void>>()
  /** Jobs under way here, per app. */
  readonly #perApp = new Map<number, number>()
  #loop: Promise<void> | undefined
  #active = false
  readonly #waker = new Waker()

  constructor(options: {
    db: Db
    clock: Clock
    engine: TaskEngine
    settings?: Partial<PostJobSettings>
    log?: PostJobLog
    /** Told of every attempt's outcome and length: for metrics. */
    observe?: (outcome: PostJobOutcome, seconds: number) => void
    /** How often (real ms) the lease is renewed; default a third of the lease. For tests. */
    renewEveryMs?: number
  }) {
    this.#db = options.db
    this.#clock = options.clock
    this.#engine = options.engine
    this.#settings = { ...DEFAULT_POST_JOB_SETTINGS, ...options.settings }
    this.#log = options.log ?? (() => {})
    this.#observe = options.observe ?? (() => {})
    this.#renewEveryMs = options.renewEveryMs ?? this.#settings.leaseMs / 3
  }

  /** Jobs being worked on in this process now. */
  get inFlight(): number {
    return this.#running.size
  }

  async start(): Promise<void> {
    if (this.#active) return
    this.#active = true
    // No other process can hold a lease on this store: one left by a crash
    // has run out. It stays marked (an expired lease), so the job goes
    // behind the fresh ones and its crash counts.
    if (this.#settings.soleProcess) {
      const now = this.#clock.now()
      await this.#db.query('update post_jobs set lease_until_ms = $1 where lease_until_ms > $1', [
        now,
      ])
    }
    this.#loop = this.#run()
  }

  /** A task stopped (here or elsewhere): look for work now. */
  wake(): void {
    this.#waker.wake()
  }

  /** Stops taking jobs and waits for the ones under way. */
  async close(): Promise<void> {
    this.#active = false
    this.wake()
    await this.#loop
    await Promise.all(this.#running)
  }

  /** For tests and tools: takes and runs due jobs one after another until none is due; returns how many ran. */
  async runOnce(): Promise<number> {
    let n = 0
    for (let job = await this.#claim(); job; job = await this.#claim()) {
      await this.#work(job)
      n++
    }
    return n
  }

  async #run(): Promise<void> {
    while (this.#active) {
      this.#waker.reset()
      let claimed = false
      if (this.#running.size < this.#settings.concurrency) {
        try {
          const job = await this.#claim()
          if (job) {
            claimed = true
            const work: Promise<void> = this.#work(job).finally(() => {
              this.#running.delete(work)
              this.wake()
            })
            this.#running.add(work)
          }
        } catch (error) {
          this.#log('error', 'claiming a post-processing job failed', { err: error })
        }
      }
      if (claimed) continue
      // Stops here wake the pool; jobs of other processes and retries are found by the poll.
      if (!this.#waker.woken && this.#active) await this.#waker.sleep(this.#settings.pollMs)
    }
  }

  /**
   * Takes the due job to work on next: fresh jobs before those whose lease
   * ran out under them, then the app with the fewest jobs running anywhere,
   * then the longest due; never one of an app that has its share of this
   * process's slots.
   */
  async #claim(): Promise<Claimed | undefined> {
    const now = this.#clock.now()
    const full = [...this.#perApp].filter(([, n]) => n >= this.#settings.perApp).map(([a]) => a)
    const [row] = await this.#db.query<Claimed>(
      `with running as (
         select t.sdk_app_id, count(*)::int4 as n from post_jobs j join tasks t using (task_id)
         where j.lease_until_ms > $1 group by t.sdk_app_id),
       pick as (
         select j.task_id, t.sdk_app_id, j.lease_until_ms is not null as crashed
         from post_jobs j join tasks t using (task_id)
           left join running r on r.sdk_app_id = t.sdk_app_id
         where j.due_ms <= $1 and (j.lease_until_ms is null or j.lease_until_ms <= $1)
           and not (t.sdk_app_id = any($3::int8[]))
         order by j.lease_until_ms is not null, coalesce(r.n, 0), j.due_ms, j.task_id
         limit 1 for update of j skip locked)
       update post_jobs p set lease_until_ms = $2, attempts = p.attempts + 1,
         last_error = case when pick.crashed
           then 'the process working on attempt ' || p.attempts || ' ended (or lost its lease) during the work'
           else p.last_error end
       from pick where p.task_id = pick.task_id
       returning p.task_id as "taskId", pick.sdk_app_id::int8 as "sdkAppId", p.attempts, pick.crashed`,
      [now, now + this.#settings.leaseMs, full],
    )
    if (row === undefined) return undefined
    return { ...row, sdkAppId: Number(row.sdkAppId) }
  }

  async #work(job: Claimed): Promise<void> {
    const { taskId, attempts, sdkAppId } = job
    this.#perApp.set(sdkAppId, (this.#perApp.get(sdkAppId) ?? 0) + 1)
    try {
      const started = performance.now()
      const seconds = () => (performance.now() - started) / 1000
      // The crashed attempt was the last one: it ends here, not in another crash.
      if (job.crashed && attempts > this.#settings.retryDelaysMs.length + 1) {
        const message = `post-processing failed after ${attempts - 1} attempts: the process working on it ended during the work, the last time in attempt ${attempts - 1}`
        this.#log('error', `task ${taskId}: ${message}`, { taskId })
        await this.#engine
          .finalizeFailed(taskId, message, attempts)
          .catch((e) => this.#log('error', `finishing task ${taskId} failed`, { taskId, err: e }))
        this.#observe('failed', seconds())
        return
      }
      if (job.crashed) {
        this.#log(
          'warn',
          `task ${taskId}: post-processing attempt ${attempts - 1} ended with its process; attempt ${attempts} begins`,
          { taskId },
        )
      }
      await this.#attempt(job, seconds)
    } finally {
      const n = (this.#perApp.get(sdkAppId) ?? 1) - 1
      if (n > 0) this.#perApp.set(sdkAppId, n)
      else this.#perApp.delete(sdkAppId)
    }
  }

  async #attempt(job: Claimed, seconds: () => number): Promise<void> {
    const { taskId, attempts } = job
    const { leaseMs } = this.#settings
    const lost = new AbortController()
    const lose = (why: string) => {
      if (lost.signal.aborted) return
      this.#log('warn', `post-processing of task ${taskId} lost its lease: ${why}`, { taskId })
      lost.abort(new LeaseLost(taskId, why))
    }
    let renewedAt = this.#clock.now()
    let renewing = false
    const renew = setInterval(() => {
      const now = this.#clock.now()
      // The lease may have run out meanwhile (a store that did not answer, a
      // stalled process): another process may be working on the job.
      if (now - renewedAt >= leaseMs) {
        lose(`it was not renewed for ${now - renewedAt} ms (the lease is ${leaseMs} ms)`)
        return
      }
      if (renewing) return
      renewing = true
      this.#db
        .query(
          'update post_jobs set lease_until_ms = $3 where task_id = $1 and attempts = $2 returning 1',
          [taskId, attempts, now + leaseMs],
        )
        .then(
          (rows) => {
            if (rows.length === 0) lose('another process took the job over')
            else renewedAt = now
          },
          // Tried again at the next tick; lost once a whole lease went by.
          () => {},
        )
        .finally(() => {
          renewing = false
        })
    }, this.#renewEveryMs)
    const lease: JobLease = {
      signal: lost.signal,
      attempts,
      hold: async () => {
        if (!lost.signal.aborted) {
          const rows = await this.#db.query(
            'select 1 from post_jobs where task_id = $1 and attempts = $2 and lease_until_ms > $3',
            [taskId, attempts, this.#clock.now()],
          )
          if (rows.length === 0) lose("the job is no longer this attempt's")
        }
        if (lost.signal.aborted) throw lost.signal.reason
      },
    }
    let reported = 0
    const progress = (stage: string, fraction: number) => {
      const now = performance.now()
      if (lost.signal.aborted || (now - reported < 1000 && fraction < 1)) return
      reported = now
      void this.#db
        .query(
          'update post_jobs set stage = $2, progress = $4 where task_id = $1 and attempts = $3',
          [taskId, stage, attempts, Math.round(Math.min(1, Math.max(0, fraction)) * 100)],
        )
        .catch(() => {})
    }
    try {
      await this.#engine.finalize(taskId, progress, lease)
      this.#observe(lost.signal.aborted ? 'lost' : 'finished', seconds())
    } catch (error) {
      if (lost.signal.aborted) {
        // The job is another run's now (or will be once its lease runs out): nothing to record here.
        this.#observe('lost', seconds())
        return
      }
      this.#observe(await this.#failed(job, error), seconds())
    } finally {
      clearInterval(renew)
    }
  }

  /** Schedules what comes after a failed attempt; returns what it was. */
  async #failed(job: Claimed, error: unknown): Promise<'retry' | 'failed' | 'waiting'> {
    const { taskId, attempts } = job
    const now = this.#clock.now()
    const retryMs = (error as { retryMs?: unknown }).retryMs
    const message = (error as Error).message ?? String(error)
    // Not ready (another process still stores the task's media): not an attempt.
    if (typeof retryMs === 'number') {
      await this.#db.query(
        `update post_jobs set lease_until_ms = null, due_ms = $3, attempts = attempts - 1, stage = 'waiting'
         where task_id = $1 and attempts = $2`,
        [taskId, attempts, now + retryMs],
      )
      return 'waiting'
    }
    const delay = this.#settings.retryDelaysMs[attempts - 1]
    if (delay === undefined) {
      this.#log(
        'error',
        `post-processing of task ${taskId} gave up after ${attempts} attempts: ${message}`,
        {
          taskId,
          err: error,
        },
      )
      await this.#engine
        .finalizeFailed(
          taskId,
          `post-processing failed after ${attempts} attempts: ${message}`,
          attempts,
        )
        .catch((e) => this.#log('error', `finishing task ${taskId} failed`, { taskId, err: e }))
      return 'failed'
    }
    this.#log(
      'warn',
      `post-processing of task ${taskId} failed (attempt ${attempts}), retried in ${Math.round(delay / 1000)} s: ${message}`,
      { taskId, err: error },
    )
    await this.#db.query(
      `update post_jobs set lease_until_ms = null, due_ms = $3, last_error = $4
       where task_id = $1 and attempts = $2`,
      [taskId, attempts, now + delay, toStorableText(message.slice(0, 2000))],
    )
    return 'retry'
  }
}
