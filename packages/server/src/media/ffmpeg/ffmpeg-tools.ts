// Where ffmpeg and ffprobe come from: FFMPEG_PATH / FFPROBE_PATH, else the
// system's on PATH (a distribution build is newer and faster), else the
// binaries the npm packages ship, so a plain `npm install` is enough.
import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, chmodSync, constants, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'

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

/** Runs a tool to completion; resolves with its stdout, rejects with a ToolError. */
export function runTool(
  file: string,
  args: readonly string[],
  options: {
    timeoutMs?: number
    onSpawn?: (child: ChildProcess) => void
    /** How stdout is decoded; latin1 keeps binary output byte for byte. */
    encoding?: BufferEncoding
  } = {},
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    options.onSpawn?.(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding(options.encoding ?? 'utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (c: string) => {
      stdout += c
    })
    child.stderr.on('data', (c: string) => {
      // Keep the tail only: a long encode can print a lot.
      stderr = (stderr + c).slice(-8000)
    })
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolvePromise(stdout)
      else reject(new ToolError(file.split('/').pop() ?? file, code, stderr))
    })
  })
}
