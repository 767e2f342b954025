// The one check every ingest (and the whiteboard channel) makes of a peer: a
// UserSig for its user id, signed with its app's UserSig key, not expired,
// of an app the operator has not disabled.
// The UserSig check itself caps what it reads (apps/usersig.ts).
import type { Apps } from '../apps/apps.ts'
import { verifyUserSig } from '../apps/usersig.ts'
import type { Clock } from '../clock.ts'
import type { Authorization } from './contracts.ts'

export class UserSigAuthorizer {
  readonly #apps: Apps
  readonly #clock: Clock

  constructor(apps: Apps, clock: Clock) {
    this.#apps = apps
    this.#clock = clock
  }

  async authorize(sdkAppId: number, userId: string, userSig: string): Promise<Authorization> {
    if (!Number.isSafeInteger(sdkAppId) || sdkAppId <= 0)
      return { ok: false, reason: 'bad sdkappid' }
    const app = await this.#apps.get(sdkAppId)
    if (app === undefined) return { ok: false, reason: `unknown sdkappid ${sdkAppId}` }
    if (app.disabledAtMs !== null) return { ok: false, reason: `app ${sdkAppId} is disabled` }
    const check = verifyUserSig(userSig, sdkAppId, app.userSigKey, userId, this.#clock.now())
    return check.ok ? { ok: true } : { ok: false, reason: check.message }
  }
}
