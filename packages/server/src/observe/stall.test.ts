import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { test } from 'node:test'
import { watchStalls } from './stall.ts'

test('a thread held longer than the threshold is a stall, told with its length; a busy but running one is not', async () => {
  const stalls: number[] = []
  const watch = watchStalls((ms) => stalls.push(ms), { thresholdMs: 300, everyMs: 50 })
  const hold = (ms: number) => {
    const until = performance.now() + ms
    while (performance.now() < until) {}
  }
  hold(100)
  await new Promise((r) => setTimeout(r, 120))
  assert.deepEqual(stalls, [], 'held 100 ms: below the threshold')
  hold(700)
  await new Promise((r) => setTimeout(r, 120))
  watch.stop()
  const [stall = 0, ...more] = stalls
  assert.deepEqual(more, [])
  assert.ok(stall >= 500 && stall <= 1500, `${stall} ms`)
})

test('a process stopped by SIGSTOP and continued sees its stall', async () => {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { watchStalls } from ${JSON.stringify(new URL('./stall.ts', import.meta.url).href)}
       watchStalls((ms) => { console.log('stall ' + ms); process.exit(0) }, { thresholdMs: 500 })
       console.log('ready')
       setInterval(() => {}, 1000)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c
  })
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 20))
  child.kill('SIGSTOP')
  await new Promise((r) => setTimeout(r, 1500))
  child.kill('SIGCONT')
  await once(child, 'exit')
  const ms = Number(/stall (\d+)/.exec(out)?.[1])
  assert.ok(ms >= 1000 && ms <= 3000, out)
})
