// The board renderer in its own process: a crash or a runaway render costs
// only that process, and glibc's allocator can be told (by environment, which
// only a new process takes) to keep the 5 MB pictures mapped instead of
// returning them to the kernel after every frame, which made each picture
// read cost 9–27 ms instead of about 3 ms. The parent writes the history to a
// file; the child renders it and reports progress and its result on stdout.
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { type RenderInput, renderBoardVideo } from './render.ts'

type Job = Omit<RenderInput, 'onProgress'>

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
): Promise<{ playTimeMs: number; frames: number } | undefined> {
  const { onProgress, ...job } = input
  await writeFile(jobFile, encodeJob(job))
  const child = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), jobFile],
    {
      env: { ...process.env, ...MALLOC },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let result: { playTimeMs: number; frames: number } | null | undefined
  let stderr = ''
  let buffered = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let nl = buffered.indexOf('\n')
    while (nl >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      nl = buffered.indexOf('\n')
      if (line.startsWith('progress ')) onProgress?.(Number(line.slice(9)))
      else if (line.startsWith('result ')) result = JSON.parse(line.slice(7))
    }
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr = (stderr + c).slice(-4000)
  })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
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
  const made = await renderBoardVideo({
    ...job,
    onProgress: (f) => {
      const now = performance.now()
      if (now - last < 500 && f < 1) return
      last = now
      process.stdout.write(`progress ${f.toFixed(4)}\n`)
    },
  })
  process.stdout.write(`result ${JSON.stringify(made ?? null)}\n`)
}
