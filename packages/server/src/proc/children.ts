// Child processes the service starts (ffmpeg, the board renderer, the WebRTC
// worker) are tied to it and measured by their own work:
// - `spawnTied` starts a child that the kernel kills when this process dies,
//   however it dies (kill -9 included), through `setpriv --pdeathsig` where
//   util-linux has it (Linux); a restart never finds the last run's ffmpeg
//   still writing the file it is about to write again.
// - `cpuMsOf` reads the CPU time a child and its live descendants have used
//   from /proc: budgets count the work a job made, never the machine's load.
// - `watchBudget` ends a child that goes over its CPU or wall-clock budget
//   and says which one it was.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process'
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'

const SETPRIV = '/usr/bin/setpriv'
let setpriv: boolean | undefined

/** Whether children can be tied to this process (setpriv with --pdeathsig is there). */
export function canTieChildren(): boolean {
  if (setpriv === undefined) {
    try {
      accessSync(SETPRIV, constants.X_OK)
      setpriv = process.platform === 'linux'
    } catch {
      setpriv = false
    }
  }
  return setpriv
}

/**
 * `spawn(file, args, options)`, with the child sent SIGKILL by the kernel
 * when the thread that started it (the service's main thread) ends. Where
 * that cannot be arranged it is a plain spawn.
 */
export function spawnTied(
  file: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  // A missing tool fails as a plain spawn would (an 'error' event), not as setpriv's exit code.
  if (!canTieChildren() || !executable(file)) return spawn(file, args, options)
  return spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', file, ...args], options)
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Clock ticks per second of /proc's times (USER_HZ; 100 on every Linux build in use). */
const TICKS_PER_S = 100

/** The user + system CPU of one process and its reaped children, in ms; undefined when it is gone. */
function ownCpuMs(pid: number): number | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14-17 of the line (utime, stime, cutime, cstime) are 11-14 after the name.
  const ticks = [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i] ?? 0), 0)
  return (ticks * 1000) / TICKS_PER_S
}

/** The live children of `pid`, from every one of its threads. */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim()
      if (text !== '') for (const c of text.split(' ')) out.push(Number(c))
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out
}

/**
 * CPU time (ms) used so far by `pid` and every descendant, live or reaped;
 * undefined where /proc cannot tell (not Linux, or the process is gone).
 */
export function cpuMsOf(pid: number): number | undefined {
  const own = ownCpuMs(pid)
  if (own === undefined) return undefined
  let total = own
  const seen = new Set([pid])
  const queue = childrenOf(pid)
  while (queue.length > 0) {
    const child = queue.pop() as number
    if (seen.has(child)) continue
    seen.add(child)
    total += ownCpuMs(child) ?? 0
    queue.push(...childrenOf(child))
  }
  return total
}

export interface Budget {
  /** CPU time of the child and its descendants. */
  cpuMs?: number
  /** Time since the start, a backstop for a child that waits instead of working. */
  wallMs?: number
}

export interface BudgetWatch {
  /** Which budget ended the child, once one has. */
  readonly exceeded: 'cpu' | 'wall' | undefined
  /** CPU (ms) used by the child and its descendants at the last look. */
  readonly cpuMs: number
  stop(): void
}

/**
 * Looks at `child` every `everyMs` and kills it (SIGKILL, with its
 * descendants where they are tied to it) once it is over a budget.
 * Where CPU time cannot be read, only the wall-clock budget holds.
 */
export function watchBudget(
  child: ChildProcess,
  budget: Budget,
  o: { everyMs?: number; onExceeded?: (which: 'cpu' | 'wall', usedMs: number) => void } = {},
): BudgetWatch {
  const started = performance.now()
  let exceeded: 'cpu' | 'wall' | undefined
  let cpuMs = 0
  const look = () => {
    if (exceeded !== undefined || child.pid === undefined) return
    const used = cpuMsOf(child.pid)
    if (used !== undefined) cpuMs = used
    const wall = performance.now() - started
    const which =
      budget.cpuMs !== undefined && used !== undefined && used > budget.cpuMs
        ? 'cpu'
        : budget.wallMs !== undefined && wall > budget.wallMs
          ? 'wall'
          : undefined
    if (which === undefined) return
    exceeded = which
    for (const pid of [...descendants(child.pid), child.pid]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Gone already.
      }
    }
    o.onExceeded?.(which, which === 'cpu' ? cpuMs : wall)
  }
  const timer = setInterval(look, o.everyMs ?? 500)
  timer.unref()
  child.once('exit', () => clearInterval(timer))
  return {
    get exceeded() {
      return exceeded
    },
    get cpuMs() {
      return cpuMs
    },
    stop: () => clearInterval(timer),
  }
}

function descendants(pid: number): number[] {
  const out: number[] = []
  const queue = childrenOf(pid)
  while (queue.length > 0) {
    const c = queue.pop() as number
    if (out.includes(c)) continue
    out.push(c)
    queue.push(...childrenOf(c))
  }
  return out
}
