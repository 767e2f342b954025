// Prometheus metrics (prom-client), served at GET /metrics in the text format.
// Counters and histograms are this process's (sum them across processes);
// gauges of the store (tasks, outbox, timers, jobs) are read when scraped, so
// every process reports the same deployment-wide figures for those.
import client from 'prom-client'
import type { Db } from '../store/db.ts'

/** What the media plane reports when scraped. */
export interface MediaStats {
  /** Recording processes (segment writers) running in this process. */
  recordingProcesses: number
  /** Publishers connected to this process, by ingest. */
  publishers: Record<string, number>
  /** WHIP's UDP ports (ONLINE_RECORD_WEBRTC_PORTS): taken by publishes, and free for more. */
  webrtcPorts?: { inUse: number; free: number }
}

/** What the whiteboard channel reports when scraped. */
export interface BoardStats {
  /** Boards in memory in this process, their clients, their apps' worker threads and those threads' heap. */
  boards: number
  clients: number
  workers: number
  heapBytes: number
}

export class Metrics {
  readonly registry = new client.Registry()
  readonly apiRequests: client.Counter<'action' | 'code'>
  readonly apiDuration: client.Histogram<'action'>
  readonly callbackAttempts: client.Counter<'outcome'>
  readonly callbackDuration: client.Histogram<'outcome'>
  readonly postProcessing: client.Histogram<'outcome'>
  readonly storageFailures: client.Counter<'operation'>
  readonly stalls: client.Counter
  readonly whipRefusals: client.Counter<'reason'>
  #snapshot: Promise<StoreSnapshot> | undefined
  #snapshotAt = 0
  #reading = false

  constructor(options: {
    db: Db
    now: () => number
    media?: () => MediaStats
    boards?: () => BoardStats
  }) {
    const r = this.registry
    client.collectDefaultMetrics({ register: r, prefix: 'online_record_' })
    this.apiRequests = new client.Counter({
      name: 'online_record_api_requests_total',
      help: 'TIW API requests by action and error code (empty code: success)',
      labelNames: ['action', 'code'],
      registers: [r],
    })
    this.apiDuration = new client.Histogram({
      name: 'online_record_api_request_duration_seconds',
      help: 'TIW API request latency, from the request read to the answer',
      labelNames: ['action'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    })
    this.callbackAttempts = new client.Counter({
      name: 'online_record_callback_attempts_total',
      help: 'Callback attempts by outcome: delivered, retry (failed, tried again later), failed (the last)',
      labelNames: ['outcome'],
      registers: [r],
    })
    this.callbackDuration = new client.Histogram({
      name: 'online_record_callback_attempt_duration_seconds',
      help: 'Callback attempt latency, request to complete answer',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    })
    this.postProcessing = new client.Histogram({
      name: 'online_record_postprocessing_duration_seconds',
      help: 'Post-processing attempts by outcome: finished, retry, failed (gave up), waiting (media not stored yet), lost (the lease was lost: stopped, nothing stored)',
      labelNames: ['outcome'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [r],
    })
    this.storageFailures = new client.Counter({
      name: 'online_record_storage_failures_total',
      help: 'S3 operations (put, fetch, delete) that failed after their retries',
      labelNames: ['operation'],
      registers: [r],
    })
    this.whipRefusals = new client.Counter({
      name: 'online_record_whip_refusals_total',
      help: 'WHIP offers refused by a quota of the tenant (user, room, app, connecting_user, connecting_app: 429) or the capacity of the service (capacity, ports, cpu: 503)',
      labelNames: ['reason'],
      registers: [r],
    })
    const snapshot = () => this.#readStore(options.db, options.now)
    this.stalls = new client.Counter({
      name: 'online_record_stalls_total',
      help: 'Times this process did not run for longer than ONLINE_RECORD_STALL_S (each counted as an exception of the tasks it was recording)',
      registers: [r],
    })
    new client.Gauge({
      name: 'online_record_tasks',
      help: 'Tasks not finished, by state (STOPPED: waiting for or in post-processing)',
      labelNames: ['state'],
      registers: [r],
      async collect() {
        const s = await snapshot()
        for (const state of ['PREPARED', 'RECORDING', 'PAUSED', 'STOPPED'] as const)
          this.set({ state }, s.tasks[state] ?? 0)
      },
    })
    new client.Gauge({
      name: 'online_record_outbox_pending',
      help: 'Callback events not yet delivered or given up',
      registers: [r],
      async collect() {
        this.set((await snapshot()).pending)
      },
    })
    new client.Gauge({
      name: 'online_record_outbox_oldest_due_age_seconds',
      help: 'How long the oldest due callback event has been due (0: none due)',
      registers: [r],
      async collect() {
        this.set((await snapshot()).oldestDueAgeS)
      },
    })
    new client.Gauge({
      name: 'online_record_timers_due',
      help: 'Timers (idle, long pause, maximum duration) due and not yet fired',
      registers: [r],
      async collect() {
        this.set((await snapshot()).timersDue)
      },
    })
    new client.Gauge({
      name: 'online_record_postprocessing_jobs',
      help: 'Post-processing jobs queued or running, in the whole deployment',
      registers: [r],
      async collect() {
        this.set((await snapshot()).postJobs)
      },
    })
    const media = options.media
    if (media) {
      new client.Gauge({
        name: 'online_record_recording_processes',
        help: 'Recording processes (one per segment being written) in this process',
        registers: [r],
        collect() {
          this.set(media().recordingProcesses)
        },
      })
      new client.Gauge({
        name: 'online_record_publishers',
        help: 'Publishers connected to this process, by ingest',
        labelNames: ['ingest'],
        registers: [r],
        collect() {
          for (const [ingest, n] of Object.entries(media().publishers)) this.set({ ingest }, n)
        },
      })
      new client.Gauge({
        name: 'online_record_webrtc_ports',
        help: 'UDP ports of ONLINE_RECORD_WEBRTC_PORTS taken by WHIP publishes in this process (in_use) and left for more (free)',
        labelNames: ['state'],
        registers: [r],
        collect() {
          const ports = media().webrtcPorts
          if (ports === undefined) return
          this.set({ state: 'in_use' }, ports.inUse)
          this.set({ state: 'free' }, ports.free)
        },
      })
    }
    const boards = options.boards
    if (boards) {
      new client.Gauge({
        name: 'online_record_whiteboards',
        help: 'Whiteboards in memory in this process (boards), their clients, and the board worker threads (one per app with boards open)',
        labelNames: ['what'],
        registers: [r],
        collect() {
          const b = boards()
          this.set({ what: 'boards' }, b.boards)
          this.set({ what: 'clients' }, b.clients)
          this.set({ what: 'workers' }, b.workers)
        },
      })
      new client.Gauge({
        name: 'online_record_whiteboard_heap_bytes',
        help: 'Heap used by the board worker threads of this process',
        registers: [r],
        collect() {
          this.set(boards().heapBytes)
        },
      })
    }
  }

  async text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  /** One read of the store per scrape, shared by its gauges. */
  #readStore(db: Db, now: () => number): Promise<StoreSnapshot> {
    const at = performance.now()
    // At most one read under way: a store that does not answer is not asked
    // again by every scrape, and a scrape waits for it at most 3 s.
    if (!this.#reading && (this.#snapshot === undefined || at - this.#snapshotAt > 500)) {
      this.#snapshotAt = at
      this.#reading = true
      const nowMs = now()
      const read = db
        .query<{
          tasks: Record<string, number> | null
          pending: number
          oldestDue: number | null
          timersDue: number
          postJobs: number
        }>(
          `select
             (select json_object_agg(status, n) from (select status, count(*)::int4 as n from tasks
                where status in ('PREPARED', 'RECORDING', 'PAUSED') group by status) s) as tasks,
             (select count(*)::int4 from events where state = 'pending') as pending,
             (select min(next_attempt_ms) from events where state = 'pending' and next_attempt_ms <= $1) as "oldestDue",
             (select count(*)::int4 from timers where due_ms <= $1) as "timersDue",
             (select count(*)::int4 from post_jobs) as "postJobs"`,
          [nowMs],
        )
        .then(([row]) => ({
          tasks: { ...(row?.tasks ?? {}), STOPPED: row?.postJobs ?? 0 },
          pending: row?.pending ?? 0,
          oldestDueAgeS: row?.oldestDue == null ? 0 : Math.max(0, (nowMs - row.oldestDue) / 1000),
          timersDue: row?.timersDue ?? 0,
          postJobs: row?.postJobs ?? 0,
        }))
        .finally(() => {
          this.#reading = false
        })
      let timer: NodeJS.Timeout | undefined
      this.#snapshot = Promise.race([
        read,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error('the store did not answer within 3 s')), 3000)
        }),
      ]).finally(() => clearTimeout(timer))
      // A failed read fails its scrapes only; it is not an unhandled rejection.
      this.#snapshot.catch(() => {})
    }
    return this.#snapshot as Promise<StoreSnapshot>
  }
}

interface StoreSnapshot {
  tasks: Record<string, number>
  pending: number
  oldestDueAgeS: number
  timersDue: number
  postJobs: number
}
