import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { test } from 'node:test'
import { canTieChildren, cpuMsOf, spawnTied, watchBudget } from './children.ts'

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('a tied child ends when the process that started it is killed with SIGKILL', {
  skip: !canTieChildren() && 'setpriv is not on this machine',
}, async () => {
  // A Node process that starts a tied `sleep`, prints its pid and waits.
  const parent = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { spawnTied } from ${JSON.stringify(new URL('./children.ts', import.meta.url).href)}
       const c = spawnTied('/bin/sleep', ['60'], { stdio: 'ignore' })
       console.log(c.pid)
       setInterval(() => {}, 1000)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const [line] = (await once(parent.stdout, 'data')) as [Buffer]
  const pid = Number(line.toString().trim())
  assert.ok(pid > 0 && alive(pid), 'the child runs')
  parent.kill('SIGKILL')
  await once(parent, 'exit')
  const deadline = Date.now() + 5000
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  assert.equal(alive(pid), false, 'the tied child died with its parent')
})

test('a missing tool fails as a spawn error, as without tying', async () => {
  const child = spawnTied('/nonexistent/ffmpeg', ['-version'])
  const [error] = (await once(child, 'error')) as [NodeJS.ErrnoException]
  assert.equal(error.code, 'ENOENT')
})

test('CPU time of a child and its descendants, and a CPU budget that ends a busy one', {
  skip: process.platform !== 'linux' && 'reads /proc',
}, async () => {
  // A shell whose child burns CPU: the budget counts the grandchild's work too.
  const child = spawnTied('/bin/sh', ['-c', 'yes > /dev/null'], { stdio: 'ignore' })
  const exceeded: string[] = []
  const watch = watchBudget(
    child,
    { cpuMs: 300, wallMs: 20_000 },
    { everyMs: 50, onExceeded: (which) => exceeded.push(which) },
  )
  const [, signal] = (await once(child, 'exit')) as [number | null, string | null]
  assert.equal(signal, 'SIGKILL')
  assert.deepEqual(exceeded, ['cpu'])
  assert.equal(watch.exceeded, 'cpu')
  assert.ok(watch.cpuMs > 300, `used ${watch.cpuMs} ms`)
  assert.equal(cpuMsOf(child.pid as number), undefined, 'gone')
})

test('a wall-clock budget ends a child that waits instead of working', async () => {
  const child = spawnTied('/bin/sleep', ['30'], { stdio: 'ignore' })
  const watch = watchBudget(child, { cpuMs: 60_000, wallMs: 200 }, { everyMs: 50 })
  await once(child, 'exit')
  assert.equal(watch.exceeded, 'wall')
  assert.ok(watch.cpuMs < 200)
})
