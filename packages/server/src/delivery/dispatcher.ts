// The callback dispatcher: claims due outbox events, POSTs them to the app's
// callback URL, logs every attempt and schedules the next one.
//
// Guarantees:
// - At least once: an event leaves `pending` only when an attempt got a 2xx
//   (`delivered`) or the last attempt failed (`failed`, kept for resending).
// - Per-task order: only a task's head (its pending event with no pending
//   event before it) can be claimed, so a later event waits while an earlier
//   one is in flight or waiting for a retry.
// - Never the same event twice at once: a claim leases the event past the
//   attempt's timeout; an outcome is applied only while its claim is the
//   latest (`attempts` is the claim's token).
import { performance } from 'node:perf_hooks'
import { toStorableText } from '@online-record/protocol'
import { Agent, request } from 'undici'
import type { Clock } from '../clock.ts'
import { callbackUrlProblem, publicOnlyLookup } from '../net/url-policy.ts'
import type { Db } from '../store/db.ts'
import { Waker } from '../waker.ts'
import { buildCallbackRequest, type OutboxEvent } from './message.ts'
import { type CallbackAttemptRow, type CallbackState, NO_CALLBACK_URL } from './outbox.ts'
import { DEFAULT_RETRY_SCHEDULE_S, retryAfterMs, retryDelayMs, retryWindowMs } from './schedule.ts'

export interface DeliverySettings {
  /** Seconds from an attempt to the `ExpireTime` it carries. Default 600. */
  signValiditySeconds: number
  /** An attempt without a complete 2xx answer within this many ms (headers and body, in all) failed. Default 5000. */
  timeoutMs: number
  /** Seconds before attempts 2, 3, …; its length + 1 is the number of attempts. */
  retryScheduleS: readonly number[]
  /** Attempts in flight at once in this process. Default 64. */
  concurrency: number
  /** Attempts in flight at once to one app's callback URL. Default 16. */
  endpointConcurrency: number
  /** Refuse loopback and private-network callback addresses (multi-tenant hosting). */
  blockPrivate: boolean
  /** Extra time past `timeoutMs` a claimed event stays leased to its attempt. Default 10 s. */
  leaseMarginMs: number
  /** Due events are looked for at least this often (retries, other processes). Default 500. */
  pollMs: number
  /**
   * Where a claimed event's lease lives: `database` (a row lease other
   * processes respect; needed when several share the store) or `memory` (the
   * store is this process's alone, as PGlite's directory is: one write less
   * per attempt, and nothing to wait for after a crash).
   */
  leases: 'database' | 'memory'
  userAgent: string
}

export const DEFAULT_DELIVERY_SETTINGS: DeliverySettings = {
  signValiditySeconds: 600,
  timeoutMs: 5000,
  retryScheduleS: DEFAULT_RETRY_SCHEDULE_S,
  concurrency: 64,
  endpointConcurrency: 16,
  blockPrivate: false,
  leaseMarginMs: 10_000,
  pollMs: 500,
  leases: 'database',
  userAgent: 'online-record',
}

/** Least time between claims that found less than there was room for. */
const COALESCE_MS = 10

/** Bytes of a response body kept in the attempt log. */
export const RESPONSE_LOG_BYTES = 4096

interface Claimed extends OutboxEvent {
  retryBase: number
  callbackUrl: string
  callbackKey: string
  webhookSecret: string
  previousWebhookSecret: string | null
  previousWebhookSecretUntilMs: number | null
}

/** One attempt's outcome, as the service's metrics and logs see it (never its body). */
export interface AttemptObserved {
  /** delivered; retry: failed, another attempt comes; failed: the last attempt failed. */
  outcome: 'delivered' | 'retry' | 'failed'
  eventId: string
  sdkAppId: number
  taskId: string
  attempt: number
  status: number | null
  error: string | null
  latencyMs: number
}

/** An attempt as logged, and what it means for its event. */
interface Outcome extends CallbackAttemptRow {
  eventId: string
  sdkAppId: number
  state: CallbackState
  nextMs: number | null
}

export class Dispatcher {
  readonly #db: Db
  readonly #clock: Clock
  readonly #settings: DeliverySettings
  readonly #random: () => number
  readonly #log: (message: string, fields?: Record<string, unknown>) => void
  readonly #observe: (attempt: AttemptObserved) => void
  readonly #agent: Agent
  /** Attempts whose HTTP exchange is under way: at most `concurrency`. */
  readonly #inFlight = new Set<Promise<void>>()
  /**
   * Claimed events whose outcome is not written yet: at most twice the
   * concurrency, so claiming goes on while outcomes are being written. This
   * bounds what a kill can make repeat.
   */
  #unsettled = 0
  /** With leases in memory: the events claimed and not yet settled. */
  readonly #held = new Set<string>()
  /** HTTP exchanges under way per app: at most `endpointConcurrency`. */
  readonly #perApp = new Map<number, number>()
  #outcomes: Outcome[] = []
  #flushing: Promise<void> | undefined
  #running = false
  #loop: Promise<void> | undefined
  readonly #waker = new Waker()
  #stopListening: (() => Promise<void>) | undefined
  #fullClaims = 0
  #lastClaim = Number.NEGATIVE_INFINITY
  #trickle = false
  #analyzedAt = Number.NEGATIVE_INFINITY

  constructor(options: {
    db: Db
    clock: Clock
    settings?: Partial<DeliverySettings>
    /** Jitter source; tests fix it. */
    random?: () => number
    log?: (message: string, fields?: Record<string, unknown>) => void
    /** Told of every attempt's outcome: for metrics and the log of failed attempts. */
    observe?: (attempt: AttemptObserved) => void
  }) {
    this.#db = options.db
    this.#clock = options.clock
    this.#settings = { ...DEFAULT_DELIVERY_SETTINGS, ...options.settings }
    this.#random = options.random ?? Math.random
    this.#log = options.log ?? (() => {})
    this.#observe = options.observe ?? (() => {})
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: this.#settings.endpointConcurrency,
      connect: {
        timeout: this.#settings.timeoutMs,
        ...(this.#settings.blockPrivate ? { lookup: publicOnlyLookup } : {}),
      },
    })
  }

  get settings(): Readonly<DeliverySettings> {
    return this.#settings
  }

  /** Starts delivering in the background, woken by `wake()` and by NOTIFY on PostgreSQL. */
  async start(): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#stopListening = await this.#db.listen('online_record_events', () => this.wake())
    this.#loop = this.#run()
  }

  /** Whether this process holds the event in flight (leases in memory). */
  holds(eventId: string): boolean {
    return this.#held.has(eventId)
  }

  /** Events were written or became due: look for work now. */
  wake(): void {
    this.#waker.wake()
  }

  /** Stops claiming, lets attempts in flight finish, writes their outcomes. */
  async close(): Promise<void> {
    this.#running = false
    this.wake()
    await this.#loop
    await this.#stopListening?.()
    await Promise.all(this.#inFlight)
    await this.#flush()
    await this.#agent.close()
  }

  /**
   * One pass for tests and tools: claims what is due (up to the concurrency),
   * sends it, waits for the answers and writes the outcomes. Returns how many
   * attempts were made.
   */
  async runOnce(): Promise<number> {
    const claimed = await this.#claimAndSend(this.#settings.concurrency)
    await Promise.all(this.#inFlight)
    await this.#flush()
    return claimed
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#waker.reset()
      const free = Math.min(
        this.#settings.concurrency - this.#inFlight.size,
        2 * this.#settings.concurrency - this.#unsettled,
      )
      let claimed = 0
      // Claims come in batches of at least half the concurrency while attempts
      // are under way: a statement costs about as much for one event as for
      // a dozen (measured on PGlite: 3.3 ms for 14 rows, 4.1 ms for 28).
      const worth = this.#inFlight.size === 0 ? 1 : Math.ceil(this.#settings.concurrency / 2)
      if (free >= worth) {
        // A trickle of events (each commit wakes the dispatcher) is claimed
        // at most every COALESCE_MS, several commits' events at a time: on
        // PGlite every claim takes the one connection from the API.
        const wait = this.#lastClaim + COALESCE_MS - performance.now()
        if (this.#trickle && wait > 0) await new Promise((r) => setTimeout(r, wait))
        try {
          claimed = await this.#claimAndSend(free)
        } catch (error) {
          this.#log('callback claim failed', { err: error })
        }
        this.#lastClaim = performance.now()
        this.#trickle = claimed < free
      }
      // A full batch means more may be due: go on at once while there is room.
      if (claimed > 0 && claimed === free) continue
      if (!this.#waker.woken && this.#running) await this.#waker.sleep(this.#settings.pollMs)
    }
  }

  async #claimAndSend(limit: number): Promise<number> {
    const claimed = await this.#claim(limit)
    this.#noteBacklog(claimed.length === limit)
    this.#unsettled += claimed.length
    for (const event of claimed) {
      if (this.#settings.leases === 'memory') this.#held.add(event.eventId)
      this.#perApp.set(event.sdkAppId, (this.#perApp.get(event.sdkAppId) ?? 0) + 1)
      const attempt: Promise<void> = this.#attempt(event)
        .then((outcome) => {
          this.#observe({
            outcome:
              outcome.state === 'delivered'
                ? 'delivered'
                : outcome.state === 'pending'
                  ? 'retry'
                  : 'failed',
            eventId: outcome.eventId,
            sdkAppId: outcome.sdkAppId,
            taskId: event.taskId,
            attempt: outcome.attempt,
            status: outcome.status,
            error: outcome.error,
            latencyMs: outcome.latencyMs,
          })
          this.#outcomes.push(outcome)
          void this.#flushSoon()
        })
        .finally(() => {
          this.#inFlight.delete(attempt)
          const n = (this.#perApp.get(event.sdkAppId) ?? 1) - 1
          if (n > 0) this.#perApp.set(event.sdkAppId, n)
          else this.#perApp.delete(event.sdkAppId)
          // Room for another attempt.
          this.wake()
        })
      this.#inFlight.add(attempt)
    }
    return claimed.length
  }

  /**
   * A backlog (claims that keep coming back full) is when the outbox's
   * statistics matter and are most likely stale: a burst of events since the
   * last ANALYZE makes the planner sort every due event instead of reading an
   * index range. ANALYZE samples the table; once a minute at most.
   */
  #noteBacklog(full: boolean): void {
    this.#fullClaims = full ? this.#fullClaims + 1 : 0
    if (this.#fullClaims < 3 || performance.now() - this.#analyzedAt < 60_000) return
    this.#analyzedAt = performance.now()
    this.#db.exec('analyze events').catch((error) => this.#log('analyze failed', { err: error }))
  }

  /**
   * Claims up to `limit` due task heads in one statement, at most
   * `endpointConcurrency` in flight per app, and leases them for this attempt.
   *
   * It looks at a window of the earliest due events (an index range that stops
   * early, whatever the table's statistics say). A due event that is not its
   * task's head is pushed back: behind its head's retry, or a moment while the
   * head is in flight; a head's outcome makes its successor due at once. So
   * later events of slow tasks do not fill the window and starve others.
   */
  async #claim(limit: number): Promise<Claimed[]> {
    const now = this.#clock.now()
    const apps = [...this.#perApp.keys()]
    const room = apps.map((a) => this.#settings.endpointConcurrency - (this.#perApp.get(a) ?? 0))
    const leaseUntil = now + this.#settings.timeoutMs + this.#settings.leaseMarginMs
    const memory = this.#settings.leases === 'memory'
    const params: unknown[] = [now, limit, apps, room, this.#settings.endpointConcurrency]
    const columns = `e.event_id as "eventId", e.task_id as "taskId", e.seq, e.sdk_app_id as "sdkAppId",
         e.event_type as "eventType", e.timestamp_s as "timestampS", e.event_data::text as data,
         e.retry_base as "retryBase", a.callback_url as "callbackUrl",
         a.callback_key as "callbackKey", a.webhook_secret as "webhookSecret",
         a.previous_webhook_secret as "previousWebhookSecret",
         a.previous_webhook_secret_until_ms as "previousWebhookSecretUntilMs"`
    // Leased in the database: the row lease is the claim. In memory (one
    // process owns the store): the events this process holds are left out.
    const take = memory
      ? `select ${columns}, e.attempts + 1 as attempt
         from picked join events e using (event_id) join apps a on a.sdk_app_id = e.sdk_app_id`
      : `, locked as (
           select e.event_id from events e join picked using (event_id)
           where e.state = 'pending' and e.next_attempt_ms <= $1
           for update of e skip locked
         )
         update events e set attempts = e.attempts + 1, next_attempt_ms = $8, lease_until_ms = $8
         from locked, apps a
         where e.event_id = locked.event_id and a.sdk_app_id = e.sdk_app_id
         returning ${columns}, e.attempts as attempt`
    // $6: the events this process holds; $7: the retry window; $8: the end of a lease.
    params.push(memory ? [...this.#held] : [], retryWindowMs(this.#settings.retryScheduleS))
    if (!memory) params.push(leaseUntil)
    return this.#db.query<Claimed>(
      `with scan as (
         select * from online_record_due_window($1, greatest($2 * 4, 32), $6::text[])
       ),
       checked as (
         select scan.*, head.next_attempt_ms as head_next, head.lease_until_ms as head_lease
         from scan left join lateral (
           select p.next_attempt_ms, p.lease_until_ms from events p
           where p.task_id = scan.task_id and p.state = 'pending' and p.seq < scan.seq
           order by p.seq limit 1) head on true
       ),
       pushed as (
         update events e set next_attempt_ms = case
             when c.head_lease is not null and c.head_lease > $1 then $1 + 250
             else greatest(c.head_next, $1 + 250) end
         from checked c
         where e.event_id = any(array(select event_id from checked where head_next is not null))
           and e.event_id = c.event_id and e.state = 'pending'
       ),
       heads as (
         select c.event_id, c.sdk_app_id, c.next_attempt_ms, a.callback_url = '' as no_url
         from checked c join apps a using (sdk_app_id) where c.head_next is null
       ),
       -- An app without a callback URL gets no attempts: its events wait
       -- until one is set (which makes them due) or, past the retry window,
       -- are failed.
       parked as (
         update events e set
           next_attempt_ms = greatest(e.created_at_ms + $7::int8, $1 + 1000),
           state = case when e.created_at_ms + $7::int8 <= $1 then 'failed' else 'pending' end,
           last_error = '${NO_CALLBACK_URL}'
         from heads h
         where e.event_id = any(array(select event_id from heads where no_url))
           and e.event_id = h.event_id
       ),
       due as (
         select event_id, sdk_app_id,
           row_number() over (partition by sdk_app_id order by next_attempt_ms, event_id) as n
         from heads where not no_url
       ),
       picked as (
         select due.event_id from due
         left join unnest($3::int8[], $4::int4[]) as r (sdk_app_id, room) using (sdk_app_id)
         where due.n <= coalesce(r.room, $5)
         limit $2
       )
       ${take}`,
      params,
    )
  }

  async #attempt(event: Claimed): Promise<Outcome> {
    const s = this.#settings
    const atMs = this.#clock.now()
    const base = {
      eventId: event.eventId,
      sdkAppId: event.sdkAppId,
      attempt: event.attempt,
      atMs,
      url: event.callbackUrl,
    }
    const problem = callbackUrlProblem(event.callbackUrl, s.blockPrivate)
    if (problem !== undefined) {
      return this.#failed(event, { ...base, status: null, latencyMs: 0, response: null }, problem)
    }
    const { body, headers } = buildCallbackRequest(
      event,
      {
        callbackKey: event.callbackKey,
        webhookSecret: event.webhookSecret,
        previousWebhookSecret:
          event.previousWebhookSecretUntilMs !== null && atMs < event.previousWebhookSecretUntilMs
            ? event.previousWebhookSecret
            : null,
      },
      { nowMs: atMs, signValiditySeconds: s.signValiditySeconds, userAgent: s.userAgent },
    )
    const started = performance.now()
    let status: number | null = null
    let retryAfter: string | undefined
    let response: string | null = null
    try {
      // undici's own timers, not an AbortSignal per request (its DOMException
      // showed in profiles): the answer's head within the timeout; then the
      // body must be complete by the same deadline, however it trickles in.
      const res = await request(event.callbackUrl, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.#agent,
        headersTimeout: s.timeoutMs,
        bodyTimeout: s.timeoutMs,
      })
      status = res.statusCode
      const header = res.headers['retry-after']
      retryAfter = Array.isArray(header) ? header[0] : header
      response = await readPrefix(
        res.body,
        RESPONSE_LOG_BYTES,
        s.timeoutMs - (performance.now() - started),
      )
    } catch (error) {
      const latencyMs = Math.round(performance.now() - started)
      return this.#failed(
        event,
        { ...base, status, latencyMs, response: response && toStorableText(response) },
        toStorableText(describeError(error, s.timeoutMs)),
      )
    }
    const latencyMs = Math.round(performance.now() - started)
    const outcome = { ...base, status, latencyMs, response: toStorableText(response) }
    if (status >= 200 && status < 300) {
      return { ...outcome, error: null, state: 'delivered', nextMs: null }
    }
    const asked =
      status === 429 || status === 503 ? retryAfterMs(retryAfter, this.#clock.now()) : undefined
    return this.#failed(event, outcome, null, asked)
  }

  /** The outcome of a failed attempt: the next one per the schedule (or as asked), or `failed`. */
  #failed(
    event: Claimed,
    outcome: Omit<Outcome, 'error' | 'state' | 'nextMs'>,
    error: string | null,
    askedDelayMs?: number,
  ): Outcome {
    const delay = retryDelayMs(
      this.#settings.retryScheduleS,
      event.attempt - event.retryBase,
      this.#random,
    )
    if (delay === undefined) {
      this.#log('callback failed for good', {
        eventId: event.eventId,
        attempts: event.attempt - event.retryBase,
      })
      return { ...outcome, error, state: 'failed', nextMs: null }
    }
    const nextMs = this.#clock.now() + (askedDelayMs ?? delay)
    return { ...outcome, error, state: 'pending', nextMs }
  }

  #flushSoon(): Promise<void> {
    this.#flushing ??= new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#flush())
      .finally(() => {
        this.#flushing = undefined
        if (this.#outcomes.length > 0) void this.#flushSoon()
      })
    return this.#flushing
  }

  /**
   * Writes the outcomes gathered so far. A batch the store refuses is split
   * and written row by row, so one bad row (whatever it holds) never keeps
   * the others, or the dispatcher, waiting; a row refused even alone is
   * written once more without the answer's text, and if that fails too it is
   * logged and left to its lease (the event is attempted again).
   */
  async #flush(): Promise<void> {
    while (this.#outcomes.length > 0) {
      const batch = this.#outcomes
      this.#outcomes = []
      try {
        await this.#writeOutcomes(batch)
      } catch (error) {
        if (isDataError(error)) {
          this.#log('the store refused a batch of callback outcomes; writing them one by one', {
            err: error,
          })
          for (const outcome of batch) await this.#writeOne(outcome)
        } else if (this.#running) {
          // The store is unreachable: kept and written with the next batch;
          // the leases hold the events meanwhile.
          this.#outcomes.unshift(...batch)
          this.#log('writing callback outcomes failed', { err: error })
          await new Promise((r) => setTimeout(r, 200))
          continue
        } else {
          this.#log(
            'callback outcomes could not be written at shutdown; their events will be attempted again',
            {
              err: error,
            },
          )
        }
      }
      this.#settled(batch)
    }
  }

  async #writeOne(outcome: Outcome): Promise<void> {
    try {
      await this.#writeOutcomes([outcome])
      return
    } catch (error) {
      this.#log('a callback outcome was refused by the store; writing it without the answer', {
        eventId: outcome.eventId,
        err: error,
      })
    }
    try {
      const note = `the answer could not be stored (status ${outcome.status ?? 'none'})`
      await this.#writeOutcomes([{ ...outcome, response: null, error: note }])
    } catch (error) {
      this.#log('a callback outcome could not be written; the event will be attempted again', {
        eventId: outcome.eventId,
        err: error,
      })
    }
  }

  #settled(batch: readonly Outcome[]): void {
    this.#unsettled -= batch.length
    for (const o of batch) this.#held.delete(o.eventId)
    // Delivered heads let their tasks' next events go.
    this.wake()
  }

  /**
   * Writes outcomes in one statement: the attempts into the log, the events'
   * new state, and for an event that will be retried, its task's later
   * events pushed behind it (they cannot go first, and would otherwise be
   * looked at by every claim meanwhile).
   */
  async #writeOutcomes(batch: readonly Outcome[]): Promise<void> {
    const col = <K extends keyof Outcome>(k: K) => batch.map((o) => o[k])
    await this.#db.query(
      `with r as (
         select * from unnest($1::text[], $2::int8[], $3::int4[], $4::int8[], $5::text[],
           $6::int4[], $7::int4[], $8::text[], $9::text[], $10::text[], $11::int8[])
           as r (event_id, sdk_app_id, attempt, at_ms, url, status, latency_ms, response, error,
             state, next_ms)
       ),
       log as (
         insert into callback_attempts (event_id, attempt, sdk_app_id, at_ms, url, status,
           latency_ms, response, error)
         select event_id, attempt, sdk_app_id, at_ms, url, status, latency_ms, response, error
         from r
         on conflict do nothing
       ),
       head as (
         update events e set state = r.state, attempts = r.attempt,
           next_attempt_ms = coalesce(r.next_ms, e.next_attempt_ms), lease_until_ms = null,
           last_attempt_ms = r.at_ms, last_status = r.status, last_error = r.error,
           delivered_at_ms = case when r.state = 'delivered' then r.at_ms else e.delivered_at_ms end
         from r
         where e.event_id = r.event_id and e.attempts = r.attempt - $12 and e.state = 'pending'
         returning e.task_id, e.seq, r.state, coalesce(r.next_ms, r.at_ms) as next_ms
       )
       -- Retried: the task's later events wait behind it. Settled: the next one goes now.
       update events later set next_attempt_ms = case
           when head.state = 'pending' then head.next_ms else least(later.next_attempt_ms, head.next_ms) end
       from head
       where later.task_id = head.task_id and later.state = 'pending' and later.seq > head.seq
         and (head.state = 'pending' and later.next_attempt_ms < head.next_ms
           or head.state <> 'pending' and later.seq = (select min(n.seq) from events n
             where n.task_id = head.task_id and n.state = 'pending' and n.seq > head.seq))`,
      [
        col('eventId'),
        col('sdkAppId'),
        col('attempt'),
        col('atMs'),
        col('url'),
        col('status'),
        col('latencyMs'),
        col('response'),
        col('error'),
        col('state'),
        col('nextMs'),
        // The claim's token: with leases in memory the row still holds the previous count.
        this.#settings.leases === 'memory' ? 1 : 0,
      ],
    )
  }
}

/** A statement refused for what it holds (SQLSTATE classes 22 and 23), not for the store being away. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}

/** Bytes of an answer read at most; a receiver answering megabytes is not read to the end. */
const MAX_RESPONSE_READ_BYTES = 1024 * 1024

export class DeadlineError extends Error {
  readonly code = 'ERR_CALLBACK_DEADLINE'
}

/**
 * The first `limit` bytes of a body as text; the rest (up to a megabyte) is
 * read and dropped so the connection stays usable. The whole body must have
 * arrived within `deadlineMs`, or the answer counts as none.
 */
async function readPrefix(
  body: AsyncIterable<Uint8Array> & { destroy(error?: Error): void },
  limit: number,
  deadlineMs: number,
): Promise<string> {
  const kept: Buffer[] = []
  let size = 0
  let total = 0
  const timer = setTimeout(
    () => body.destroy(new DeadlineError('the answer did not arrive whole in time')),
    Math.max(0, deadlineMs),
  )
  try {
    for await (const chunk of body) {
      total += chunk.length
      if (size < limit) {
        const part = Buffer.from(chunk.subarray(0, limit - size))
        kept.push(part)
        size += part.length
      }
      if (total > MAX_RESPONSE_READ_BYTES) break
    }
  } finally {
    clearTimeout(timer)
  }
  return Buffer.concat(kept).toString('utf8')
}

function describeError(error: unknown, timeoutMs: number): string {
  const e = error as { name?: string; code?: string; message?: string; cause?: unknown }
  const timeouts = [
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_CONNECT_TIMEOUT',
    'ERR_CALLBACK_DEADLINE',
  ]
  if (e?.name === 'TimeoutError' || timeouts.includes(e?.code ?? '')) {
    return `no answer within ${timeoutMs} ms`
  }
  const cause = e?.cause as { code?: string; message?: string } | undefined
  const message = cause?.message ?? e?.message ?? String(error)
  const code = cause?.code ?? e?.code
  return code && !message.includes(code) ? `${code}: ${message}` : message
}
