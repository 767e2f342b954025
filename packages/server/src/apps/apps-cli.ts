// `online-record apps create|list|show|rotate-secret`: manage apps in the store
// the service uses (DATABASE_URL, or PGlite in ONLINE_RECORD_DATA_DIR, which
// only one process can open at a time: stop the service first, or use
// ONLINE_RECORD_APPS).
import { parseArgs } from 'node:util'
import { systemClock } from '../clock.ts'
import { loadConfig } from '../config.ts'
import { openStore } from '../service.ts'
import type { Db } from '../store/db.ts'
import { type App, AppInputSchema, Apps } from './apps.ts'

export const APPS_USAGE = `Apps:
  apps create --sdk-app-id N [--secret-id ID] [--secret-key K] [--usersig-key K] [--max-concurrent-tasks N]
  apps list
  apps show N                       with its secrets
  apps rotate-secret N --kind api|webhook|usersig`

const publicView = (a: App) => ({
  SdkAppId: a.sdkAppId,
  SecretId: a.secretId,
  Callback: a.callbackUrl,
  MaxConcurrentTasks: a.maxConcurrentTasks,
})
const secretView = (a: App) => ({
  ...publicView(a),
  SecretKey: a.secretKey,
  UserSigKey: a.userSigKey,
  WebhookSecret: a.webhookSecret,
  PreviousWebhookSecret: a.previousWebhookSecret,
  PreviousWebhookSecretUntil:
    a.previousWebhookSecretUntilMs === null
      ? null
      : new Date(a.previousWebhookSecretUntilMs).toISOString(),
  CallbackKey: a.callbackKey,
})

export async function runAppsCommand(
  argv: readonly string[],
  out = console.log,
  err = console.error,
): Promise<number> {
  const [sub, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: [...rest],
    allowPositionals: true,
    options: {
      'sdk-app-id': { type: 'string' },
      'secret-id': { type: 'string' },
      'secret-key': { type: 'string' },
      'usersig-key': { type: 'string' },
      'max-concurrent-tasks': { type: 'string' },
      kind: { type: 'string' },
    },
  })
  // Arguments are checked before the store is opened (PGlite takes seconds).
  let db: Db | undefined
  const store = async () => {
    db = await openStore(loadConfig(), systemClock)
    return new Apps(db, systemClock)
  }
  const idArg = (text: string | undefined) =>
    text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined
  try {
    switch (sub) {
      case 'create': {
        const parsed = AppInputSchema.safeParse({
          sdkAppId: idArg(values['sdk-app-id']),
          ...(values['secret-id'] ? { secretId: values['secret-id'] } : {}),
          ...(values['secret-key'] ? { secretKey: values['secret-key'] } : {}),
          ...(values['usersig-key'] ? { userSigKey: values['usersig-key'] } : {}),
          ...(values['max-concurrent-tasks']
            ? { maxConcurrentTasks: Number(values['max-concurrent-tasks']) }
            : {}),
        })
        if (!parsed.success) {
          const issue = parsed.error.issues[0]
          err(
            `apps create: ${issue?.path.join('.') || 'input'}: ${issue?.message}\n\n${APPS_USAGE}`,
          )
          return 2
        }
        const apps = await store()
        if (await apps.get(parsed.data.sdkAppId)) {
          err(`apps create: SdkAppId ${parsed.data.sdkAppId} exists already`)
          return 1
        }
        out(JSON.stringify(secretView(await apps.create(parsed.data)), null, 2))
        return 0
      }
      case 'list':
        out(JSON.stringify((await (await store()).list()).map(publicView), null, 2))
        return 0
      case 'show':
      case 'rotate-secret': {
        const id = idArg(positionals[0])
        if (id === undefined) {
          err(`apps ${sub}: give the SdkAppId\n\n${APPS_USAGE}`)
          return 2
        }
        if (sub === 'rotate-secret' && !['api', 'webhook', 'usersig'].includes(values.kind ?? '')) {
          err(`apps rotate-secret: --kind must be api, webhook or usersig\n\n${APPS_USAGE}`)
          return 2
        }
        const apps = await store()
        const app =
          sub === 'show'
            ? await apps.get(id)
            : await apps.rotate(id, values.kind as 'api' | 'webhook' | 'usersig')
        if (app === undefined) {
          err(`apps ${sub}: no app ${id}`)
          return 1
        }
        out(JSON.stringify(secretView(app), null, 2))
        return 0
      }
      default:
        err(`unknown apps command "${sub ?? ''}"\n\n${APPS_USAGE}`)
        return 2
    }
  } finally {
    await db?.close()
  }
}
