import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { canTieChildren } from '../../proc/children.ts'
import { BudgetExceeded, resolveMediaTools, runTool, ToolError } from './ffmpeg-tools.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-tools-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function executable(name: string): string {
  const path = join(dir, name)
  writeFileSync(path, '#!/bin/sh\necho "$0 $@"\n')
  chmodSync(path, 0o755)
  return path
}

test('FFMPEG_PATH and FFPROBE_PATH come first, and must be executable', () => {
  const ffmpeg = executable('my-ffmpeg')
  const ffprobe = executable('my-ffprobe')
  const tools = resolveMediaTools({ FFMPEG_PATH: ffmpeg, FFPROBE_PATH: ffprobe, PATH: '' })
  assert.deepEqual([tools.ffmpeg, tools.ffprobe], [ffmpeg, ffprobe])
  assert.deepEqual(tools.source, { ffmpeg: 'env', ffprobe: 'env' })
  writeFileSync(join(dir, 'plain'), '')
  assert.throws(() => resolveMediaTools({ FFMPEG_PATH: join(dir, 'plain') }), /not an executable/)
})

test('then the PATH, then the npm packages (their ffprobe made executable)', () => {
  const bin = mkdtempSync(join(dir, 'bin-'))
  writeFileSync(join(bin, 'ffmpeg'), '#!/bin/sh\n')
  chmodSync(join(bin, 'ffmpeg'), 0o755)
  const onPath = resolveMediaTools({ PATH: `/nonexistent:${bin}` })
  assert.equal(onPath.ffmpeg, join(bin, 'ffmpeg'))
  assert.equal(onPath.source.ffmpeg, 'PATH')
  assert.equal(onPath.source.ffprobe, 'npm', 'no ffprobe in that directory')
  const npm = resolveMediaTools({ PATH: '' })
  assert.deepEqual(npm.source, { ffmpeg: 'npm', ffprobe: 'npm' })
  assert.match(npm.ffprobe, /@ffprobe-installer/)
})

test('runTool gives stdout, or a ToolError with the tail of stderr', async () => {
  assert.match(await runTool(executable('echoer'), ['a', 'b']), /echoer a b/)
  const failing = join(dir, 'failing')
  writeFileSync(failing, '#!/bin/sh\necho "it broke" >&2\nexit 3\n')
  chmodSync(failing, 0o755)
  const error = await runTool(failing, []).catch((e: unknown) => e)
  assert.ok(error instanceof ToolError)
  assert.equal(error.code, 3)
  assert.match(error.message, /it broke/)
})

/** Whether `pid` is gone (or a zombie nobody reaped yet: it runs no more). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok()) {
    assert.ok(Date.now() < deadline, what)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** An ffmpeg that encodes as fast as it can for a long time (busy), or in real time (`-re`: mostly waiting). */
const endless = (re: boolean) => [
  ...['-hide_banner', '-nostdin', '-loglevel', 'error'],
  ...(re ? ['-re'] : []),
  ...['-f', 'lavfi', '-i', 'testsrc2=s=640x360:r=30:d=600', '-c:v', 'libx264', '-f', 'null', '-'],
]

test('runTool kills a tool over its CPU budget (its own CPU time) and says so', async () => {
  const { ffmpeg } = resolveMediaTools()
  let pid = 0
  const error = await runTool(ffmpeg, endless(false), {
    budget: { cpuMs: 300, wallMs: 60_000 },
    onSpawn: (child) => {
      pid = child.pid as number
    },
  }).catch((e: unknown) => e)
  assert.ok(error instanceof BudgetExceeded, String(error))
  assert.equal(error.which, 'cpu')
  assert.ok(error.usedMs > 300, `${error.usedMs}`)
  assert.match(error.message, /ffmpeg went over its CPU budget/)
  assert.ok(gone(pid))
})

test('runTool kills a tool that waits past its wall-clock backstop', async () => {
  const { ffmpeg } = resolveMediaTools()
  const error = await runTool(ffmpeg, endless(true), {
    budget: { cpuMs: 600_000, wallMs: 700 },
  }).catch((e: unknown) => e)
  assert.ok(error instanceof BudgetExceeded, String(error))
  assert.equal(error.which, 'wall')
})

test('an abort kills the tool and rejects with its reason', async () => {
  const { ffmpeg } = resolveMediaTools()
  const controller = new AbortController()
  let pid = 0
  const run = runTool(ffmpeg, endless(true), {
    signal: controller.signal,
    onSpawn: (child) => {
      pid = child.pid as number
    },
  }).catch((e: unknown) => e)
  await until('ffmpeg started', () => pid > 0)
  controller.abort(new Error('the lease is lost'))
  const error = await run
  assert.match(String(error), /the lease is lost/)
  await until('ffmpeg killed', () => gone(pid))
  // Aborted before it starts: nothing is started.
  let started = false
  const late = await runTool(ffmpeg, endless(true), {
    signal: controller.signal,
    onSpawn: () => {
      started = true
    },
  }).catch((e: unknown) => e)
  assert.match(String(late), /the lease is lost/)
  assert.equal(started, false)
})

test('a tool dies with the process that ran it, even by kill -9 (Linux, setpriv)', async () => {
  assert.ok(canTieChildren(), 'setpriv --pdeathsig is there')
  const { ffmpeg } = resolveMediaTools()
  // A Node process that runs a long ffmpeg through runTool and prints its pid.
  const script = join(dir, 'runner.ts')
  writeFileSync(
    script,
    `import { runTool } from ${JSON.stringify(new URL('./ffmpeg-tools.ts', import.meta.url).pathname)}
runTool(${JSON.stringify(ffmpeg)}, ${JSON.stringify(endless(true))}, {
  onSpawn: (child) => console.log(child.pid),
}).catch(() => {})
`,
  )
  const runner = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [line] = (await once(runner.stdout, 'data')) as [Buffer]
  const pid = Number(String(line).trim())
  assert.ok(pid > 0 && !gone(pid), 'ffmpeg runs')
  runner.kill('SIGKILL')
  await once(runner, 'exit')
  await until(`ffmpeg ${pid} outlived the process that started it`, () => gone(pid))
})
