// `npm run bench`: runs every bench/*.bench.ts. Each one pits a subject against
// a baseline measured in the same run, and reports subject/baseline.
// Usage: npm run bench [-- --time 4200] [-- --json] [-- --only signing]
import { readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Bench } from 'tinybench'

/**
 * A side of a comparison: `fn`, timed by tinybench in this process, or
 * `measure`, which runs for about `ms` milliseconds and returns operations per
 * second (for work that spans processes, such as HTTP).
 */
export type Side =
  | { name: string; fn: () => unknown; measure?: never }
  | { name: string; measure: (ms: number) => Promise<number>; fn?: never }

export interface Comparison {
  name: string
  /** What the ratio must reach, as a fraction of the baseline (e.g. 0.8). */
  target?: number
  /** What the subject must reach in operations per second, when the goal is absolute. */
  targetOps?: number
  baseline: Side
  subject: Side
  /** Milliseconds for the whole comparison when it needs more than --time (slow, noisy work). */
  minTimeMs?: number
  /** Rounds when the default (7) is too many for slow set-ups. */
  rounds?: number
  /** Releases what the sides started (server processes), after the last round. */
  teardown?: () => Promise<void>
}

/** A figure that is not a rate against a baseline (a latency percentile), with its target. */
export interface Measurement {
  name: string
  target: string
  run(): Promise<{ figure: string; met: boolean }>
}

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '4200' },
    json: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
const budget = Number(values.time)
const ROUNDS = 7
const files = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.bench.ts') && (values.only === undefined || f.includes(values.only)))
  .sort()

async function round(c: Comparison): Promise<{ baseline: number; subject: number }> {
  const time = Math.max(budget, c.minTimeMs ?? 0)
  if (c.baseline.measure !== undefined && c.subject.measure !== undefined) {
    const baseline = await c.baseline.measure(time / ROUNDS)
    return { baseline, subject: await c.subject.measure(time / ROUNDS) }
  }
  if (c.baseline.fn === undefined || c.subject.fn === undefined) {
    throw new Error(`${c.name}: both sides must use fn, or both measure`)
  }
  const bench = new Bench({ time: time / ROUNDS, warmupTime: 100 })
  bench.add('baseline', c.baseline.fn).add('subject', c.subject.fn)
  await bench.run()
  const rate = (name: string): number => {
    const result = bench.getTask(name)?.result
    return result?.state === 'completed' ? result.throughput.mean : Number.NaN
  }
  return { baseline: rate('baseline'), subject: rate('subject') }
}

interface Row {
  benchmark: string
  baseline: string
  'baseline ops/s': number
  'subject ops/s': number
  ratio: number
  target: string
  met: boolean
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const rows: Row[] = []
const figures: { measurement: string; figure: string; target: string; met: boolean }[] = []
for (const file of files) {
  const { comparisons = [], measurements = [] } = (await import(`./${file}`)) as {
    comparisons?: Comparison[]
    measurements?: Measurement[]
  }
  for (const m of measurements) {
    const { figure, met } = await m.run()
    figures.push({ measurement: m.name, figure, target: m.target, met })
  }
  for (const c of comparisons) {
    // Interleave the two sides over several rounds so that drift of the machine
    // (frequency, another process) hits both alike.
    const rounds = []
    try {
      for (let i = 0; i < (c.rounds ?? ROUNDS); i++) rounds.push(await round(c))
    } finally {
      await c.teardown?.()
    }
    // The ratio of each round compares two sides measured back to back; its
    // median is steadier than the ratio of two medians taken across rounds.
    const ratio = median(rounds.map((r) => r.subject / r.baseline))
    const subjectOps = median(rounds.map((r) => r.subject))
    rows.push({
      benchmark: `${c.name}: ${c.subject.name}`,
      baseline: c.baseline.name,
      'baseline ops/s': Math.round(median(rounds.map((r) => r.baseline))),
      'subject ops/s': Math.round(subjectOps),
      ratio: Math.round(ratio * 1000) / 1000,
      target: c.targetOps !== undefined ? `≥ ${c.targetOps}/s` : `≥ ${c.target ?? 0}`,
      met: c.targetOps !== undefined ? subjectOps >= c.targetOps : ratio >= (c.target ?? 0),
    })
  }
}

if (values.json) {
  console.log(JSON.stringify({ node: process.version, rows, figures }, null, 2))
} else {
  console.log(`node ${process.version}, ${budget} ms per comparison at least\n`)
  if (rows.length > 0) console.table(rows)
  if (figures.length > 0) console.table(figures)
}
