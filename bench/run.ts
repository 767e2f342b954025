// `npm run bench`: runs every bench/*.bench.ts. Each one pits a subject against
// a baseline measured in the same run and process, and reports subject/baseline.
// Usage: npm run bench [-- --time 2000] [-- --json]
import { readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Bench } from 'tinybench'

export interface Comparison {
  name: string
  /** What the ratio must reach, as a fraction of the baseline (e.g. 0.8). */
  target: number
  baseline: { name: string; fn: () => unknown }
  subject: { name: string; fn: () => unknown }
}

const { values } = parseArgs({
  options: { time: { type: 'string', default: '4200' }, json: { type: 'boolean', default: false } },
})
const time = Number(values.time)
const ROUNDS = 7
const files = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.bench.ts'))
  .sort()

interface Row {
  benchmark: string
  baseline: string
  'baseline ops/s': number
  'subject ops/s': number
  ratio: number
  target: number
  met: boolean
}
const rows: Row[] = []
for (const file of files) {
  const { comparisons } = (await import(`./${file}`)) as { comparisons: Comparison[] }
  for (const c of comparisons) {
    // Interleave the two tasks over several rounds so that drift of the machine
    // (frequency, another process) hits both alike.
    const hz = { baseline: [] as number[], subject: [] as number[] }
    for (let round = 0; round < ROUNDS; round++) {
      const bench = new Bench({ time: time / ROUNDS, warmupTime: 100 })
      bench.add('baseline', c.baseline.fn).add('subject', c.subject.fn)
      await bench.run()
      for (const task of bench.tasks) {
        const throughput =
          task.result?.state === 'completed' ? task.result.throughput.mean : Number.NaN
        hz[task.name as 'baseline' | 'subject'].push(throughput)
      }
    }
    const median = (xs: number[]) =>
      [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
    // The ratio of each round compares two tasks measured back to back; its
    // median is steadier than the ratio of two medians taken across rounds.
    const ratio = median(hz.subject.map((s, i) => s / (hz.baseline[i] as number)))
    const base = median(hz.baseline)
    const subject = median(hz.subject)
    rows.push({
      benchmark: `${c.name}: ${c.subject.name}`,
      baseline: c.baseline.name,
      'baseline ops/s': Math.round(base),
      'subject ops/s': Math.round(subject),
      ratio: Math.round(ratio * 1000) / 1000,
      target: c.target,
      met: ratio >= c.target,
    })
  }
}

if (values.json) {
  console.log(JSON.stringify({ node: process.version, rows }, null, 2))
} else {
  console.log(`node ${process.version}, ${time} ms per comparison\n`)
  console.table(rows)
}
