// The board renderer in its own process: a crash or a runaway render costs
// only that process, and glibc's allocator can be told (by environment, which
// only a new process takes) to keep the 5 MB pictures mapped instead of
// returning them to the kernel after every frame, which made each picture
// read cost 9–27 ms instead of about 3 ms; it may also collect garbage the
// moment a decoded board picture is done with (--expose-gc, pictures.ts).
// The parent writes the history to a file; the child renders it and reports
// on stdout, a line each: its progress, what the operator should know
// (pictures not drawn), and its result or why it refused. The child and its
// ffmpeg are tied to the service (they die with it) and held to the render's
// CPU budget, counted from /proc, with a wall-clock backstop: past either
// they are killed, a RenderLimitError.
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { totalTime } from '../media/post/timeline.ts'
import { spawnTied, watchBudget } from '../proc/children.ts'
import { PICTURE_LIMITS } from './pictures.ts'
import { type RenderInput, type RenderResult, renderBoardVideo } from './render.ts'
import { RENDER_BUDGET, RenderLimitError, renderCpuMs } from './render-cost.ts'

type Job = Omit<RenderInput, 'onProgress' | 'onWarning'>

/** The wall-clock backstop: a render may wait this many times its CPU budget, plus its pictures' fetches. */
const WALL_PER_CPU = 3

const MALLOC = { MALLOC_MMAP_THRESHOLD_: '67108864', MALLOC_TRIM_THRESHOLD_: '268435456' }

/** The history as one file: a JSON head, then every update's bytes. */
function encodeJob(job: Job): Buffer {
  const { before, during, ...rest } = job
  const head = {
    ...rest,
    before: before.map((u) => u.length),
    during: during.map((u) => ({ seq: u.seq, atMs: u.atMs, bytes: u.update.length })),
  }
  const json = Buffer.from(JSON.stringify(head))
  const size = Buffer.alloc(4)
  size.writeUInt32BE(json.length)
  return Buffer.concat([
    size,
    json,
    ...before.map((u) => Buffer.from(u)),
    ...during.map((u) => Buffer.from(u.update)),
  ])
}

function decodeJob(data: Buffer): Job {
  const length = data.readUInt32BE(0)
  const head = JSON.parse(data.subarray(4, 4 + length).toString()) as Omit<
    Job,
    'before' | 'during'
  > & {
    before: number[]
    during: { seq: number; atMs: number; bytes: number }[]
  }
  let at = 4 + length
  const take = (n: number) => {
    const out = new Uint8Array(data.subarray(at, at + n))
    at += n
    return out
  }
  return {
    ...head,
    before: head.before.map(take),
    during: head.during.map((u) => ({ seq: u.seq, atMs: u.atMs, update: take(u.bytes) })),
  }
}

/** Renders in a child process; same contract as renderBoardVideo. */
export async function renderInProcess(
  input: RenderInput,
  jobFile: string,
): Promise<RenderResult | undefined> {
  const { onProgress, onWarning, signal, ...job } = input
  signal?.throwIfAborted()
  await writeFile(jobFile, encodeJob(job))
  const cpuMs = renderCpuMs(job.budget ?? RENDER_BUDGET, totalTime(job.timeline))
  const child = spawnTied(
    process.execPath,
    [...process.execArgv, '--expose-gc', fileURLToPath(import.meta.url), jobFile],
    {
      env: { ...process.env, ...MALLOC },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const watch = watchBudget(child, {
    cpuMs,
    wallMs: WALL_PER_CPU * cpuMs + PICTURE_LIMITS.fetchTotalMs,
  })
  let result: RenderResult | null | undefined
  let refused: string | undefined
  let stderr = ''
  let buffered = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let nl = buffered.indexOf('\n')
    while (nl >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      nl = buffered.indexOf('\n')
      if (line.startsWith('progress ')) onProgress?.(Number(line.slice(9)))
      else if (line.startsWith('warn ')) onWarning?.(String(JSON.parse(line.slice(5))))
      else if (line.startsWith('result ')) result = JSON.parse(line.slice(7))
      else if (line.startsWith('refused ')) refused = String(JSON.parse(line.slice(8)))
    }
  })
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000)
  })
  // The job's lease lost: the render (and its ffmpeg) ends now; another process has the job.
  const abort = () => child.kill('SIGKILL')
  signal?.addEventListener('abort', abort)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  }).finally(() => {
    watch.stop()
    signal?.removeEventListener('abort', abort)
  })
  signal?.throwIfAborted()
  if (watch.exceeded === 'cpu')
    throw new RenderLimitError(
      `the board render used more than its ${(cpuMs / 1000).toFixed(0)} CPU-s for ${(totalTime(job.timeline) / 1000).toFixed(0)} s of media and was stopped`,
    )
  if (watch.exceeded === 'wall')
    throw new RenderLimitError(
      `the board render took longer than ${((WALL_PER_CPU * cpuMs + PICTURE_LIMITS.fetchTotalMs) / 1000).toFixed(0)} s and was stopped`,
    )
  if (refused !== undefined) throw new RenderLimitError(refused)
  if (code !== 0 || result === undefined) {
    throw new Error(
      `the board renderer exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
    )
  }
  return result ?? undefined
}

// The child: render the job named on the command line.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const job = decodeJob(await readFile(process.argv[2] as string))
  let last = 0
  try {
    const made = await renderBoardVideo({
      ...job,
      onProgress: (f) => {
        const now = performance.now()
        if (now - last < 500 && f < 1) return
        last = now
        process.stdout.write(`progress ${f.toFixed(4)}\n`)
      },
      onWarning: (message) => process.stdout.write(`warn ${JSON.stringify(message)}\n`),
    })
    process.stdout.write(`result ${JSON.stringify(made ?? null)}\n`)
  } catch (error) {
    if (!(error instanceof RenderLimitError)) throw error
    process.stdout.write(`refused ${JSON.stringify(error.message)}\n`)
  }
}
