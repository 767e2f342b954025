// Apps (tenants): one SdkAppId with its API credentials, UserSig key, callback
// settings, webhook secret and limits. Nothing crosses apps.
import { randomBytes } from 'node:crypto'
import { generateWebhookSecret } from '@online-record/protocol'
import { z } from 'zod'
import type { Clock } from '../clock.ts'
import type { Queryable } from '../store/db.ts'

export interface App {
  sdkAppId: number
  secretId: string
  secretKey: string
  userSigKey: string
  webhookSecret: string
  /** The secret before the last rotation; deliveries are signed with it too until `previousWebhookSecretUntilMs`. */
  previousWebhookSecret: string | null
  previousWebhookSecretUntilMs: number | null
  callbackUrl: string
  callbackKey: string
  maxConcurrentTasks: number
  /** Requests per second, sustained; null: the deployment's default; 0: no limit. */
  rateLimit: number | null
  /** Requests at once above the sustained rate; null: the deployment's default. */
  rateBurst: number | null
  /** When the app was disabled (its requests and publishers are refused); null: enabled. */
  disabledAtMs: number | null
  createdAtMs: number
  updatedAtMs: number
}

/** What an operator may change of an app. */
export const AppPatchSchema = z.strictObject({
  maxConcurrentTasks: z.int().min(1).max(100_000).optional(),
  rateLimit: z.int().min(0).max(1_000_000).nullable().optional(),
  rateBurst: z.int().min(1).max(1_000_000).nullable().optional(),
  callbackUrl: z.string().max(2048).optional(),
  callbackKey: z.string().max(64).optional(),
  disabled: z.boolean().optional(),
})
export type AppPatch = z.infer<typeof AppPatchSchema>

export const DEFAULT_MAX_CONCURRENT_TASKS = 100
/** How long deliveries carry the old webhook secret's signature after a rotation. */
export const WEBHOOK_ROTATION_OVERLAP_MS = 24 * 3_600_000

const COLUMNS = `sdk_app_id as "sdkAppId", secret_id as "secretId", secret_key as "secretKey",
  usersig_key as "userSigKey", webhook_secret as "webhookSecret",
  previous_webhook_secret as "previousWebhookSecret",
  previous_webhook_secret_until_ms as "previousWebhookSecretUntilMs", callback_url as "callbackUrl",
  callback_key as "callbackKey", max_concurrent_tasks as "maxConcurrentTasks",
  rate_limit as "rateLimit", rate_burst as "rateBurst", disabled_at_ms as "disabledAtMs",
  created_at_ms as "createdAtMs", updated_at_ms as "updatedAtMs"`

const alnum = (bytes: number) =>
  randomBytes(bytes).toString('base64url').replace(/[-_]/g, '').slice(0, bytes)

/** A SecretId in Tencent's shape: `AKID` and 32 letters and digits. */
export const newSecretId = (): string => `AKID${alnum(48).slice(0, 32)}`
export const newSecretKey = (): string => alnum(48).slice(0, 32)
/** A UserSig key in the console's shape: 64 hex digits. */
export const newUserSigKey = (): string => randomBytes(32).toString('hex')

const SECRET_ID_SHAPE = /^[A-Za-z0-9]{8,64}$/

export const AppInputSchema = z.strictObject({
  sdkAppId: z.int().positive(),
  secretId: z.string().regex(SECRET_ID_SHAPE, 'must be 8 to 64 letters and digits').optional(),
  secretKey: z.string().min(16, 'must be at least 16 characters').max(128).optional(),
  userSigKey: z.string().min(16, 'must be at least 16 characters').max(256).optional(),
  webhookSecret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, 'must be whsec_ followed by base64')
    .optional(),
  maxConcurrentTasks: z.int().min(1).max(100_000).optional(),
  rateLimit: z.int().min(0).max(1_000_000).optional(),
  rateBurst: z.int().min(1).max(1_000_000).optional(),
})
export type AppInput = z.infer<typeof AppInputSchema>

/** Parses ONLINE_RECORD_APPS (a JSON array of app inputs); the error names the entry and field. */
export function parseAppsEnv(text: string): AppInput[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new Error(
      'ONLINE_RECORD_APPS is not JSON: expected an array of {"sdkAppId","secretId","secretKey","userSigKey","webhookSecret"?}',
    )
  }
  const result = z.array(AppInputSchema).safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0] as z.core.$ZodIssue
    throw new Error(
      `ONLINE_RECORD_APPS[${issue.path.map(String).join('].')}: ${issue.message}`.replace(
        /\]\.$/,
        ']',
      ),
    )
  }
  return result.data
}

/** How long an answer of getBySecretId is reused. */
const CREDENTIALS_CACHE_MS = 1000

export class Apps {
  readonly #db: Queryable
  readonly #clock: Clock
  readonly #bySecretId = new Map<string, { app: App | undefined; at: number }>()

  constructor(db: Queryable, clock: Clock) {
    this.#db = db
    this.#clock = clock
  }

  async get(sdkAppId: number): Promise<App | undefined> {
    const [row] = await this.#db.query<App>(`select ${COLUMNS} from apps where sdk_app_id = $1`, [
      sdkAppId,
    ])
    return row
  }

  /**
   * The app of API credentials, for authenticating a request. Answers are
   * kept for a second (every request looks its credentials up; a busy client
   * sends hundreds a second): a rotation in this process clears them at once,
   * one in another process is seen within that second.
   */
  async getBySecretId(secretId: string): Promise<App | undefined> {
    // Only SecretIds of the shape apps are created with are looked up (a
    // request's may carry anything, NUL included).
    if (!SECRET_ID_SHAPE.test(secretId)) return undefined
    const now = performance.now()
    const cached = this.#bySecretId.get(secretId)
    if (cached !== undefined && now - cached.at < CREDENTIALS_CACHE_MS) return cached.app
    const [row] = await this.#db.query<App>(`select ${COLUMNS} from apps where secret_id = $1`, [
      secretId,
    ])
    // Bounded: unknown SecretIds are cached too, so a flood of them cannot grow it without end.
    if (this.#bySecretId.size >= 10_000) this.#bySecretId.clear()
    this.#bySecretId.set(secretId, { app: row, at: now })
    return row
  }

  async list(): Promise<App[]> {
    return this.#db.query<App>(`select ${COLUMNS} from apps order by sdk_app_id`)
  }

  /** Creates the app, generating what the input leaves out. Fails if the SdkAppId exists. */
  async create(input: AppInput): Promise<App> {
    return this.#insert(input, '')
  }

  /**
   * Creates the app or brings the given fields up to date (start-up bootstrap).
   * One statement, so processes starting together cannot both insert.
   */
  async upsert(input: AppInput): Promise<App> {
    return this.#insert(
      input,
      `on conflict (sdk_app_id) do update set
         secret_id = coalesce($10, apps.secret_id),
         secret_key = coalesce($11, apps.secret_key),
         usersig_key = coalesce($12, apps.usersig_key),
         webhook_secret = coalesce($13, apps.webhook_secret),
         max_concurrent_tasks = coalesce($14, apps.max_concurrent_tasks),
         rate_limit = coalesce($8, apps.rate_limit),
         rate_burst = coalesce($9, apps.rate_burst),
         updated_at_ms = $7`,
      [
        input.secretId,
        input.secretKey,
        input.userSigKey,
        input.webhookSecret,
        input.maxConcurrentTasks,
      ],
    )
  }

  /** INSERT of a new app, generating what the input leaves out, with an optional conflict clause. */
  async #insert(input: AppInput, onConflict: string, extra: readonly unknown[] = []): Promise<App> {
    this.#bySecretId.clear()
    const [row] = await this.#db.query<App>(
      `insert into apps (sdk_app_id, secret_id, secret_key, usersig_key, webhook_secret,
         max_concurrent_tasks, created_at_ms, updated_at_ms, rate_limit, rate_burst)
       values ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) ${onConflict} returning ${COLUMNS}`,
      [
        input.sdkAppId,
        input.secretId ?? newSecretId(),
        input.secretKey ?? newSecretKey(),
        input.userSigKey ?? newUserSigKey(),
        input.webhookSecret ?? generateWebhookSecret(),
        input.maxConcurrentTasks ?? DEFAULT_MAX_CONCURRENT_TASKS,
        this.#clock.now(),
        input.rateLimit ?? null,
        input.rateBurst ?? null,
        ...extra.map((v) => v ?? null),
      ],
    )
    this.#bySecretId.clear() // again: a request may have cached the old row meanwhile
    return row as App
  }

  /**
   * Sets the callback URL. Events still waiting for a retry become due at
   * once, so they go to the new URL now rather than at their next retry.
   */
  async setCallback(sdkAppId: number, url: string): Promise<void> {
    this.#bySecretId.clear()
    await this.#db.query(
      `with a as (update apps set callback_url = $2, updated_at_ms = $3 where sdk_app_id = $1)
       update events set next_attempt_ms = $3
       where sdk_app_id = $1 and state = 'pending' and next_attempt_ms > $3
         and (lease_until_ms is null or lease_until_ms <= $3)`,
      [sdkAppId, url, this.#clock.now()],
    )
  }

  /** Applies an operator's changes; the callback URL as SetOnlineRecordCallback does. Undefined: no such app. */
  async update(sdkAppId: number, patch: AppPatch): Promise<App | undefined> {
    this.#bySecretId.clear()
    if (patch.callbackUrl !== undefined) await this.setCallback(sdkAppId, patch.callbackUrl)
    const now = this.#clock.now()
    const [row] = await this.#db.query<App>(
      `update apps set
         max_concurrent_tasks = coalesce($2, max_concurrent_tasks),
         rate_limit = case when $3 then $4 else rate_limit end,
         rate_burst = case when $5 then $6 else rate_burst end,
         callback_key = coalesce($7, callback_key),
         disabled_at_ms = case when $8::bool is null then disabled_at_ms
           when $8 then coalesce(disabled_at_ms, $9) else null end,
         updated_at_ms = $9
       where sdk_app_id = $1 returning ${COLUMNS}`,
      [
        sdkAppId,
        patch.maxConcurrentTasks ?? null,
        patch.rateLimit !== undefined,
        patch.rateLimit ?? null,
        patch.rateBurst !== undefined,
        patch.rateBurst ?? null,
        patch.callbackKey ?? null,
        patch.disabled ?? null,
        now,
      ],
    )
    this.#bySecretId.clear()
    return row
  }

  async setCallbackKey(sdkAppId: number, key: string): Promise<void> {
    this.#bySecretId.clear()
    await this.#db.query(
      'update apps set callback_key = $2, updated_at_ms = $3 where sdk_app_id = $1',
      [sdkAppId, key, this.#clock.now()],
    )
  }

  /**
   * Replaces a secret. `webhook` keeps the old secret as the previous one, so
   * deliveries carry both signatures until the next rotation; `api` replaces
   * SecretId and SecretKey at once; `usersig` replaces the UserSig key.
   */
  async rotate(sdkAppId: number, kind: 'api' | 'webhook' | 'usersig'): Promise<App | undefined> {
    this.#bySecretId.clear()
    const now = this.#clock.now()
    const set =
      kind === 'api'
        ? { sql: 'secret_id = $2, secret_key = $3', params: [newSecretId(), newSecretKey()] }
        : kind === 'usersig'
          ? { sql: 'usersig_key = $2', params: [newUserSigKey()] }
          : {
              sql: 'previous_webhook_secret = webhook_secret, webhook_secret = $2, previous_webhook_secret_until_ms = $3',
              params: [generateWebhookSecret(), now + WEBHOOK_ROTATION_OVERLAP_MS],
            }
    const n = set.params.length + 2
    const [row] = await this.#db.query<App>(
      `update apps set ${set.sql}, updated_at_ms = $${n} where sdk_app_id = $1 returning ${COLUMNS}`,
      [sdkAppId, ...set.params, now],
    )
    this.#bySecretId.clear() // again: a request may have cached the old row meanwhile
    return row
  }
}
