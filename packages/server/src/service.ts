// Composes the service: store, apps, task engine, timers, the API, and the
// media plane (RTMP ingest, recorder, post-processing, storage).
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
import { resolveMediaTools } from './media/ffmpeg-tools.ts'
import { type MediaLog, MediaRecorder } from './media/recorder.ts'
import { LocalStorage, type ObjectStorage, S3Storage } from './media/storage.ts'
import { type Db, openDb } from './store/db.ts'
import { vacuumAnalyze } from './store/maintenance.ts'
import { migrate } from './store/migrations.ts'
import { VERSION } from './version.ts'

export interface Service {
  url: string
  /** The RTMP ingest's port (undefined with a recorder supplied from outside). */
  rtmpPort: number | undefined
  db: Db
  apps: Apps
  engine: TaskEngine
  dispatcher: Dispatcher
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
      leases: db.dialect === 'pglite' ? 'memory' : 'database',
      userAgent: `online-record/${VERSION}`,
    },
    log: (message, fields) => api.log.warn(fields ?? {}, message),
  })
  let publicUrl = config.publicUrl ?? ''
  const mediaLog: MediaLog = (level, message) => api.log[level](message)
  const storage: ObjectStorage = config.s3
    ? new S3Storage(config.s3, { log: (m) => mediaLog('warn', m) })
    : new LocalStorage(join(config.mediaDir, 'files'), () => publicUrl)
  const tools = options.recorder ? undefined : resolveMediaTools()
  const media = tools
    ? new MediaRecorder({
        db,
        clock,
        apps,
        tools,
        storage,
        mediaDir: config.mediaDir,
        pollIntervalMs: config.timerIntervalMs,
        retentionMs: config.retentionMs,
        urlPolicy: { blockPrivate: config.delivery.blockPrivate },
        log: mediaLog,
      })
    : undefined
  const engine = new TaskEngine({
    db,
    clock,
    onEvents: () => dispatcher.wake(),
    recorder: options.recorder ?? (media as MediaRecorder),
    settings: {
      longPauseWarningMs: config.longPauseWarningMs,
      longPauseStopMs: config.longPauseStopMs,
      maxDurationMs: config.maxDurationMs,
      finalizeLeaseMs: config.finalizeLeaseMs,
      parkWithoutCallbackMs: retryWindowMs(config.delivery.retryScheduleS),
    },
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
    callbacks: {
      blockPrivate: config.delivery.blockPrivate,
      changed: () => dispatcher.wake(),
      holds: (id) => dispatcher.holds(id),
    },
    ...(storage instanceof LocalStorage ? { filesRoot: storage.root } : {}),
  })
  await api.listen({ host: config.host, port: config.port })
  const { address, port } = api.server.address() as AddressInfo
  const host = address.includes(':') ? `[${address}]` : address
  const url = `http://${host}:${port}`
  publicUrl ||= url
  const rtmpPort = await media?.listen(config.host, config.rtmpPort)

  // Timers and post-processing: due rows are polled; they live in the
  // database, so a restart picks up whatever came due meanwhile.
  // Between polls, the pass also wakes when the earliest timer comes due, so
  // timers fire at their time rather than up to a poll interval late.
  let running = false
  let closed = false
  let early: NodeJS.Timeout | undefined
  const tick = async () => {
    if (running || closed) return
    running = true
    try {
      while ((await engine.runDueTimers()) > 0) {}
      await engine.finalizeStopped()
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
    log(
      `RTMP ingest listening on rtmp://${host}:${rtmpPort}/push/{room}?sdkappid={SdkAppId}&userid={UserId}&usersig={UserSig}`,
    )
    log(
      `ffmpeg: ${tools.ffmpeg} (${tools.source.ffmpeg}), ffprobe: ${tools.ffprobe} (${tools.source.ffprobe})`,
    )
    log(
      storage instanceof S3Storage
        ? `Recordings: stored in ${storage.url('{TaskId}/{VideoId}.mp4')}`
        : `Recordings: stored in ${join(config.mediaDir, 'files')}, served at ${publicUrl}/files/`,
    )
  }

  return {
    url,
    rtmpPort,
    db,
    apps,
    engine,
    dispatcher,
    async close() {
      closed = true
      clearInterval(interval)
      clearInterval(maintenance)
      await maintaining
      // The recorder first: closing its segments still writes to the store.
      await media?.close()
      await api.close()
      while (running) await new Promise((r) => setTimeout(r, 10))
      clearTimeout(early)
      await dispatcher.close()
      if (storage instanceof S3Storage) storage.close()
      await db.close()
    },
  }
}
