// Configuration from the environment, validated once at start-up. Every
// setting, its variable and its default is listed here and in docs/operations.md.
import { join, resolve } from 'node:path'
import { z } from 'zod'
import { DEFAULT_RETRY_SCHEDULE_S, parseRetrySchedule } from './delivery/schedule.ts'
import type { S3Settings } from './media/storage/s3.ts'

const seconds = (def: number, min = 1, max = 10 * 365 * 86_400) =>
  z.coerce.number().int().min(min).max(max).default(def)

const EnvSchema = z.object({
  ONLINE_RECORD_HOST: z.string().min(1).default('127.0.0.1'),
  ONLINE_RECORD_HTTP_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  ONLINE_RECORD_RTMP_PORT: z.coerce.number().int().min(0).max(65_535).default(1935),
  ONLINE_RECORD_DATA_DIR: z.string().min(1).default('data'),
  ONLINE_RECORD_PUBLIC_URL: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .transform((u) => u.replace(/\/+$/, ''))
    .optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  ONLINE_RECORD_APPS: z.string().optional(),
  ONLINE_RECORD_RATE_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(200),
  ONLINE_RECORD_RATE_BURST: z.coerce.number().int().min(1).max(1_000_000).default(500),
  ONLINE_RECORD_ADMIN_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .max(256)
    .optional(),
  ONLINE_RECORD_DEV_APP: z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], 'must be true or false')
    .transform((v) => ['true', '1', 'yes'].includes(v))
    .default(true),
  ONLINE_RECORD_DRAIN_S: seconds(30, 0, 3600),
  ONLINE_RECORD_MAX_SKEW_S: seconds(300, 1, 86_400),
  ONLINE_RECORD_MIN_AUTO_STOP_TIMEOUT_S: seconds(300, 1, 86_400),
  ONLINE_RECORD_PAUSE_WARNING_S: seconds(1200),
  ONLINE_RECORD_PAUSE_STOP_S: seconds(1800),
  ONLINE_RECORD_MAX_DURATION_S: seconds(86_400),
  ONLINE_RECORD_TIMER_INTERVAL_MS: z.coerce.number().int().min(10).max(60_000).default(500),
  ONLINE_RECORD_SIGN_VALIDITY_S: seconds(600, 1, 7 * 86_400),
  ONLINE_RECORD_CALLBACK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  ONLINE_RECORD_CALLBACK_RETRY_S: z
    .string()
    .transform((text, ctx) => {
      try {
        return parseRetrySchedule(text)
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message })
        return z.NEVER
      }
    })
    .default([...DEFAULT_RETRY_SCHEDULE_S]),
  ONLINE_RECORD_CALLBACK_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).default(64),
  ONLINE_RECORD_CALLBACK_ENDPOINT_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  ONLINE_RECORD_CALLBACK_LEASE_MARGIN_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(600_000)
    .default(10_000),
  ONLINE_RECORD_CALLBACK_BLOCK_PRIVATE: z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], 'must be true or false')
    .transform((v) => ['true', '1', 'yes'].includes(v))
    .default(false),
  ONLINE_RECORD_MAINTENANCE_INTERVAL_S: seconds(300, 0, 86_400),
  ONLINE_RECORD_FINALIZE_LEASE_S: seconds(30, 5, 3600),
  ONLINE_RECORD_POSTPROCESS_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  ONLINE_RECORD_POSTPROCESS_APP_CONCURRENCY: z.coerce.number().int().min(1).max(64).optional(),
  ONLINE_RECORD_POSTPROCESS_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(5),
  ONLINE_RECORD_POSTPROCESS_BUDGET_FACTOR: z.coerce.number().min(0.001).max(1000).default(8),
  ONLINE_RECORD_POSTPROCESS_BUDGET_MIN_S: z.coerce.number().min(0).max(86_400).default(30),
  ONLINE_RECORD_MIX_FPS: z.coerce.number().int().min(1).max(60).default(15),
  ONLINE_RECORD_MIX_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  ONLINE_RECORD_MIX_THREADS: z.coerce.number().int().min(1).max(64).default(2),
  ONLINE_RECORD_SEGMENT_WAIT_S: seconds(120, 0, 86_400),
  ONLINE_RECORD_FILES_URL_TTL_S: seconds(0, 0, 10 * 365 * 86_400),
  ONLINE_RECORD_S3_PRESIGN_TTL_S: seconds(0, 0, 7 * 86_400),
  ONLINE_RECORD_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(4096),
  ONLINE_RECORD_MAX_CONNECTIONS_PER_IP: z.coerce.number().int().min(1).max(1_000_000).default(1024),
  ONLINE_RECORD_HTTP_REQUEST_TIMEOUT_S: seconds(30, 1, 3600),
  ONLINE_RECORD_RTMP_PUBLISH_TIMEOUT_S: seconds(10, 1, 600),
  ONLINE_RECORD_WEBRTC_ADDRESS: z.ipv4({ error: 'must be an IPv4 address' }).optional(),
  ONLINE_RECORD_WEBRTC_PUBLIC_IP: z.ipv4({ error: 'must be an IPv4 address' }).optional(),
  ONLINE_RECORD_WEBRTC_PORTS: z
    .string()
    .regex(/^\d{1,5}-\d{1,5}$/, 'must be a range like 50000-50999')
    .transform((text, ctx) => {
      const [lo, hi] = text.split('-').map(Number) as [number, number]
      if (lo < 1024 || hi > 65_535 || hi <= lo) {
        ctx.addIssue({
          code: 'custom',
          message: 'must be 1024-65535 with the first below the last',
        })
        return z.NEVER
      }
      return [lo, hi] as [number, number]
    })
    .default([50_000, 50_999]),
  ONLINE_RECORD_WHIP_MAX_PUBLISHERS: z.coerce.number().int().min(0).max(100_000).default(200),
  ONLINE_RECORD_WHIP_MAX_CPU: z.coerce.number().min(0.05).max(1).default(0.8),
  ONLINE_RECORD_WHIP_MAX_PER_USER: z.coerce.number().int().min(1).max(100_000).default(4),
  ONLINE_RECORD_WHIP_MAX_PER_ROOM: z.coerce.number().int().min(1).max(100_000).default(50),
  ONLINE_RECORD_WHIP_MAX_PER_APP: z.coerce.number().int().min(1).max(100_000).default(100),
  ONLINE_RECORD_WHIP_MAX_CONNECTING_PER_USER: z.coerce.number().int().min(1).max(1000).default(2),
  ONLINE_RECORD_WHIP_MAX_CONNECTING_PER_APP: z.coerce.number().int().min(1).max(10_000).default(10),
  ONLINE_RECORD_WHIP_CONNECT_S: seconds(5, 1, 60),
  ONLINE_RECORD_WHIP_SILENCE_S: seconds(4, 1, 600),
  ONLINE_RECORD_RETENTION_DAYS: z.coerce.number().min(0).max(36_500).default(0),
  ONLINE_RECORD_BOARD_RETENTION_DAYS: z.coerce.number().min(0).max(36_500).default(0),
  ONLINE_RECORD_BOARD_APP_MEMORY_MB: z.coerce.number().int().min(16).max(1_000_000).default(1024),
  ONLINE_RECORD_BOARD_MEMORY_MB: z.coerce.number().int().min(16).max(1_000_000).default(4096),
  ONLINE_RECORD_BOARD_APP_OPEN: z.coerce.number().int().min(1).max(1_000_000).default(500),
  ONLINE_RECORD_BOARD_APP_BOARDS: z.coerce.number().int().min(1).max(100_000_000).default(100_000),
  ONLINE_RECORD_BOARD_APP_STORED_MB: z.coerce.number().int().min(1).max(100_000_000).default(2048),
  ONLINE_RECORD_S3_BUCKET: z.string().min(1).optional(),
  ONLINE_RECORD_S3_ENDPOINT: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .transform((u) => u.replace(/\/+$/, ''))
    .optional(),
  ONLINE_RECORD_S3_REGION: z.string().min(1).default('us-east-1'),
  ONLINE_RECORD_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  ONLINE_RECORD_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  ONLINE_RECORD_S3_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9._-]+\/)*$/, 'must be empty or path segments ending in "/"')
    .default(''),
  ONLINE_RECORD_S3_PUBLIC_URL: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .transform((u) => u.replace(/\/+$/, ''))
    .optional(),
  ONLINE_RECORD_S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).optional(),
  ONLINE_RECORD_STALL_S: z.coerce.number().min(0.5).max(600).default(3),
  ONLINE_RECORD_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info'),
})

export interface Config {
  /** Recorded segments, work files and (without S3) stored recordings: `{dataDir}/media`. */
  mediaDir: string
  /** Store recordings in this bucket instead of the local directory. */
  s3: S3Settings | undefined
  /** Stored recordings are deleted this long after they were made; 0 keeps them. */
  retentionMs: number
  /**
   * Whiteboards: how long a board that does not change is kept (0: always),
   * the estimated memory of one app's open boards and of all apps' (MiB),
   * the boards an app may have open at once and in the store, and what its
   * boards may hold in the store (MiB).
   */
  boards: {
    retentionMs: number
    appMemoryMb: number
    memoryMb: number
    appOpenBoards: number
    appBoards: number
    appStoredMb: number
  }
  /**
   * Post-processing: a job's lease (renewed while it runs), jobs at once and
   * of one app at once (per process), attempts, how long a segment a dead
   * process never stored is waited for, and every ffmpeg run's CPU budget (a
   * multiple of its estimate, at least a floor).
   */
  postProcessing: {
    leaseMs: number
    concurrency: number
    perApp: number
    attempts: number
    segmentWaitMs: number
    budget: { factor: number; minCpuMs: number }
  }
  /** The mixed video: its frame rate, the mixes a process runs at once, and each encoder's threads. */
  mix: { fps: number; concurrency: number; threads: number }
  /** VideoUrls of the local store carry an expiry this far ahead; 0: they do not expire. */
  filesUrlTtlSeconds: number
  /** Connections each listener holds at once, in all and per address. */
  connections: { total: number; perAddress: number }
  /** A whole API request must arrive within this. */
  httpRequestTimeoutMs: number
  /** An RTMP connection must have published within this. */
  rtmpPublishTimeoutMs: number
  /**
   * WHIP (WebRTC) publishing: the local address media is received on
   * (undefined: every IPv4 interface), the address written in candidates,
   * the UDP port range, the publishes held at once (0 turns WHIP off), the
   * machine CPU use above which new ones are refused, each tenant's quotas,
   * how long an offer may take to connect, and how long without RTP ends a
   * publish.
   */
  webrtc: {
    address: string | undefined
    publicIp: string | undefined
    ports: [number, number]
    maxPublishers: number
    maxCpu: number
    quotas: {
      perUser: number
      perRoom: number
      perApp: number
      connectingPerUser: number
      connectingPerApp: number
    }
    connectMs: number
    silenceMs: number
  }
  host: string
  /** HTTP port of the API (and of the files it serves); 0 takes any free port. */
  port: number
  /** RTMP ingest port; 0 takes any free port. */
  rtmpPort: number
  dataDir: string
  /** Base URL under which recordings are downloaded; default the API's own address. */
  publicUrl: string | undefined
  databaseUrl: string | undefined
  appsJson: string | undefined
  /** An app's requests: sustained per second (0: no limit) and at once; an app may have its own. */
  rateLimit: { perSecond: number; burst: number }
  /** The admin API's operator token; unset: one made at first start and kept in the store. */
  adminToken: string | undefined
  /** On an empty embedded store, make a development app at first start and print how to use it. */
  devApp: boolean
  /** On SIGTERM, how long publishers keep recording here while they move elsewhere or end. */
  drainMs: number
  maxSkewSeconds: number
  autoStopTimeoutMin: number
  longPauseWarningMs: number
  longPauseStopMs: number
  maxDurationMs: number
  timerIntervalMs: number
  /** VACUUM (ANALYZE) of the hot tables this often; 0: never. */
  maintenanceIntervalMs: number
  delivery: {
    signValiditySeconds: number
    timeoutMs: number
    retryScheduleS: number[]
    concurrency: number
    endpointConcurrency: number
    leaseMarginMs: number
    blockPrivate: boolean
  }
  logLevel: z.infer<typeof EnvSchema>['ONLINE_RECORD_LOG_LEVEL']
  /** The process not running for longer than this is a stall: the tasks it records count an exception. */
  stallMs: number
}

/** The address media is received on when none is set: the API's, when it is one IPv4 address. */
function webrtcAddressOf(host: string): string | undefined {
  if (host === 'localhost') return '127.0.0.1'
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) && host !== '0.0.0.0' ? host : undefined
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const result = EnvSchema.safeParse(env)
  if (!result.success) {
    const issue = result.error.issues[0] as z.core.$ZodIssue
    throw new Error(`Invalid configuration: ${issue.path.join('.')}: ${issue.message}`)
  }
  const e = result.data
  if (e.ONLINE_RECORD_PAUSE_WARNING_S >= e.ONLINE_RECORD_PAUSE_STOP_S) {
    throw new Error(
      'Invalid configuration: ONLINE_RECORD_PAUSE_WARNING_S must be below ONLINE_RECORD_PAUSE_STOP_S',
    )
  }
  if (
    (e.ONLINE_RECORD_S3_ACCESS_KEY_ID === undefined) !==
    (e.ONLINE_RECORD_S3_SECRET_ACCESS_KEY === undefined)
  ) {
    throw new Error(
      'Invalid configuration: set both ONLINE_RECORD_S3_ACCESS_KEY_ID and ONLINE_RECORD_S3_SECRET_ACCESS_KEY, or neither',
    )
  }
  const dataDir = resolve(e.ONLINE_RECORD_DATA_DIR)
  const bucket = e.ONLINE_RECORD_S3_BUCKET
  return {
    mediaDir: join(dataDir, 'media'),
    s3: bucket
      ? {
          bucket,
          endpoint: e.ONLINE_RECORD_S3_ENDPOINT,
          region: e.ONLINE_RECORD_S3_REGION,
          accessKeyId: e.ONLINE_RECORD_S3_ACCESS_KEY_ID,
          secretAccessKey: e.ONLINE_RECORD_S3_SECRET_ACCESS_KEY,
          prefix: e.ONLINE_RECORD_S3_PREFIX,
          publicUrl: e.ONLINE_RECORD_S3_PUBLIC_URL,
          forcePathStyle:
            (e.ONLINE_RECORD_S3_FORCE_PATH_STYLE ??
              (e.ONLINE_RECORD_S3_ENDPOINT ? 'true' : 'false')) === 'true',
          presignTtlSeconds: e.ONLINE_RECORD_S3_PRESIGN_TTL_S || undefined,
        }
      : undefined,
    retentionMs: e.ONLINE_RECORD_RETENTION_DAYS * 86_400_000,
    boards: {
      retentionMs: e.ONLINE_RECORD_BOARD_RETENTION_DAYS * 86_400_000,
      appMemoryMb: e.ONLINE_RECORD_BOARD_APP_MEMORY_MB,
      memoryMb: e.ONLINE_RECORD_BOARD_MEMORY_MB,
      appOpenBoards: e.ONLINE_RECORD_BOARD_APP_OPEN,
      appBoards: e.ONLINE_RECORD_BOARD_APP_BOARDS,
      appStoredMb: e.ONLINE_RECORD_BOARD_APP_STORED_MB,
    },
    postProcessing: {
      leaseMs: e.ONLINE_RECORD_FINALIZE_LEASE_S * 1000,
      concurrency: e.ONLINE_RECORD_POSTPROCESS_CONCURRENCY,
      // One slot short of all of them: another app always finds one free.
      perApp:
        e.ONLINE_RECORD_POSTPROCESS_APP_CONCURRENCY ??
        Math.max(1, e.ONLINE_RECORD_POSTPROCESS_CONCURRENCY - 1),
      attempts: e.ONLINE_RECORD_POSTPROCESS_ATTEMPTS,
      segmentWaitMs: e.ONLINE_RECORD_SEGMENT_WAIT_S * 1000,
      budget: {
        factor: e.ONLINE_RECORD_POSTPROCESS_BUDGET_FACTOR,
        minCpuMs: Math.round(e.ONLINE_RECORD_POSTPROCESS_BUDGET_MIN_S * 1000),
      },
    },
    mix: {
      fps: e.ONLINE_RECORD_MIX_FPS,
      concurrency: e.ONLINE_RECORD_MIX_CONCURRENCY,
      threads: e.ONLINE_RECORD_MIX_THREADS,
    },
    filesUrlTtlSeconds: e.ONLINE_RECORD_FILES_URL_TTL_S,
    connections: {
      total: e.ONLINE_RECORD_MAX_CONNECTIONS,
      perAddress: e.ONLINE_RECORD_MAX_CONNECTIONS_PER_IP,
    },
    httpRequestTimeoutMs: e.ONLINE_RECORD_HTTP_REQUEST_TIMEOUT_S * 1000,
    rtmpPublishTimeoutMs: e.ONLINE_RECORD_RTMP_PUBLISH_TIMEOUT_S * 1000,
    webrtc: {
      address: e.ONLINE_RECORD_WEBRTC_ADDRESS ?? webrtcAddressOf(e.ONLINE_RECORD_HOST),
      publicIp: e.ONLINE_RECORD_WEBRTC_PUBLIC_IP,
      ports: e.ONLINE_RECORD_WEBRTC_PORTS,
      maxPublishers: e.ONLINE_RECORD_WHIP_MAX_PUBLISHERS,
      maxCpu: e.ONLINE_RECORD_WHIP_MAX_CPU,
      quotas: {
        perUser: e.ONLINE_RECORD_WHIP_MAX_PER_USER,
        perRoom: e.ONLINE_RECORD_WHIP_MAX_PER_ROOM,
        perApp: e.ONLINE_RECORD_WHIP_MAX_PER_APP,
        connectingPerUser: e.ONLINE_RECORD_WHIP_MAX_CONNECTING_PER_USER,
        connectingPerApp: e.ONLINE_RECORD_WHIP_MAX_CONNECTING_PER_APP,
      },
      connectMs: e.ONLINE_RECORD_WHIP_CONNECT_S * 1000,
      silenceMs: e.ONLINE_RECORD_WHIP_SILENCE_S * 1000,
    },
    host: e.ONLINE_RECORD_HOST,
    port: e.ONLINE_RECORD_HTTP_PORT,
    rtmpPort: e.ONLINE_RECORD_RTMP_PORT,
    dataDir,
    publicUrl: e.ONLINE_RECORD_PUBLIC_URL,
    databaseUrl: e.DATABASE_URL,
    appsJson: e.ONLINE_RECORD_APPS,
    rateLimit: { perSecond: e.ONLINE_RECORD_RATE_LIMIT, burst: e.ONLINE_RECORD_RATE_BURST },
    adminToken: e.ONLINE_RECORD_ADMIN_TOKEN,
    devApp: e.ONLINE_RECORD_DEV_APP,
    drainMs: e.ONLINE_RECORD_DRAIN_S * 1000,
    maxSkewSeconds: e.ONLINE_RECORD_MAX_SKEW_S,
    autoStopTimeoutMin: e.ONLINE_RECORD_MIN_AUTO_STOP_TIMEOUT_S,
    longPauseWarningMs: e.ONLINE_RECORD_PAUSE_WARNING_S * 1000,
    longPauseStopMs: e.ONLINE_RECORD_PAUSE_STOP_S * 1000,
    maxDurationMs: e.ONLINE_RECORD_MAX_DURATION_S * 1000,
    timerIntervalMs: e.ONLINE_RECORD_TIMER_INTERVAL_MS,
    maintenanceIntervalMs: e.ONLINE_RECORD_MAINTENANCE_INTERVAL_S * 1000,
    delivery: {
      signValiditySeconds: e.ONLINE_RECORD_SIGN_VALIDITY_S,
      timeoutMs: e.ONLINE_RECORD_CALLBACK_TIMEOUT_MS,
      retryScheduleS: e.ONLINE_RECORD_CALLBACK_RETRY_S,
      concurrency: e.ONLINE_RECORD_CALLBACK_CONCURRENCY,
      endpointConcurrency: e.ONLINE_RECORD_CALLBACK_ENDPOINT_CONCURRENCY,
      leaseMarginMs: e.ONLINE_RECORD_CALLBACK_LEASE_MARGIN_MS,
      blockPrivate: e.ONLINE_RECORD_CALLBACK_BLOCK_PRIVATE,
    },
    logLevel: e.ONLINE_RECORD_LOG_LEVEL,
    stallMs: e.ONLINE_RECORD_STALL_S * 1000,
  }
}
