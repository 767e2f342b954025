// Composes the service: store, apps, task engine, timers, the post-processing
// pool, the API, and the media plane (ingests, recorder, storage).
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { buildApi } from './api/server.ts'
import { pruneSignatures } from './api/signature-ledger.ts'
import { Apps, parseAppsEnv } from './apps/apps.ts'
import { type Clock, systemClock } from './clock.ts'
import type { Config } from './config.ts'
import { Dispatcher } from './delivery/dispatcher.ts'
import { retryWindowMs } from './delivery/schedule.ts'
import { TaskEngine } from './engine/engine.ts'
import type { RecorderPort } from './engine/ports.ts'
import { PostJobs } from './engine/post-jobs.ts'
import { UserSigAuthorizer } from './media/authorizer.ts'
import { Manifest } from './media/capture/manifest.ts'
import { MediaRecorder } from './media/capture/recorder.ts'
import { ffmpegSegments } from './media/capture/segment-writer.ts'
import { resolveMediaTools } from './media/ffmpeg/ffmpeg-tools.ts'
import { RtmpIngest } from './media/ingest/rtmp/rtmp-ingest.ts'
import { type MediaLog, PostProcessor } from './media/post/post-process.ts'
import { registerFileRoute } from './media/storage/file-route.ts'
import { LocalStorage } from './media/storage/local.ts'
import { type ObjectStorage, recordingKey } from './media/storage/object-storage.ts'
import { S3Storage } from './media/storage/s3.ts'
import { type Db, openDb } from './store/db.ts'
import { vacuumAnalyze } from './store/maintenance.ts'
import { migrate } from './store/migrations.ts'
import { serviceSecret } from './store/secrets.ts'
import { VERSION } from './version.ts'

export interface Service {
  url: string
  /** The RTMP ingest's port (undefined with a recorder supplied from outside). */
  rtmpPort: number | undefined
  db: Db
  apps: Apps
  engine: TaskEngine
  dispatcher: Dispatcher
  postJobs: PostJobs
  close(): Promise<void>
}

export interface ServiceOptions {
  clock?: Clock
  recorder?: RecorderPort
  log?: (line: string) => void
}

export async function openStore(config: Config, clock: Clock): Promise<Db> {
  const db = await openDb(
    config.databaseUrl ? { databaseUrl: config.databaseUrl } : { dataDir: config.dataDir },
  )
  await migrate(db, clock)
  return db
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const clock = options.clock ?? systemClock
  const log = options.log ?? ((line: string) => console.log(line))
  const db = await openStore(config, clock)
  const soleProcess = db.dialect === 'pglite'
  const apps = new Apps(db, clock)
  if (config.appsJson) {
    for (const input of parseAppsEnv(config.appsJson)) await apps.upsert(input)
  }
  const dispatcher = new Dispatcher({
    db,
    clock,
    settings: {
      ...config.delivery,
      pollMs: config.timerIntervalMs,
      // PGlite's directory is this process's alone: leases need no row writes.
      leases: soleProcess ? 'memory' : 'database',
      userAgent: `online-record/${VERSION}`,
    },
    log: (message, fields) => api.log.warn(fields ?? {}, message),
  })
  let publicUrl = config.publicUrl ?? ''
  const mediaLog: MediaLog = (level, message) => api.log[level](message)
  const storage: ObjectStorage = config.s3
    ? new S3Storage(config.s3, { log: (m) => mediaLog('warn', m) })
    : new LocalStorage(
        config.mediaDir,
        () => publicUrl,
        config.filesUrlTtlSeconds > 0
          ? {
              secret: await serviceSecret(db, 'files-url', clock),
              ttlSeconds: config.filesUrlTtlSeconds,
            }
          : undefined,
      )
  const tools = options.recorder ? undefined : resolveMediaTools()
  let media: MediaRecorder | undefined
  let rtmp: RtmpIngest | undefined
  if (tools) {
    const manifest = new Manifest(db, clock, randomBytes(8).toString('hex'))
    rtmp = new RtmpIngest({
      host: config.host,
      port: config.rtmpPort,
      publishTimeoutMs: config.rtmpPublishTimeoutMs,
      connections: config.connections,
      log: (level, message) => mediaLog(level, message),
    })
    media = new MediaRecorder({
      clock,
      manifest,
      ingests: [rtmp],
      authorizer: new UserSigAuthorizer(apps, clock),
      storage,
      post: new PostProcessor({
        manifest,
        tools,
        storage,
        mediaDir: config.mediaDir,
        log: mediaLog,
        urlPolicy: { blockPrivate: config.delivery.blockPrivate },
        lostAfterMs: soleProcess ? 0 : config.postProcessing.segmentWaitMs,
        now: () => clock.now(),
      }),
      openSegment: ffmpegSegments(tools.ffmpeg),
      mediaDir: config.mediaDir,
      pollIntervalMs: config.timerIntervalMs,
      retentionMs: config.retentionMs,
      soleProcess,
      log: mediaLog,
    })
  }
  const engine: TaskEngine = new TaskEngine({
    db,
    clock,
    onEvents: () => dispatcher.wake(),
    onStopped: () => postJobs.wake(),
    recorder: options.recorder ?? (media as MediaRecorder),
    settings: {
      longPauseWarningMs: config.longPauseWarningMs,
      longPauseStopMs: config.longPauseStopMs,
      maxDurationMs: config.maxDurationMs,
      parkWithoutCallbackMs: retryWindowMs(config.delivery.retryScheduleS),
    },
    ...(storage.urlsExpire
      ? {
          videoUrl: (taskId, v) =>
            storage.url(
              recordingKey(taskId, v.VideoId, v.VideoFormat as 'mp4' | 'mp3'),
              clock.now(),
            ),
        }
      : {}),
  })
  const postJobs: PostJobs = new PostJobs({
    db,
    clock,
    engine,
    settings: {
      concurrency: config.postProcessing.concurrency,
      leaseMs: config.postProcessing.leaseMs,
      retryDelaysMs: [60_000, 5 * 60_000, 15 * 60_000, 3_600_000, 3 * 3_600_000].slice(
        0,
        config.postProcessing.attempts - 1,
      ),
      pollMs: Math.max(config.timerIntervalMs, 100),
      soleProcess,
    },
    log: (level, message, fields) => api.log[level](fields ?? {}, message),
  })
  media?.bind(engine.signals)
  const api = buildApi({
    db,
    apps,
    engine,
    clock,
    rateLimit: config.rateLimit,
    maxSkewSeconds: config.maxSkewSeconds,
    autoStopTimeoutMin: config.autoStopTimeoutMin,
    logLevel: config.logLevel,
    connections: config.connections,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    callbacks: {
      blockPrivate: config.delivery.blockPrivate,
      changed: () => dispatcher.wake(),
      holds: (id) => dispatcher.holds(id),
    },
    routes:
      storage instanceof LocalStorage ? [(app) => registerFileRoute(app, storage, clock)] : [],
  })
  await api.listen({ host: config.host, port: config.port })
  const { address, port } = api.server.address() as AddressInfo
  const host = address.includes(':') ? `[${address}]` : address
  const url = `http://${host}:${port}`
  publicUrl ||= url
  const listening = (await media?.open()) ?? []

  // Timers: due rows are polled; they live in the database, so a restart
  // picks up whatever came due meanwhile. Between polls, the pass also wakes
  // when the earliest timer comes due, so timers fire at their time rather
  // than up to a poll interval late. Post-processing runs on its own pool.
  let running = false
  let closed = false
  let early: NodeJS.Timeout | undefined
  const tick = async () => {
    if (running || closed) return
    running = true
    try {
      while ((await engine.runDueTimers()) > 0) {}
      const due = await engine.nextTimerDueMs()
      const wait = due === undefined ? 0 : due - clock.now()
      clearTimeout(early)
      if (wait > 0 && wait < config.timerIntervalMs) early = setTimeout(() => void tick(), wait)
    } catch (error) {
      api.log.error({ err: error }, 'timer pass failed')
    } finally {
      running = false
    }
  }
  const interval = setInterval(() => void tick(), config.timerIntervalMs)
  void tick()
  await dispatcher.start()
  await postJobs.start()

  // Statistics and dead rows of the hot tables (PGlite has no autovacuum).
  let maintaining: Promise<void> | undefined
  const maintain = () => {
    maintaining ??= Promise.all([vacuumAnalyze(db), pruneSignatures(db, clock.now())])
      .then(() => {})
      .catch((error) => api.log.error({ err: error }, 'maintenance failed'))
      .finally(() => {
        maintaining = undefined
      })
  }
  const maintenance =
    config.maintenanceIntervalMs > 0
      ? setInterval(maintain, config.maintenanceIntervalMs)
      : undefined

  const list = await apps.list()
  log(
    `online-record API listening on ${url} (store: ${db.dialect === 'pglite' ? `PGlite in ${config.dataDir}` : 'PostgreSQL'})`,
  )
  log(
    list.length === 0
      ? 'No apps yet: create one with `online-record apps create --sdk-app-id <id>` or ONLINE_RECORD_APPS.'
      : `Apps: ${list.map((a) => `${a.sdkAppId} (SecretId ${a.secretId})`).join(', ')}`,
  )
  if (media && tools) {
    for (const [i, line] of listening.entries()) {
      log(`${i === 0 ? 'RTMP ingest' : 'Ingest'} listening on ${line}`)
    }
    log(
      `ffmpeg: ${tools.ffmpeg} (${tools.source.ffmpeg}), ffprobe: ${tools.ffprobe} (${tools.source.ffprobe})`,
    )
    log(
      storage instanceof S3Storage
        ? `Recordings: stored in ${storage.location}`
        : `Recordings: stored in ${join(config.mediaDir, 'files')}, served at ${publicUrl}/files/`,
    )
  }

  return {
    url,
    rtmpPort: rtmp?.port,
    db,
    apps,
    engine,
    dispatcher,
    postJobs,
    async close() {
      closed = true
      clearInterval(interval)
      clearInterval(maintenance)
      await maintaining
      // The recorder first: closing its segments still writes to the store.
      await media?.close()
      await postJobs.close()
      await api.close()
      while (running) await new Promise((r) => setTimeout(r, 10))
      clearTimeout(early)
      await dispatcher.close()
      storage.close()
      await db.close()
    },
  }
}
