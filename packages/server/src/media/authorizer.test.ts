import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Apps } from '../apps/apps.ts'
import { genUserSig } from '../apps/usersig.ts'
import { ManualClock } from '../clock.ts'
import { pgliteFactory } from '../store/test-db.ts'
import { UserSigAuthorizer } from './authorizer.ts'

test('a publisher is authorized by a valid UserSig of an app that is not disabled', async () => {
  const clock = new ManualClock(1_800_000_000_000)
  const store = await pgliteFactory.open(clock)
  try {
    const apps = new Apps(store.db, clock)
    const app = await apps.create({ sdkAppId: 1400000042 })
    const authorizer = new UserSigAuthorizer(apps, clock)
    const sig = genUserSig(app.sdkAppId, app.userSigKey, 'teacher', 3600, clock.now())
    assert.deepEqual(await authorizer.authorize(app.sdkAppId, 'teacher', sig), { ok: true })
    assert.equal((await authorizer.authorize(app.sdkAppId, 'student', sig)).ok, false)
    assert.deepEqual(await authorizer.authorize(1400000043, 'teacher', sig), {
      ok: false,
      reason: 'unknown sdkappid 1400000043',
    })
    await apps.update(app.sdkAppId, { disabled: true })
    assert.deepEqual(await authorizer.authorize(app.sdkAppId, 'teacher', sig), {
      ok: false,
      reason: 'app 1400000042 is disabled',
    })
    await apps.update(app.sdkAppId, { disabled: false })
    assert.deepEqual(await authorizer.authorize(app.sdkAppId, 'teacher', sig), { ok: true })
  } finally {
    await store.dispose()
  }
})
