// Local storage: recordings in `{mediaDir}/files/{key}`, served by the API at
// `{baseUrl}/files/{key}`; segments where the recorder writes them,
// `{mediaDir}/segments/{taskId}/{segmentId}.mkv`, so storing one is a no-op.
// With a URL lifetime, VideoUrls carry an expiry and an HMAC of key and expiry.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { copyFile, mkdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { checkKey, type ObjectStorage } from './object-storage.ts'

export interface UrlSigning {
  /** HMAC key; the same in every process (the store keeps it). */
  secret: string
  /** How long a URL stays valid, seconds. */
  ttlSeconds: number
}

/** The signature of `key` valid until `expires` (Unix seconds). */
export function fileSignature(secret: string, key: string, expires: number): string {
  return createHmac('sha256', secret).update(`${key}\n${expires}`).digest('base64url')
}

/** Why a request for `key` with these query values is refused (undefined: it is not). */
export function fileUrlProblem(
  signing: UrlSigning,
  key: string,
  expires: string | undefined,
  signature: string | undefined,
  nowMs: number,
): 'missing' | 'expired' | 'invalid' | undefined {
  if (expires === undefined || signature === undefined) return 'missing'
  if (!/^\d{1,12}$/.test(expires)) return 'invalid'
  const expected = Buffer.from(fileSignature(signing.secret, key, Number(expires)))
  const given = Buffer.from(signature)
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'invalid'
  if (Number(expires) * 1000 <= nowMs) return 'expired'
  return undefined
}

export class LocalStorage implements ObjectStorage {
  readonly kind = 'local'
  readonly #mediaDir: string
  readonly #baseUrl: () => string
  readonly #signing: UrlSigning | undefined

  /** `baseUrl` is read when a URL is made: the API's port is known only once it listens. */
  constructor(mediaDir: string, baseUrl: () => string, signing?: UrlSigning) {
    this.#mediaDir = mediaDir
    this.#baseUrl = baseUrl
    this.#signing = signing
  }

  /** The directory of the recordings, which /files/ serves. */
  get root(): string {
    return join(this.#mediaDir, 'files')
  }

  get signing(): UrlSigning | undefined {
    return this.#signing
  }

  get urlsExpire(): boolean {
    return this.#signing !== undefined
  }

  /** Where `key` lives on disk. */
  path(key: string): string {
    return checkKey(key) === 'recording' ? join(this.root, key) : join(this.#mediaDir, key)
  }

  async put(key: string, file: string): Promise<void> {
    const target = this.path(key)
    if (resolve(file) === resolve(target)) return
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

  async fetch(key: string): Promise<string> {
    const path = this.path(key)
    await stat(path)
    return path
  }

  async url(key: string, nowMs: number): Promise<string> {
    checkKey(key)
    const url = `${this.#baseUrl()}/files/${key}`
    if (this.#signing === undefined) return url
    const expires = Math.floor(nowMs / 1000) + this.#signing.ttlSeconds
    return `${url}?expires=${expires}&signature=${fileSignature(this.#signing.secret, key, expires)}`
  }

  async check(): Promise<void> {
    const probe = join(this.#mediaDir, `.write-check-${process.pid}`)
    await mkdir(this.#mediaDir, { recursive: true })
    await writeFile(probe, 'ok')
    await rm(probe, { force: true })
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key)
    await rm(path, { force: true })
    // A task's segment directory goes with its last segment.
    if (checkKey(key) === 'segment') await rmdir(dirname(path)).catch(() => {})
  }

  close(): void {}
}
