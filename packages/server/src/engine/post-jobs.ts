// The post-processing worker pool. A stopped task's job is a row in
// `post_jobs`, written by the STOPPED transition; any process's pool takes a
// due job with a lease (FOR UPDATE SKIP LOCKED), renews the lease while it
// works, and the FINISHED transition deletes it. A failure is retried with
// backoff and logged; after the last attempt the task finishes with
// EXCEPTION and what was stored. Timers never wait for this work, and a Stop
// never does either.
import { toStorableText } from '@online-record/protocol'
import type { Clock } from '../clock.ts'
import type { Db } from '../store/db.ts'
import { Waker } from '../waker.ts'
import type { TaskEngine } from './engine.ts'

export interface PostJobSettings {
  /** Jobs worked on at once in this process. */
  concurrency: number
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
  concurrency: 1,
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

interface Claimed {
  taskId: string
  attempts: number
}

export class PostJobs {
  readonly #db: Db
  readonly #clock: Clock
  readonly #engine: TaskEngine
  readonly #settings: PostJobSettings
  readonly #log: PostJobLog
  readonly #observe: (outcome: 'finished' | 'retry' | 'failed' | 'waiting', seconds: number) => void
  readonly #running = new Set<Promise<void>>()
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
    observe?: (outcome: 'finished' | 'retry' | 'failed' | 'waiting', seconds: number) => void
  }) {
    this.#db = options.db
    this.#clock = options.clock
    this.#engine = options.engine
    this.#settings = { ...DEFAULT_POST_JOB_SETTINGS, ...options.settings }
    this.#log = options.log ?? (() => {})
    this.#observe = options.observe ?? (() => {})
  }

  /** Jobs being worked on in this process now. */
  get inFlight(): number {
    return this.#running.size
  }

  async start(): Promise<void> {
    if (this.#active) return
    this.#active = true
    // No other process can hold a lease on this store: one left by a crash is void.
    if (this.#settings.soleProcess) {
      await this.#db.query(
        'update post_jobs set lease_until_ms = null where lease_until_ms is not null',
      )
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

  async #claim(): Promise<Claimed | undefined> {
    const now = this.#clock.now()
    const [row] = await this.#db.query<Claimed>(
      `update post_jobs set lease_until_ms = $2, attempts = attempts + 1
       where task_id = (
         select task_id from post_jobs
         where due_ms <= $1 and (lease_until_ms is null or lease_until_ms <= $1)
         order by due_ms limit 1 for update skip locked)
       returning task_id as "taskId", attempts`,
      [now, now + this.#settings.leaseMs],
    )
    return row
  }

  async #work(job: Claimed): Promise<void> {
    const { taskId, attempts } = job
    const renew = setInterval(() => {
      void this.#db
        .query('update post_jobs set lease_until_ms = $3 where task_id = $1 and attempts = $2', [
          taskId,
          attempts,
          this.#clock.now() + this.#settings.leaseMs,
        ])
        .catch(() => {})
    }, this.#settings.leaseMs / 3)
    let reported = 0
    const progress = (stage: string, fraction: number) => {
      const now = performance.now()
      if (now - reported < 1000 && fraction < 1) return
      reported = now
      void this.#db
        .query('update post_jobs set stage = $2, progress = $3 where task_id = $1', [
          taskId,
          stage,
          Math.round(Math.min(1, Math.max(0, fraction)) * 100),
        ])
        .catch(() => {})
    }
    const started = performance.now()
    const seconds = () => (performance.now() - started) / 1000
    try {
      await this.#engine.finalize(taskId, progress)
      this.#observe('finished', seconds())
    } catch (error) {
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
        .finalizeFailed(taskId, `post-processing failed after ${attempts} attempts: ${message}`)
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
