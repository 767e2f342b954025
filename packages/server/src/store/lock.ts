// PGlite's directory is one process's at a time: two writers corrupt it (a
// table row without its index entries, as an early CLI beside a running
// service showed). Whoever opens it (the service, or the CLI when no service
// runs) first takes this lock: a file created exclusively, naming its holder,
// rewritten every few seconds while it is held.
//
// A lock is taken over only when its holder is surely gone:
// - on the same host (same hostname and boot), when its pid is not running,
//   or runs a different process (its start time differs: pids are reused);
// - from another host or container (a shared volume), where pids mean
//   nothing, when it has not been rewritten for STALE_MS.

import { randomUUID } from 'node:crypto'
import {
  linkSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { cannotOpen } from './db.ts'

export const LOCK_FILE = 'online-record.lock'
/** How often a held lock is rewritten. */
const BEAT_MS = 5000
/** A lock of another host not rewritten for this long is a dead holder's. */
const STALE_MS = 30_000
/** A lock file younger than this that holds no holder is another's, being made. */
const YOUNG_MS = 3 * BEAT_MS

export interface Holder {
  pid: number
  /** What holds it: `serve`, or the CLI command. */
  what: string
  sinceMs: number
  /** Hostname and boot id: pids compare only within one. */
  host?: string
  /** The holder's start time in clock ticks since boot (Linux), against pid reuse. */
  started?: string
  /** Last rewritten (wall clock). */
  beatMs?: number
}

export class StoreLockedError extends Error {
  override name = 'StoreLockedError'
  readonly holder: Holder
  constructor(dir: string, holder: Holder) {
    const where =
      holder.host && holder.host !== thisHost() ? ` on ${holder.host.split('/')[0]}` : ''
    super(
      `the store in ${dir} is in use by process ${holder.pid}${where} (online-record ${holder.what}, since ${new Date(holder.sinceMs).toISOString()}): only one process may open it`,
    )
    this.holder = holder
  }
}

let host: string | undefined
/** Hostname, boot id and pid namespace: within one, pids compare. */
function thisHost(): string {
  if (host === undefined) {
    let boot = ''
    let pids = ''
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
      pids = readlinkSync('/proc/self/ns/pid')
    } catch {}
    host = `${hostname()}/${boot}/${pids}`
  }
  return host
}

/** Field 22 of /proc/{pid}/stat: when the process started; undefined off Linux. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, it is another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether `holder` still holds its lock. */
function holds(holder: Holder): boolean {
  if (holder.host !== undefined && holder.host !== thisHost()) {
    return Date.now() - (holder.beatMs ?? holder.sinceMs) < STALE_MS
  }
  if (holder.pid === process.pid) return false // a lock this process left behind
  if (!running(holder.pid)) return false
  // Another process has that pid now; unknown (no /proc to read) counts as held.
  const started = startTime(holder.pid)
  return holder.started === undefined || started === undefined || holder.started === started
}

/** The lock's holder; undefined if there is no lock file or it is not one. */
function readHolder(file: string): Holder | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    // Another user's (mode 0600): never taken over unread.
    throw new Error(`cannot read the lock ${file}: ${(error as Error).message}`)
  }
  try {
    const holder = JSON.parse(text) as Holder
    return typeof holder.pid === 'number' && typeof holder.sinceMs === 'number' ? holder : undefined
  } catch {
    return undefined
  }
}

/** The holder of `dir`'s lock, if it still holds it. */
export function storeHolder(dir: string): Holder | undefined {
  const holder = readHolder(join(dir, LOCK_FILE))
  return holder && holds(holder) ? holder : undefined
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * Takes the lock of the PGlite directory `dir`; returns its release. Throws
 * StoreLockedError while another process holds it.
 */
export function lockStore(
  dir: string,
  what: string,
  nowMs = Date.now(),
  options: { onLost?: (why: string) => void } = {},
): () => void {
  const file = join(dir, LOCK_FILE)
  const started = startTime(process.pid)
  const mine: Holder = {
    pid: process.pid,
    what,
    sinceMs: nowMs,
    host: thisHost(),
    ...(started !== undefined ? { started } : {}),
  }
  const text = () => JSON.stringify({ ...mine, beatMs: Date.now() })
  const isMine = () => {
    const h = readHolder(file)
    return h?.pid === mine.pid && h.host === mine.host
  }
  for (let tries = 0; tries < 5; tries++) {
    // Made whole under a name of its own, then linked into place: the lock
    // file is never seen empty, and a link fails if one exists.
    const made = `${file}.${randomUUID()}`
    try {
      writeFileSync(made, text(), { mode: 0o600, flag: 'wx' })
      linkSync(made, file)
      rmSync(made, { force: true })
      // Rewritten while held (atomically, and only while still ours), so that
      // another host sharing the directory can tell a live holder.
      const beat = setInterval(() => {
        try {
          if (!isMine()) {
            clearInterval(beat)
            options.onLost?.('the lock file no longer names this process')
            return
          }
          const next = `${file}.${randomUUID()}`
          writeFileSync(next, text(), { mode: 0o600 })
          renameSync(next, file)
        } catch (error) {
          options.onLost?.(`the lock could not be rewritten: ${(error as Error).message}`)
        }
      }, BEAT_MS)
      beat.unref()
      return () => {
        clearInterval(beat)
        try {
          if (isMine()) rmSync(file, { force: true })
        } catch {}
      }
    } catch (error) {
      rmSync(made, { force: true })
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw cannotOpen(dir, error)
    }
    const holder = readHolder(file)
    if (holder && holds(holder)) throw new StoreLockedError(dir, holder)
    if (holder === undefined && young(file)) {
      // Not a lock this version writes: another's, being made; wait for it.
      sleepSync(200)
      continue
    }
    // A gone holder's lock: moved aside, checked again (another process may
    // have taken it over in between), then dropped.
    const aside = `${file}.stale-${randomUUID()}`
    try {
      renameSync(file, aside)
    } catch {
      continue
    }
    const moved = readHolder(aside)
    if (moved && holds(moved)) {
      try {
        linkSync(aside, file) // put back, unless yet another took its place
        rmSync(aside, { force: true })
      } catch {
        // Another lock is in place now: the live one stays aside, named,
        // rather than lost.
      }
      throw new StoreLockedError(dir, moved)
    }
    rmSync(aside, { force: true })
  }
  throw new Error(`cannot take the lock of the store in ${dir}`)
}

function young(file: string): boolean {
  try {
    return Date.now() - statSync(file).mtimeMs < YOUNG_MS
  } catch {
    return false
  }
}
