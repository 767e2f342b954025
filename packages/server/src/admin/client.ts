// How the CLI reaches the admin operations: over the running service's admin
// API (found through `{dataDir}/service.json`, or ONLINE_RECORD_ADMIN_URL),
// or, when no service runs, on the store itself, after taking the lock that
// the service takes too. Never a second writer beside a running service.

import { Apps } from '../apps/apps.ts'
import { systemClock } from '../clock.ts'
import type { Config } from '../config.ts'
import { TaskEngine } from '../engine/engine.ts'
import { SignalingOnlyRecorder } from '../engine/ports.ts'
import { openDb } from '../store/db.ts'
import { lockStore, storeHolder } from '../store/lock.ts'
import { migrate } from '../store/migrations.ts'
import { ADMIN_PREFIX } from './admin-api.ts'
import { AdminError, AdminOperations } from './operations.ts'
import { readServiceFile, readTokenFile } from './token.ts'

/** The operations the CLI uses, wherever they run. */
export type AdminClient = Pick<
  AdminOperations,
  | 'info'
  | 'listApps'
  | 'createApp'
  | 'getApp'
  | 'updateApp'
  | 'rotate'
  | 'userSig'
  | 'listTasks'
  | 'getTask'
  | 'stopTask'
  | 'listCallbacks'
  | 'getCallback'
  | 'resend'
>

/** The admin API of a running service, as an AdminClient. */
export class HttpAdminClient implements AdminClient {
  readonly #base: string
  readonly #token: string

  constructor(url: string, token: string) {
    this.#base = `${url.replace(/\/+$/, '')}${ADMIN_PREFIX}`
    this.#token = token
  }

  async #call<T>(method: string, path: string, body?: unknown, query?: unknown): Promise<T> {
    const q =
      query && typeof query === 'object'
        ? new URLSearchParams(
            Object.entries(query)
              .filter(([, v]) => v !== undefined)
              .map(([k, v]): [string, string] => [k, String(v)]),
          ).toString()
        : ''
    const response = await fetch(`${this.#base}${path}${q ? `?${q}` : ''}`, {
      method,
      headers: {
        authorization: `Bearer ${this.#token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(60_000),
    })
    const text = await response.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new AdminError(
        503,
        'bad_answer',
        `the service answered ${response.status}: ${text.slice(0, 200)}`,
      )
    }
    if (!response.ok) {
      const e = (json as { error?: { code?: string; message?: string } }).error
      throw new AdminError(
        response.status as AdminError['status'],
        e?.code ?? 'error',
        e?.message ?? `HTTP ${response.status}`,
      )
    }
    return json as T
  }

  info() {
    return this.#call<Awaited<ReturnType<AdminOperations['info']>>>('GET', '/info')
  }
  async listApps() {
    return (
      await this.#call<{ apps: Awaited<ReturnType<AdminOperations['listApps']>> }>('GET', '/apps')
    ).apps
  }
  async createApp(input: unknown) {
    return (
      await this.#call<{ app: Awaited<ReturnType<AdminOperations['createApp']>> }>(
        'POST',
        '/apps',
        input,
      )
    ).app
  }
  async getApp(sdkAppId: number) {
    return (
      await this.#call<{ app: Awaited<ReturnType<AdminOperations['getApp']>> }>(
        'GET',
        `/apps/${sdkAppId}`,
      )
    ).app
  }
  async updateApp(sdkAppId: number, input: unknown) {
    return (
      await this.#call<{ app: Awaited<ReturnType<AdminOperations['updateApp']>> }>(
        'PATCH',
        `/apps/${sdkAppId}`,
        input,
      )
    ).app
  }
  async rotate(sdkAppId: number, kind: unknown) {
    return (
      await this.#call<{ app: Awaited<ReturnType<AdminOperations['rotate']>> }>(
        'POST',
        `/apps/${sdkAppId}/rotate`,
        {
          kind,
        },
      )
    ).app
  }
  userSig(sdkAppId: number, input: unknown) {
    return this.#call<Awaited<ReturnType<AdminOperations['userSig']>>>(
      'POST',
      `/apps/${sdkAppId}/usersig`,
      input,
    )
  }
  listTasks(filter: unknown) {
    return this.#call<Awaited<ReturnType<AdminOperations['listTasks']>>>(
      'GET',
      '/tasks',
      undefined,
      filter,
    )
  }
  async getTask(taskId: string) {
    return (
      await this.#call<{ task: Awaited<ReturnType<AdminOperations['getTask']>> }>(
        'GET',
        `/tasks/${encodeURIComponent(taskId)}`,
      )
    ).task
  }
  async stopTask(taskId: string) {
    return (
      await this.#call<{ task: Awaited<ReturnType<AdminOperations['stopTask']>> }>(
        'POST',
        `/tasks/${encodeURIComponent(taskId)}/stop`,
      )
    ).task
  }
  listCallbacks(filter: unknown) {
    return this.#call<Awaited<ReturnType<AdminOperations['listCallbacks']>>>(
      'GET',
      '/callbacks',
      undefined,
      filter,
    )
  }
  async getCallback(eventId: string) {
    return (
      await this.#call<{ event: Awaited<ReturnType<AdminOperations['getCallback']>> }>(
        'GET',
        `/callbacks/${encodeURIComponent(eventId)}`,
      )
    ).event
  }
  resend(input: unknown) {
    return this.#call<Awaited<ReturnType<AdminOperations['resend']>>>(
      'POST',
      '/callbacks/resend',
      input,
    )
  }
}

export interface Connection {
  client: AdminClient
  /** How the CLI reached the operations, for messages: the service's URL or the store. */
  via: string
  close(): Promise<void>
}

/**
 * The running service's admin API if one is reachable, else the store itself
 * (after taking its lock). `what` names the command holding the lock.
 */
export async function connectAdmin(
  config: Config,
  what: string,
  env: Record<string, string | undefined> = process.env,
): Promise<Connection> {
  const serviceFile = readServiceFile(config.dataDir)
  const url = env.ONLINE_RECORD_ADMIN_URL ?? serviceFile?.url
  const token = env.ONLINE_RECORD_ADMIN_TOKEN ?? readTokenFile(config.dataDir)
  if (url !== undefined) {
    if (token === undefined) {
      throw new AdminError(
        401,
        'unauthorized',
        `no operator token: set ONLINE_RECORD_ADMIN_TOKEN, or run where ${config.dataDir}/admin-token can be read`,
      )
    }
    const client = new HttpAdminClient(url, token)
    try {
      await client.info()
      return { client, via: url, close: async () => {} }
    } catch (error) {
      // A stale service.json (the service is gone) falls through to the store;
      // anything else (a wrong token, an URL given by hand) is said as it is.
      const gone = (error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED'
      if (!gone || env.ONLINE_RECORD_ADMIN_URL !== undefined) throw error
    }
  }
  return openLocal(config, what)
}

/** The operations on the store itself: PGlite only after taking its lock. */
async function openLocal(config: Config, what: string): Promise<Connection> {
  let release = () => {}
  if (!config.databaseUrl) {
    if (storeHolder(config.dataDir)?.what === 'serve') {
      throw new AdminError(
        503,
        'no_service',
        `the service holds the store in ${config.dataDir} but its admin API does not answer; try again when it is up`,
      )
    }
    release = lockStore(config.dataDir, what)
  }
  try {
    const db = await openDb(
      config.databaseUrl ? { databaseUrl: config.databaseUrl } : { dataDir: config.dataDir },
    )
    await migrate(db, systemClock)
    const apps = new Apps(db, systemClock)
    // No capture here: a stopped task is finished by the service's post-processing.
    const engine = new TaskEngine({ db, clock: systemClock, recorder: new SignalingOnlyRecorder() })
    return {
      client: new AdminOperations({ db, apps, engine, clock: systemClock, changed: () => {} }),
      via: config.databaseUrl ? 'the PostgreSQL store' : `the store in ${config.dataDir}`,
      async close() {
        await db.close()
        release()
      },
    }
  } catch (error) {
    release()
    throw error
  }
}
