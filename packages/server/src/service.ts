// Composes the service: store, apps, task engine, timers and the API.
import type { AddressInfo } from 'node:net'
import { buildApi } from './api/server.ts'
import { Apps, parseAppsEnv } from './apps/apps.ts'
import { type Clock, systemClock } from './clock.ts'
import type { Config } from './config.ts'
import { Dispatcher } from './delivery/dispatcher.ts'
import { TaskEngine } from './engine/engine.ts'
import { type RecorderPort, SignalingOnlyRecorder } from './engine/ports.ts'
import { type Db, openDb } from './store/db.ts'
import { vacuumAnalyze } from './store/maintenance.ts'
import { migrate } from './store/migrations.ts'
import { VERSION } from './version.ts'

export interface Service {
  url: string
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
  const engine = new TaskEngine({
    db,
    clock,
    onEvents: () => dispatcher.wake(),
    recorder: options.recorder ?? new SignalingOnlyRecorder(),
    settings: {
      longPauseWarningMs: config.longPauseWarningMs,
      longPauseStopMs: config.longPauseStopMs,
      maxDurationMs: config.maxDurationMs,
    },
  })
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
  })
  await api.listen({ host: config.host, port: config.port })
  const { address, port } = api.server.address() as AddressInfo
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`

  // Timers and post-processing: due rows are polled; they live in the
  // database, so a restart picks up whatever came due meanwhile.
  let running = false
  const tick = async () => {
    if (running) return
    running = true
    try {
      while ((await engine.runDueTimers()) > 0) {}
      await engine.finalizeStopped()
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
    maintaining ??= vacuumAnalyze(db)
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
  log(
    'Media is not recorded yet: tasks run their lifecycle and send their callbacks, with no videos.',
  )

  return {
    url,
    db,
    apps,
    engine,
    dispatcher,
    async close() {
      clearInterval(interval)
      clearInterval(maintenance)
      await maintaining
      await api.close()
      while (running) await new Promise((r) => setTimeout(r, 10))
      await dispatcher.close()
      await db.close()
    },
  }
}
