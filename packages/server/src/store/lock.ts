// PGlite's directory is one process's at a time: two writers corrupt it (a
// table row without its index entries, as an early CLI beside a running
// service showed). Whoever opens it (the service, or the CLI when no service
// runs) first takes this lock: a file created exclusively, naming its holder.
// A lock whose holder is gone (a crash) is taken over.
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { cannotOpen } from './db.ts'

export const LOCK_FILE = 'online-record.lock'

export interface Holder {
  pid: number
  /** What holds it: `serve`, or the CLI command. */
  what: string
  sinceMs: number
}

export class StoreLockedError extends Error {
  override name = 'StoreLockedError'
  readonly holder: Holder
  constructor(dir: string, holder: Holder) {
    super(
      `the store in ${dir} is in use by process ${holder.pid} (online-record ${holder.what}, since ${new Date(holder.sinceMs).toISOString()}): only one process may open it`,
    )
    this.holder = holder
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, it is another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Holder
    return typeof holder.pid === 'number' ? holder : undefined
  } catch {
    return undefined
  }
}

/** The holder of `dir`'s lock, if a live process holds it. */
export function storeHolder(dir: string): Holder | undefined {
  const holder = readHolder(join(dir, LOCK_FILE))
  return holder && alive(holder.pid) ? holder : undefined
}

/**
 * Takes the lock of the PGlite directory `dir`; returns its release. Throws
 * StoreLockedError while another live process holds it.
 */
export function lockStore(dir: string, what: string, nowMs = Date.now()): () => void {
  const file = join(dir, LOCK_FILE)
  const mine: Holder = { pid: process.pid, what, sinceMs: nowMs }
  for (let tries = 0; tries < 3; tries++) {
    let fd: number | undefined
    try {
      fd = openSync(file, 'wx', 0o600)
      writeSync(fd, JSON.stringify(mine))
      closeSync(fd)
      return () => {
        if (readHolder(file)?.pid === process.pid) rmSync(file, { force: true })
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        // Created but not written (a full disk): not left behind half made.
        if (fd !== undefined) {
          closeSync(fd)
          rmSync(file, { force: true })
        }
        throw cannotOpen(dir, error)
      }
    }
    const holder = readHolder(file)
    if (holder && alive(holder.pid) && holder.pid !== process.pid) {
      throw new StoreLockedError(dir, holder)
    }
    // Left by a process that is gone (or half written): moved aside, then taken.
    try {
      renameSync(file, `${file}.stale-${process.pid}`)
      rmSync(`${file}.stale-${process.pid}`, { force: true })
    } catch {}
  }
  throw new Error(`cannot take the lock of the store in ${dir}`)
}
