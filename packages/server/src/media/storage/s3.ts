// S3-compatible storage: `{prefix}{key}` in one bucket, uploaded in parts,
// confirmed by the object's size before the local file goes. VideoUrls are the
// bucket's public URL, or presigned GETs with a lifetime for a private bucket.
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { checkKey, type ObjectStorage, type RetryOptions, withRetry } from './object-storage.ts'

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
  /** VideoUrls are presigned GETs valid this long (at most 7 days); unset: public URLs. */
  presignTtlSeconds?: number | undefined
}

export class S3Storage implements ObjectStorage {
  readonly kind = 's3'
  readonly #client: S3Client
  readonly #settings: S3Settings
  readonly #retry: RetryOptions
  readonly #log: (message: string) => void
  readonly #onFailure: (operation: 'put' | 'fetch' | 'delete') => void

  constructor(
    settings: S3Settings,
    options: {
      retry?: RetryOptions
      log?: (message: string) => void
      /** An operation that failed after its retries. */
      onFailure?: (operation: 'put' | 'fetch' | 'delete') => void
    } = {},
  ) {
    this.#settings = settings
    this.#retry = options.retry ?? { attempts: 5, baseDelayMs: 1000 }
    this.#log = options.log ?? (() => {})
    this.#onFailure = options.onFailure ?? (() => {})
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

  /** Where objects go, for the start-up line. */
  get location(): string {
    const { bucket, prefix, endpoint, presignTtlSeconds } = this.#settings
    return `s3://${bucket}/${prefix}${endpoint ? ` at ${endpoint}` : ''}${presignTtlSeconds ? ` (presigned URLs, ${presignTtlSeconds} s)` : ''}`
  }

  get urlsExpire(): boolean {
    return this.#settings.presignTtlSeconds !== undefined
  }

  #objectKey(key: string): string {
    checkKey(key)
    return `${this.#settings.prefix}${key}`
  }

  async put(key: string, file: string, contentType: string): Promise<void> {
    const Key = this.#objectKey(key)
    const { size } = await stat(file)
    await this.#attempt('put', `upload of ${Key}`, async () => {
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
    })
    await rm(file, { force: true })
  }

  async fetch(key: string, dir: string): Promise<string> {
    const Key = this.#objectKey(key)
    const file = join(dir, key.replaceAll('/', '_'))
    await mkdir(dir, { recursive: true })
    await this.#attempt('fetch', `download of ${Key}`, async () => {
      const got = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#settings.bucket, Key }),
      )
      await pipeline(got.Body as Readable, createWriteStream(file))
    })
    return file
  }

  /** Presigned URLs are signed with the system clock (the SDK's), whatever `_nowMs` says. */
  async url(key: string, _nowMs: number): Promise<string> {
    const Key = this.#objectKey(key)
    if (this.#settings.presignTtlSeconds !== undefined) {
      return getSignedUrl(
        this.#client,
        new GetObjectCommand({ Bucket: this.#settings.bucket, Key }),
        { expiresIn: this.#settings.presignTtlSeconds },
      )
    }
    const base =
      this.#settings.publicUrl ??
      (this.#settings.endpoint
        ? `${this.#settings.endpoint.replace(/\/+$/, '')}/${this.#settings.bucket}`
        : `https://${this.#settings.bucket}.s3.${this.#settings.region}.amazonaws.com`)
    return `${base}/${Key}`
  }

  async check(): Promise<void> {
    await this.#client.send(new HeadBucketCommand({ Bucket: this.#settings.bucket }))
  }

  async delete(key: string): Promise<void> {
    const Key = this.#objectKey(key)
    await this.#attempt('delete', `deletion of ${Key}`, () =>
      this.#client.send(new DeleteObjectCommand({ Bucket: this.#settings.bucket, Key })),
    )
  }

  close(): void {
    this.#client.destroy()
  }

  /** `run` with retries; each failed attempt logged, the last failure counted. */
  async #attempt(
    operation: 'put' | 'fetch' | 'delete',
    what: string,
    run: () => Promise<unknown>,
  ): Promise<void> {
    try {
      await withRetry(run, this.#retry, (error, attempt) =>
        this.#log(`${what} failed (attempt ${attempt}): ${(error as Error).message}`),
      )
    } catch (error) {
      this.#onFailure(operation)
      throw error
    }
  }
}
