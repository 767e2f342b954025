// Where finished recordings go: a directory under the data directory that the
// API serves over HTTP (the default), or an S3-compatible bucket. A local file
// handed to `put` is removed only once the store has confirmed the object.
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { DeleteObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'

export interface ObjectStorage {
  readonly kind: 'local' | 's3'
  /** Stores `file` as `key` and removes `file` once the object is confirmed. */
  put(key: string, file: string, contentType: string): Promise<void>
  /** The URL a VideoInfo gives for `key`. */
  url(key: string): string
  delete(key: string): Promise<void>
}

/** Keys are `{taskId}/{videoId}.{ext}`: nothing else is stored or served. */
export const STORAGE_KEY = /^[a-z0-9]{1,64}\/[0-9a-f]{32}\.(mp4|mp3)$/

function checkKey(key: string): void {
  if (!STORAGE_KEY.test(key)) throw new Error(`bad storage key ${key}`)
}

export class LocalStorage implements ObjectStorage {
  readonly kind = 'local'
  readonly root: string
  readonly #baseUrl: () => string

  /** `baseUrl` is read when a URL is made: the API's port is known only once it listens. */
  constructor(root: string, baseUrl: () => string) {
    this.root = root
    this.#baseUrl = baseUrl
  }

  async put(key: string, file: string): Promise<void> {
    checkKey(key)
    const target = join(this.root, key)
    await mkdir(dirname(target), { recursive: true })
    try {
      await rename(file, target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
      // Another file system: copy under a temporary name, then rename, so a
      // reader never sees half a file.
      await copyFile(file, `${target}.part`)
      await rename(`${target}.part`, target)
      await rm(file, { force: true })
    }
  }

  url(key: string): string {
    return `${this.#baseUrl()}/files/${key}`
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    await rm(join(this.root, key), { force: true })
  }
}

export interface S3Settings {
  bucket: string
  /** Custom endpoint (MinIO, Ceph, R2, …); AWS when absent. */
  endpoint: string | undefined
  region: string
  accessKeyId: string | undefined
  secretAccessKey: string | undefined
  /** Key prefix inside the bucket, e.g. `recordings/`. */
  prefix: string
  /** Base of the VideoUrls; default the endpoint's path-style bucket URL. */
  publicUrl: string | undefined
  forcePathStyle: boolean
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

export class S3Storage implements ObjectStorage {
  readonly kind = 's3'
  readonly #client: S3Client
  readonly #settings: S3Settings
  readonly #retry: RetryOptions
  readonly #log: (message: string) => void

  constructor(
    settings: S3Settings,
    options: { retry?: RetryOptions; log?: (message: string) => void } = {},
  ) {
    this.#settings = settings
    this.#retry = options.retry ?? { attempts: 5, baseDelayMs: 1000 }
    this.#log = options.log ?? (() => {})
    this.#client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.forcePathStyle,
      ...(settings.accessKeyId && settings.secretAccessKey
        ? {
            credentials: {
              accessKeyId: settings.accessKeyId,
              secretAccessKey: settings.secretAccessKey,
            },
          }
        : {}),
      // Without this, streamed bodies are sent aws-chunked with a trailing
      // checksum, which several S3-compatible stores save verbatim.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
  }

  #objectKey(key: string): string {
    return `${this.#settings.prefix}${key}`
  }

  async put(key: string, file: string, contentType: string): Promise<void> {
    checkKey(key)
    const { size } = await stat(file)
    const Key = this.#objectKey(key)
    await withRetry(
      async () => {
        await new Upload({
          client: this.#client,
          params: {
            Bucket: this.#settings.bucket,
            Key,
            Body: createReadStream(file),
            ContentType: contentType,
          },
        }).done()
        // Confirmed only when the store reports the object whole.
        const head = await this.#client.send(
          new HeadObjectCommand({ Bucket: this.#settings.bucket, Key }),
        )
        if (head.ContentLength !== size) {
          throw new Error(`s3 object ${Key} has ${head.ContentLength} bytes, expected ${size}`)
        }
      },
      this.#retry,
      (error, attempt) =>
        this.#log(`upload of ${Key} failed (attempt ${attempt}): ${(error as Error).message}`),
    )
    await rm(file, { force: true })
  }

  url(key: string): string {
    const base =
      this.#settings.publicUrl ??
      (this.#settings.endpoint
        ? `${this.#settings.endpoint.replace(/\/+$/, '')}/${this.#settings.bucket}`
        : `https://${this.#settings.bucket}.s3.${this.#settings.region}.amazonaws.com`)
    return `${base}/${this.#objectKey(key)}`
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    await withRetry(
      () =>
        this.#client.send(
          new DeleteObjectCommand({ Bucket: this.#settings.bucket, Key: this.#objectKey(key) }),
        ),
      this.#retry,
    )
  }

  close(): void {
    this.#client.destroy()
  }
}
