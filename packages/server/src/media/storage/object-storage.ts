// Where recordings and segments are kept: a directory under the data
// directory (the default, recordings served by the API under /files/), or an
// S3-compatible bucket. Two kinds of keys, checked on every call:
// - recordings `{taskId}/{videoId}.{mp4|mp3}`: what VideoUrls point at;
// - segments `segments/{taskId}/{segmentId}.mkv`: raw recorded spans, stored
//   as they close so that any process can post-process a task; never served.

export interface ObjectStorage {
  readonly kind: 'local' | 's3'
  /** Stores `file` under `key`; `file` is gone (moved, or uploaded and confirmed then deleted) when it resolves. */
  put(key: string, file: string, contentType: string): Promise<void>
  /** A local path holding the bytes of `key`: the stored file itself (local) or a download into `dir` (S3). */
  fetch(key: string, dir: string): Promise<string>
  delete(key: string): Promise<void>
  /** The URL a VideoInfo gives for a recording key at `nowMs` (signed, when URLs expire). */
  url(key: string, nowMs: number): Promise<string>
  /** Whether URLs expire: then they are made again whenever a task is described. */
  readonly urlsExpire: boolean
  /** Resolves when the storage can be written (readiness); rejects saying why not. */
  check(): Promise<void>
  close(): void
}

export const RECORDING_KEY = /^[a-z0-9]{1,64}\/[0-9a-f]{32}\.(mp4|mp3)$/
export const SEGMENT_KEY = /^segments\/[a-z0-9]{1,64}\/[0-9a-f]{24}\.mkv$/

export function recordingKey(taskId: string, videoId: string, format: 'mp4' | 'mp3'): string {
  return `${taskId}/${videoId}.${format}`
}

export function segmentKey(taskId: string, segmentId: string): string {
  return `segments/${taskId}/${segmentId}.mkv`
}

export function checkKey(key: string): 'recording' | 'segment' {
  if (RECORDING_KEY.test(key)) return 'recording'
  if (SEGMENT_KEY.test(key)) return 'segment'
  throw new Error(`bad storage key ${key}`)
}

export interface RetryOptions {
  attempts: number
  /** First wait between attempts; doubled each time. */
  baseDelayMs: number
}

/** Runs `fn` up to `attempts` times with exponential backoff and jitter. */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
  onRetry?: (error: unknown, attempt: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt)
    } catch (error) {
      if (attempt >= options.attempts) throw error
      onRetry?.(error, attempt)
      const delay = options.baseDelayMs * 2 ** (attempt - 1)
      await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * (delay / 2)))
    }
  }
}
