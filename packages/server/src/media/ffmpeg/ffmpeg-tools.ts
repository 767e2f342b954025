// Where ffmpeg and ffprobe come from: FFMPEG_PATH / FFPROBE_PATH, else the
// system's on PATH (a distribution build is newer and faster), else the
// binaries the npm packages ship, so a plain `npm install` is enough.
import type { ChildProcess } from 'node:child_process'
import { accessSync, chmodSync, constants, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'
import type { Readable } from 'node:stream'
import { type Budget, spawnTied, watchBudget } from '../../proc/children.ts'

export interface MediaTools {
  ffmpeg: string
  ffprobe: string
  /** Where each came from, for the start-up line. */
  source: { ffmpeg: ToolSource; ffprobe: ToolSource }
}
export type ToolSource = 'env' | 'PATH' | 'npm'

const require = createRequire(import.meta.url)

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return statSync(file).isFile()
  } catch {
    return false
  }
}

function onPath(name: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (dir === '') continue
    const file = join(dir, name)
    if (executable(file)) return file
  }
  return undefined
}

function fromNpm(pkg: string): string | undefined {
  let file: string
  try {
    file = (require(pkg) as { path: string }).path
  } catch {
    return undefined
  }
  // The ffprobe package ships its binary without the execute bit and sets it
  // in an install script, which `npm ci --ignore-scripts` skips.
  if (!executable(file)) {
    try {
      chmodSync(file, statSync(file).mode | 0o111)
    } catch {
      return undefined
    }
  }
  return executable(file) ? file : undefined
}

function resolveTool(
  name: 'ffmpeg' | 'ffprobe',
  env: Record<string, string | undefined>,
): { path: string; source: ToolSource } {
  const variable = name === 'ffmpeg' ? 'FFMPEG_PATH' : 'FFPROBE_PATH'
  const fromEnv = env[variable]
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`${variable}=${fromEnv} is not an executable file`)
    return { path: fromEnv, source: 'env' }
  }
  const system = onPath(name, env.PATH)
  if (system) return { path: system, source: 'PATH' }
  const npm = fromNpm(`@${name}-installer/${name}`)
  if (npm) return { path: npm, source: 'npm' }
  throw new Error(
    `${name} not found: set ${variable}, install ${name} on the PATH, or install the npm package @${name}-installer/${name}`,
  )
}

export function resolveMediaTools(
  env: Record<string, string | undefined> = process.env,
): MediaTools {
  const ffmpeg = resolveTool('ffmpeg', env)
  const ffprobe = resolveTool('ffprobe', env)
  return {
    ffmpeg: ffmpeg.path,
    ffprobe: ffprobe.path,
    source: { ffmpeg: ffmpeg.source, ffprobe: ffprobe.source },
  }
}

export class ToolError extends Error {
  readonly code: number | null
  readonly stderr: string
  constructor(tool: string, code: number | null, stderr: string) {
    super(`${tool} exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)
    this.name = 'ToolError'
    this.code = code
    this.stderr = stderr
  }
}

/** A run ended by its budget: killed once it used more CPU (or wall-clock) time than it was given. */
export class BudgetExceeded extends Error {
  override name = 'BudgetExceeded'
  readonly which: 'cpu' | 'wall'
  /** The CPU (or wall-clock) time it had used when it was killed, ms. */
  readonly usedMs: number
  readonly budget: Budget
  constructor(tool: string, which: 'cpu' | 'wall', usedMs: number, budget: Budget) {
    const limit = which === 'cpu' ? budget.cpuMs : budget.wallMs
    super(
      `${tool} went over its ${which === 'cpu' ? 'CPU' : 'wall-clock'} budget (${seconds(usedMs)} s used, ${seconds(limit ?? 0)} s allowed) and was killed`,
    )
    this.which = which
    this.usedMs = usedMs
    this.budget = budget
  }
}

const seconds = (ms: number) => (ms / 1000).toFixed(1)

/**
 * Runs a tool to completion; resolves with its stdout, rejects with a
 * ToolError, a BudgetExceeded, or the `signal`'s reason. The tool is tied to
 * this process (it dies with it, kill -9 included) and killed when `signal`
 * aborts or it goes over its `budget`.
 */
export function runTool(
  file: string,
  args: readonly string[],
  options: {
    /** CPU time (the tool's own, from /proc) and wall-clock time it may use. */
    budget?: Budget
    /** Aborting kills the tool (the job it works for is no longer this process's). */
    signal?: AbortSignal
    onSpawn?: (child: ChildProcess) => void
    /** How stdout is decoded; latin1 keeps binary output byte for byte. */
    encoding?: BufferEncoding
  } = {},
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const { signal, budget } = options
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const tool = file.split('/').pop() ?? file
    const child = spawnTied(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const stdoutStream = child.stdout as Readable
    const stderrStream = child.stderr as Readable
    options.onSpawn?.(child)
    let stdout = ''
    let stderr = ''
    stdoutStream.setEncoding(options.encoding ?? 'utf8')
    stderrStream.setEncoding('utf8')
    stdoutStream.on('data', (c: string) => {
      stdout += c
    })
    stderrStream.on('data', (c: string) => {
      // Keep the tail only: a long encode can print a lot.
      stderr = (stderr + c).slice(-8000)
    })
    let over: BudgetExceeded | undefined
    const watch =
      budget === undefined
        ? undefined
        : watchBudget(child, budget, {
            onExceeded: (which, usedMs) => {
              over = new BudgetExceeded(tool, which, usedMs, budget)
            },
          })
    const abort = () => child.kill('SIGKILL')
    signal?.addEventListener('abort', abort, { once: true })
    const done = () => {
      watch?.stop()
      signal?.removeEventListener('abort', abort)
    }
    child.on('error', (error) => {
      done()
      reject(error)
    })
    child.on('close', (code) => {
      done()
      if (signal?.aborted) reject(signal.reason)
      else if (over) reject(over)
      else if (code === 0) resolvePromise(stdout)
      else reject(new ToolError(tool, code, stderr))
    })
  })
}
