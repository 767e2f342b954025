import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { LOCK_FILE, lockStore, StoreLockedError, storeHolder } from './lock.ts'

const root = mkdtempSync(join(tmpdir(), 'online-record-lock-'))
after(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const dir = () => mkdtempSync(join(root, `${n++}-`))

/** Writes a lock file as another holder would have. */
function holderFile(d: string, holder: Record<string, unknown>): void {
  writeFileSync(
    join(d, LOCK_FILE),
    JSON.stringify({ what: 'serve', sinceMs: Date.now(), ...holder }),
  )
}
const thisHost = () =>
  `${hostname()}/${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}/${readlinkSync('/proc/self/ns/pid')}`
const startOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

test('one holder at a time; released, it can be taken again', () => {
  const d = dir()
  const release = lockStore(d, 'serve')
  assert.equal(storeHolder(d), undefined, 'this process does not count as another holder')
  release()
  const again = lockStore(d, 'apps create')
  again()
})

test('a live process of this host holds it; the same pid with another start time does not', async () => {
  const child = spawn('sleep', ['30'])
  try {
    await once(child, 'spawn')
    const pid = child.pid as number
    const d = dir()
    holderFile(d, { pid, host: thisHost(), started: startOf(pid) })
    assert.throws(() => lockStore(d, 'test'), StoreLockedError)
    assert.equal(storeHolder(d)?.pid, pid)
    // The pid was reused by another process: the lock is a dead holder's.
    holderFile(d, { pid, host: thisHost(), started: '1' })
    lockStore(d, 'test')()
  } finally {
    child.kill()
  }
})

test('a process that is gone holds nothing', () => {
  const d = dir()
  holderFile(d, { pid: 2 ** 22 + 7, host: thisHost() })
  lockStore(d, 'test')()
})

test('another host holds it while it rewrites the lock; not after 30 s of silence', () => {
  const d = dir()
  holderFile(d, { pid: process.pid, host: 'other-container/abc', beatMs: Date.now() - 10_000 })
  assert.throws(
    () => lockStore(d, 'test'),
    (e: Error) => /on other-container/.test(e.message),
  )
  holderFile(d, { pid: process.pid, host: 'other-container/abc', beatMs: Date.now() - 31_000 })
  lockStore(d, 'test')()
})

test('a lock file that could not be written is waited for while young, then taken', () => {
  const d = dir()
  const file = join(d, LOCK_FILE)
  writeFileSync(file, '')
  const old = new Date(Date.now() - 60_000)
  utimesSync(file, old, old)
  lockStore(d, 'test')()
  writeFileSync(file, '')
  assert.throws(() => lockStore(d, 'test'), /cannot take the lock/)
})
