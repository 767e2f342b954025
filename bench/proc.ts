// CPU use of processes, read from /proc (Linux): what the live-recording
// benches count of a service and its child processes.
import { readdirSync, readFileSync } from 'node:fs'

const TICK = 100 // USER_HZ on Linux

/** The fields of /proc/{pid}/stat after the command name. */
function stat(pid: number): string[] {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
}

/** CPU seconds used so far by `pid` (user + system), 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = stat(pid)
    return (Number(f[11]) + Number(f[12])) / TICK
  } catch {
    return 0
  }
}

/** The child processes of `pid`. */
export function children(pid: number): number[] {
  const out: number[] = []
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim()
    if (list) out.push(...list.split(/\s+/).map(Number))
  }
  return out
}

/** CPU used by `pids()` during `ms`: the pids are read at both ends, new ones counted whole. */
export async function cpuOver(ms: number, pids: () => number[]): Promise<number> {
  const before = new Map(pids().map((p) => [p, cpuSeconds(p)]))
  await new Promise((r) => setTimeout(r, ms))
  let used = 0
  for (const p of pids()) used += cpuSeconds(p) - (before.get(p) ?? 0)
  return used
}
