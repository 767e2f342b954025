// Composes the service: store, apps, task engine, timers, the post-processing
// pool, the API with its admin API, health and metrics, and the media plane
// (ingests, recorder, storage). What is opened is closed again if the start
// fails half-way, so a failed start leaves nothing listening.
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import pino, { type Logger } from 'pino'
import { registerAdminApi } from './admin/admin-api.ts'
import { AdminOperations, type ServiceInfo, type WhipInfo } from './admin/operations.ts'
import { removeTokenFile, writeServiceFile, writeTokenFile } from './admin/token.ts'
import { buildApi } from './api/server.ts'
import { pruneSignatures } from './api/signature-ledger.ts'
import { type App, Apps, parseAppsEnv } from './apps/apps.ts'
import { genUserSig } from './apps/usersig.ts'
import { type Clock, systemClock } from './clock.ts'
import type { Config } from './config.ts'
import { Dispatcher } from './delivery/dispatcher.ts'
import { retryWindowMs } from './delivery/schedule.ts'
import { TaskEngine } from './engine/engine.ts'
import type { RecorderPort } from './engine/ports.ts'
import { PostJobs } from './engine/post-jobs.ts'
import { UserSigAuthorizer } from './media/authorizer.ts'
import { Manifest } from './media/capture/manifest.ts'
import { MediaRecorder, STALE_MS } from './media/capture/recorder.ts'
import { ffmpegSegments } from './media/capture/segment-writer.ts'
import { resolveMediaTools } from './media/ffmpeg/ffmpeg-tools.ts'
import { RtmpIngest } from './media/ingest/rtmp/rtmp-ingest.ts'
import { registerClassPage } from './media/ingest/whip/class-route.ts'
import { WhipIngest } from './media/ingest/whip/whip-ingest.ts'
import { registerWhip } from './media/ingest/whip/whip-route.ts'
import { mixUnsupported } from './media/post/mix.ts'
import { type MediaLog, PostProcessor } from './media/post/post-process.ts'
import { registerFileRoute } from './media/storage/file-route.ts'
import { LocalStorage } from './media/storage/local.ts'
import { type ObjectStorage, recordingKey } from './media/storage/object-storage.ts'
import { S3Storage } from './media/storage/s3.ts'
import { registerHealth } from './observe/health.ts'
import { Metrics } from './observe/metrics.ts'
import { watchStalls } from './observe/stall.ts'
import { cannotOpen, type Db, openDb } from './store/db.ts'
import { lockStore } from './store/lock.ts'
import { vacuumAnalyze } from './store/maintenance.ts'
import { migrate } from './store/migrations.ts'
import { serviceSecret } from './store/secrets.ts'
import { VERSION } from './version.ts'
import { Boards } from './whiteboard/boards.ts'
import { registerBoardPage } from './whiteboard/page-route.ts'
import { whiteboardStage } from './whiteboard/stage.ts'
import { BoardStore } from './whiteboard/store.ts'

export interface Service {
  url: string
  /** The RTMP ingest's port (undefined with a recorder supplied from outside). */
  rtmpPort: number | undefined
  db: Db
  apps: Apps
  engine: TaskEngine
  dispatcher: Dispatcher
  postJobs: PostJobs
  /** The admin API's operator token. */
  adminToken: string
  /**
   * Stops taking new tasks and publishers, lets the publishers connected go
   * on for up to `ms` (or until they all end), then closes. A drained close
   * counts no exception for the tasks it cuts.
   */
  drain(ms: number, hurry?: AbortSignal): Promise<void>
  close(): Promise<void>
}

export interface ServiceOptions {
  clock?: Clock
  recorder?: RecorderPort
  /** The text lines for people (start banner): stderr by default. */
  log?: (line: string) => void
  /** The JSON log: pino on stdout at the configured level by default. */
  logger?: Logger
}

/** Why the service could not start, in one line an operator can act on. */
export class StartError extends Error {
  override name = 'StartError'
}

/** The SdkAppId of the development app made at first start. */
export const DEV_SDK_APP_ID = 1400000000

export async function openStore(config: Config, clock: Clock): Promise<Db> {
  const db = await openDb(
    config.databaseUrl ? { databaseUrl: config.databaseUrl } : { dataDir: config.dataDir },
  )
  await migrate(db, clock)
  return db
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const clock = options.clock ?? systemClock
  const banner = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const logger =
    options.logger ??
    pino({ level: config.logLevel, base: { pid: process.pid, service: 'online-record' } })
  // What is opened is closed again, in reverse, if the start fails later on.
  const undo: (() => Promise<void> | void)[] = []
  const unwind = async () => {
    for (const u of undo.reverse()) await Promise.resolve(u()).catch(() => {})
  }
  try {
    try {
      mkdirSync(config.dataDir, { recursive: true })
    } catch (error) {
      throw config.databaseUrl
        ? new StartError(
            `cannot make the data directory ${config.dataDir}: ${(error as Error).message}`,
          )
        : cannotOpen(config.dataDir, error)
    }
    const releaseLock = config.databaseUrl
      ? () => {}
      : lockStore(config.dataDir, 'serve', clock.now(), {
          onLost: (why) => logger.error(`store lock: ${why}`),
        })
    undo.push(releaseLock)
    const db = await openStore(config, clock)
    undo.push(() => db.close())
    const soleProcess = db.dialect === 'pglite'
    const apps = new Apps(db, clock)
    if (config.appsJson) {
      for (const input of parseAppsEnv(config.appsJson)) await apps.upsert(input)
    }
    const devApp =
      soleProcess && config.devApp && !config.appsJson && (await apps.list()).length === 0
        ? await apps.create({ sdkAppId: DEV_SDK_APP_ID })
        : undefined
    // A token given in the environment stays there (a secret manager's, not
    // the volume's); a generated one is written for the CLI on this machine.
    const adminToken = config.adminToken ?? (await serviceSecret(db, 'admin-token', clock))
    if (config.adminToken === undefined) writeTokenFile(config.dataDir, adminToken)
    else removeTokenFile(config.dataDir)

    let media: MediaRecorder | undefined
    let whip: WhipIngest | undefined
    const metrics = new Metrics({
      db,
      now: () => clock.now(),
      media: () => ({
        ...(media?.stats() ?? { recordingProcesses: 0, publishers: {} }),
        ...(whip ? { webrtcPorts: whip.ports } : {}),
      }),
      boards: () => boards.stats,
    })
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
      log: (message, fields) => logger.warn(fields ?? {}, message),
      observe: (a) => {
        metrics.callbackAttempts.inc({ outcome: a.outcome })
        metrics.callbackDuration.observe({ outcome: a.outcome }, a.latencyMs / 1000)
        if (a.outcome !== 'delivered') {
          logger.warn(
            {
              sdkAppId: a.sdkAppId,
              taskId: a.taskId,
              eventId: a.eventId,
              attempt: a.attempt,
              status: a.status,
              error: a.error,
            },
            a.outcome === 'failed' ? 'callback failed for good' : 'callback attempt failed',
          )
        }
      },
    })
    let publicUrl = config.publicUrl ?? ''
    const mediaLogger = logger.child({ component: 'media' })
    const mediaLog: MediaLog = (level, message) => mediaLogger[level](message)
    const storage: ObjectStorage = config.s3
      ? new S3Storage(config.s3, {
          log: (m) => mediaLog('warn', m),
          onFailure: (operation) => metrics.storageFailures.inc({ operation }),
        })
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
    undo.push(() => storage.close())
    const tools = options.recorder ? undefined : resolveMediaTools()
    // Asked now: the answer is printed with the start-up lines when it comes.
    const noMix = tools && mixUnsupported(tools)
    const manifest = new Manifest(db, clock, randomBytes(8).toString('hex'))
    const boardStore = new BoardStore(db, manifest.instanceId)
    const authorizer = new UserSigAuthorizer(apps, clock)
    let rtmp: RtmpIngest | undefined
    if (tools) {
      rtmp = new RtmpIngest({
        host: config.host,
        port: config.rtmpPort,
        publishTimeoutMs: config.rtmpPublishTimeoutMs,
        connections: config.connections,
        log: (level, message) => mediaLog(level, message),
      })
      if (config.webrtc.maxPublishers > 0)
        whip = new WhipIngest({
          session: {
            address: config.webrtc.address,
            publicIp: config.webrtc.publicIp,
            portRange: config.webrtc.ports,
            connectMs: config.webrtc.connectMs,
            silenceMs: config.webrtc.silenceMs,
            keyFrameEveryMs: 10_000,
            reorderMs: 700,
          },
          maxPublishers: config.webrtc.maxPublishers,
          maxCpu: config.webrtc.maxCpu,
          quotas: config.webrtc.quotas,
          log: (level, message) => mediaLog(level, message),
          onRefused: (why) => metrics.whipRefusals.inc({ reason: why }),
        })
      media = new MediaRecorder({
        clock,
        manifest,
        ingests: whip ? [rtmp, whip] : [rtmp],
        authorizer,
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
          budget: config.postProcessing.budget,
          mix: config.mix,
          stages: [(post) => whiteboardStage(post, boardStore)],
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
        perApp: config.postProcessing.perApp,
        leaseMs: config.postProcessing.leaseMs,
        retryDelaysMs: [60_000, 5 * 60_000, 15 * 60_000, 3_600_000, 3 * 3_600_000].slice(
          0,
          config.postProcessing.attempts - 1,
        ),
        pollMs: Math.max(config.timerIntervalMs, 100),
        soleProcess,
      },
      log: (level, message, fields) => logger[level](fields ?? {}, message),
      observe: (outcome, seconds) => metrics.postProcessing.observe({ outcome }, seconds),
    })
    media?.bind(engine.signals)

    const started = clock.now()
    let ready = false
    let draining = false
    const ingestUrls: string[] = []
    const info = async (): Promise<ServiceInfo> => {
      const processes = await db.query<{
        instanceId: string
        pid: number | null
        host: string | null
        version: string | null
        url: string | null
        startedAtMs: number | null
        heartbeatMs: number
      }>(
        `select instance_id as "instanceId", pid, host, version, url, started_at_ms as "startedAtMs",
           heartbeat_ms as "heartbeatMs" from media_instances where heartbeat_ms >= $1 order by started_at_ms`,
        [clock.now() - STALE_MS],
      )
      return {
        version: VERSION,
        store: {
          kind: db.dialect,
          location: db.dialect === 'pglite' ? config.dataDir : 'PostgreSQL (DATABASE_URL)',
        },
        api: publicUrl,
        ingests: ingestUrls.map((line) => line.replaceAll('{API}', publicUrl)),
        storage: storage instanceof S3Storage ? storage.location : join(config.mediaDir, 'files'),
        startedAt: new Date(started).toISOString(),
        draining,
        processes: processes.map((p) => ({
          instanceId: p.instanceId,
          pid: p.pid,
          host: p.host,
          version: p.version,
          url: p.url,
          startedAt: p.startedAtMs === null ? null : new Date(p.startedAtMs).toISOString(),
          heartbeatAgeMs: clock.now() - p.heartbeatMs,
        })),
        ...(whip ? { whip: whipInfo(whip, config.webrtc) } : {}),
      }
    }
    const admin = new AdminOperations({
      db,
      apps,
      engine,
      clock,
      changed: () => dispatcher.wake(),
      info,
    })
    const boardLogger = logger.child({ component: 'whiteboard' })
    // The whiteboard channel: its accepted updates are activity of the tasks recording the board.
    const boards = new Boards({
      store: boardStore,
      clock,
      authorize: (sdkAppId, userId, userSig) => authorizer.authorize(sdkAppId, userId, userSig),
      activity: (key) => {
        void (async () => {
          const tasks = await db.query<{ taskId: string }>(
            `select task_id as "taskId" from tasks
             where sdk_app_id = $1 and group_id = $2 and status = 'RECORDING'`,
            [key.sdkAppId, key.groupId],
          )
          for (const t of tasks) await engine.signals.activity(t.taskId)
        })().catch((error) => logger.warn({ err: error }, 'whiteboard activity failed'))
      },
      log: (level, message) => boardLogger[level](message),
      retentionMs: config.boards.retentionMs,
      limits: {
        appMemoryMb: config.boards.appMemoryMb,
        memoryMb: config.boards.memoryMb,
        appOpenBoards: config.boards.appOpenBoards,
        appBoards: config.boards.appBoards,
        appStoredBytes: config.boards.appStoredMb * 1024 * 1024,
      },
    })
    await boards.start()
    undo.push(() => boards.close())
    const api = buildApi({
      db,
      apps,
      engine,
      clock,
      rateLimit: config.rateLimit,
      maxSkewSeconds: config.maxSkewSeconds,
      autoStopTimeoutMin: config.autoStopTimeoutMin,
      logger,
      connections: config.connections,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      draining: () => draining,
      onRequest: (r) => {
        metrics.apiRequests.inc({ action: r.action, code: r.code })
        metrics.apiDuration.observe({ action: r.action }, r.seconds)
      },
      callbacks: {
        blockPrivate: config.delivery.blockPrivate,
        changed: () => dispatcher.wake(),
        holds: (id) => dispatcher.holds(id),
      },
      routes: [
        ...(storage instanceof LocalStorage
          ? [
              (app: Parameters<typeof registerFileRoute>[0]) =>
                registerFileRoute(app, storage, clock),
            ]
          : []),
        (app) => registerAdminApi(app, { ops: admin, token: adminToken }),
        (app) => registerBoardPage(app),
        ...(whip
          ? [
              (app: FastifyInstance) => registerWhip(app, whip),
              (app: FastifyInstance) =>
                registerClassPage(app, {
                  authorize: (sdkAppId, userId, userSig) =>
                    authorizer.authorize(sdkAppId, userId, userSig),
                  taskStatus: async (sdkAppId, room) =>
                    (await manifest.activeTaskForRoom(sdkAppId, room))?.status,
                  sessionState: (session, who) => whip.sessionState(session, who),
                }),
            ]
          : []),
        (app) =>
          registerHealth(app, () => [
            { name: 'store', run: async () => void (await db.query('select 1')) },
            {
              name: 'recovery',
              run: async () => {
                if (!ready) throw new Error('crash recovery and start-up are not finished')
              },
            },
            {
              name: 'draining',
              run: async () => {
                if (draining) throw new Error('the process is shutting down')
              },
            },
            { name: 'storage', run: () => storage.check() },
            ...(rtmp
              ? [
                  {
                    name: 'ingest',
                    run: async () => {
                      if (!rtmp?.listening) throw new Error('the RTMP ingest is not listening')
                    },
                  },
                ]
              : []),
          ]),
        (app) =>
          app.get('/metrics', async (_request, reply) => {
            try {
              return reply.header('content-type', metrics.contentType).send(await metrics.text())
            } catch (error) {
              return reply
                .code(503)
                .type('text/plain')
                .send(`${(error as Error).message}\n`)
            }
          }),
      ],
    })
    undo.push(() => api.close())
    api.server.on('upgrade', (request, socket, head) => {
      if (!boards.handleUpgrade(request, socket as Duplex, head)) socket.destroy()
    })

    // Recovery first (segments a dead run left open or unstored, post-processing
    // leases of a crash), then the API takes traffic.
    ingestUrls.push(
      ...(await listening(
        async () => (await media?.open()) ?? [],
        'ONLINE_RECORD_RTMP_PORT',
        config.rtmpPort,
      )),
    )
    undo.push(() => media?.close())
    await listening(
      () => api.listen({ host: config.host, port: config.port }),
      'ONLINE_RECORD_HTTP_PORT',
      config.port,
    )
    const { address, port } = api.server.address() as AddressInfo
    const host = address.includes(':') ? `[${address}]` : address
    const url = `http://${host}:${port}`
    publicUrl ||= url
    manifest.process = {
      pid: process.pid,
      host: hostname(),
      version: VERSION,
      url,
      startedAtMs: started,
    }
    await manifest.heartbeat()
    const removeServiceFile = writeServiceFile(config.dataDir, {
      url,
      pid: process.pid,
      startedAtMs: started,
    })
    undo.push(removeServiceFile)

    // Timers: due rows are polled; they live in the database, so a restart
    // picks up whatever came due meanwhile. Between polls, the pass also wakes
    // when the earliest timer comes due. Post-processing runs on its own pool.
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
        logger.error({ err: error }, 'timer pass failed')
      } finally {
        running = false
      }
    }
    const interval = setInterval(() => void tick(), config.timerIntervalMs)
    undo.push(() => {
      closed = true
      clearInterval(interval)
      clearTimeout(early)
    })
    void tick()
    await dispatcher.start()
    undo.push(() => dispatcher.close())
    await postJobs.start()
    undo.push(() => postJobs.close())
    ready = true

    // A process that did not run (paused, swapped out, its thread held) says so
    // on the tasks it records: media of that time may be missing.
    const stalls = watchStalls(
      (ms) => {
        metrics.stalls.inc()
        logger.warn({ stallMs: ms }, `the process did not run for ${ms} ms`)
        media?.stalled(ms)
      },
      { thresholdMs: config.stallMs },
    )
    undo.push(() => stalls.stop())

    // Statistics and dead rows of the hot tables (PGlite has no autovacuum).
    let maintaining: Promise<void> | undefined
    const maintain = () => {
      maintaining ??= Promise.all([
        vacuumAnalyze(db),
        pruneSignatures(db, clock.now()),
        boards.expire(),
      ])
        .then(() => {})
        .catch((error) => logger.error({ err: error }, 'maintenance failed'))
        .finally(() => {
          maintaining = undefined
        })
    }
    const maintenance =
      config.maintenanceIntervalMs > 0
        ? setInterval(maintain, config.maintenanceIntervalMs)
        : undefined

    const list = await apps.list()
    banner(
      `online-record ${VERSION}: API listening on ${url} (store: ${db.dialect === 'pglite' ? `PGlite in ${config.dataDir}` : 'PostgreSQL'})`,
    )
    if (devApp)
      printDevApp(banner, devApp, {
        url,
        rtmpPort: rtmp?.port,
        classPage: whip !== undefined,
        dataDir: config.dataDir,
        // The binary the service found, so that the command runs as printed.
        ffmpeg: tools && tools.source.ffmpeg !== 'PATH' ? JSON.stringify(tools.ffmpeg) : 'ffmpeg',
      })
    else
      banner(
        list.length === 0
          ? 'No apps yet: create one with `online-record apps create --sdk-app-id <id>` or ONLINE_RECORD_APPS.'
          : `Apps: ${list.map((a) => `${a.sdkAppId} (SecretId ${a.secretId})`).join(', ')}`,
      )
    if (media && tools) {
      for (const [i, line] of ingestUrls.entries())
        banner(
          `${['RTMP ingest', 'WHIP ingest'][i] ?? 'Ingest'} listening on ${line.replaceAll('{API}', url)}`,
        )
      if (whip) {
        const line = whipCapacityLine(whip, config.webrtc)
        banner(line)
        if (whip.capacity < config.webrtc.maxPublishers) mediaLog('warn', line)
      }
      banner(
        `ffmpeg: ${tools.ffmpeg} (${tools.source.ffmpeg}), ffprobe: ${tools.ffprobe} (${tools.source.ffprobe})`,
      )
      // Not awaited: nothing between here and the signal handlers may wait on a child process.
      void noMix?.then((why) => {
        if (why === undefined) return
        banner(`Mixed videos (MixStream): not available: ${why}`)
        mediaLog('warn', `MixStream tasks get no mixed video: ${why}`)
      })
      banner(
        storage instanceof S3Storage
          ? `Recordings: stored in ${storage.location}`
          : `Recordings: stored in ${join(config.mediaDir, 'files')}, served at ${publicUrl}/files/`,
      )
    }
    banner(
      `Admin API: ${url}/admin/v1 (operator token ${config.adminToken === undefined ? `in ${join(config.dataDir, 'admin-token')}` : 'from ONLINE_RECORD_ADMIN_TOKEN'}); health: /healthz, /readyz; metrics: /metrics`,
    )

    let closing: Promise<void> | undefined
    // Each step on its own: one that fails is logged, and the rest (the
    // store, the service file, the lock) still run.
    const step = async (name: string, run: () => unknown) => {
      try {
        await run()
      } catch (error) {
        logger.error({ err: error }, `shutdown: ${name} failed`)
      }
    }
    const close = (graceful: boolean) =>
      (closing ??= (async () => {
        closed = true
        clearInterval(interval)
        clearInterval(maintenance)
        stalls.stop()
        await step('maintenance', () => maintaining)
        // The recorder first: closing its segments still writes to the store.
        await step('recorder', () => media?.close({ graceful }))
        await step('post-processing', () => postJobs.close())
        await step('whiteboards', () => boards.close())
        await step('API', () => api.close())
        await step('timers', async () => {
          while (running) await new Promise((r) => setTimeout(r, 10))
          clearTimeout(early)
        })
        await step('callbacks', () => dispatcher.close())
        await step('manifest', () => manifest.retire())
        await step('storage', () => storage.close())
        await step('store', () => db.close())
        await step('service file', removeServiceFile)
        await step('lock', releaseLock)
      })())
    return {
      url,
      rtmpPort: rtmp?.port,
      db,
      apps,
      engine,
      dispatcher,
      postJobs,
      adminToken,
      async drain(ms: number, hurry?: AbortSignal) {
        draining = true
        await step('ingest', () => media?.stopAccepting())
        const deadline = performance.now() + ms
        while ((media?.publishers ?? 0) > 0 && performance.now() < deadline && !hurry?.aborted) {
          await new Promise((r) => setTimeout(r, 100))
        }
        await close(true)
      },
      close: () => close(false),
    }
  } catch (error) {
    await unwind()
    throw error
  }
}

/** Runs `listen`, turning a port in use into a StartError that names the setting. */
async function listening<T>(listen: () => Promise<T>, setting: string, port: number): Promise<T> {
  try {
    return await listen()
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === 'EADDRINUSE')
      throw new StartError(
        `port ${port} is in use: set ${setting} to another port (0 takes any free one)`,
      )
    if (code === 'EACCES')
      throw new StartError(`port ${port} needs privileges: set ${setting} to a port above 1023`)
    throw error
  }
}

/** The first start's development app, and everything needed to make a first recording with it. */
function printDevApp(
  banner: (line: string) => void,
  app: App,
  where: {
    url: string
    rtmpPort: number | undefined
    dataDir: string
    ffmpeg: string
    classPage: boolean
  },
): void {
  const { url, rtmpPort, dataDir } = where
  const room = 1234
  const week = 7 * 86_400
  const teacher = genUserSig(app.sdkAppId, app.userSigKey, 'teacher', week)
  const recordUser = `tic_record_user_${room}_demo`
  const rtmpHost = new URL(url).hostname
  banner('')
  banner('First start: a development app was made (ONLINE_RECORD_DEV_APP=false turns this off).')
  banner(`  SdkAppId   ${app.sdkAppId}`)
  banner(`  SecretId   ${app.secretId}`)
  banner(`  SecretKey  ${app.secretKey}`)
  banner(`  Endpoint   ${new URL(url).host} (the official client: endpoint, protocol http://)`)
  if (rtmpPort !== undefined) {
    banner(`Publish a test class into room ${room} as user "teacher" (UserSig valid 7 days):`)
    banner(
      `  ${where.ffmpeg} -re -f lavfi -i testsrc=size=640x480:rate=15 -f lavfi -i sine=frequency=440 -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -f flv "rtmp://${rtmpHost}:${rtmpPort}/push/${room}?sdkappid=${app.sdkAppId}&userid=teacher&usersig=${teacher}"`,
    )
  }
  if (where.classPage) {
    banner('Or from a browser (camera, microphone, screen share), as "teacher":')
    banner(
      `  ${url}/class/${room}?sdkappid=${app.sdkAppId}&userid=teacher&usersig=${encodeURIComponent(teacher)}`,
    )
  }
  banner(
    `Record it: StartOnlineRecord {"SdkAppId": ${app.sdkAppId}, "RoomId": ${room}, "RecordUserId": "${recordUser}",`,
  )
  banner(`  "RecordUserSig": "${genUserSig(app.sdkAppId, app.userSigKey, recordUser, week)}"}`)
  banner('Watch its callbacks:')
  banner(`  npx online-record listen --port 3000 --secret ${app.webhookSecret}`)
  banner(`  npx online-record apps update ${app.sdkAppId} --callback http://127.0.0.1:3000/`)
  banner(
    `More UserSigs: npx online-record usersig --sdk-app-id ${app.sdkAppId} --user-id <id> (data: ${dataDir})`,
  )
  banner('')
}

function whipInfo(whip: WhipIngest, webrtc: Config['webrtc']): WhipInfo {
  const p = whip.ports
  return {
    publishers: whip.publishers,
    connecting: whip.connecting,
    capacity: whip.capacity,
    ports: {
      range: `${p.range[0]}-${p.range[1]}`,
      perPublisher: p.perPublish,
      inUse: p.inUse,
      free: p.free,
    },
    quotas: { ...webrtc.quotas },
  }
}

/** The start banner's WHIP line: what is admitted, and whether the UDP ports allow it. */
function whipCapacityLine(whip: WhipIngest, webrtc: Config['webrtc']): string {
  const p = whip.ports
  const ports = `UDP ports ${p.range[0]}-${p.range[1]} (${p.range[1] - p.range[0] + 1}, ${p.perPublish} per publisher)`
  const q = webrtc.quotas
  const quotas = `per app ${q.perApp}, per room ${q.perRoom} users, per user ${q.perUser}; not yet connected: ${q.connectingPerApp} per app, ${q.connectingPerUser} per user, ended after ${webrtc.connectMs / 1000} s`
  return whip.capacity < webrtc.maxPublishers
    ? `WHIP capacity: the ${ports} allow ${p.publishes} publishers, fewer than ONLINE_RECORD_WHIP_MAX_PUBLISHERS (${webrtc.maxPublishers}): at most ${whip.capacity} are admitted; widen ONLINE_RECORD_WEBRTC_PORTS (${quotas})`
    : `WHIP capacity: ${whip.capacity} publishers, ${ports}; ${quotas}`
}
