// GET/HEAD /files/{taskId}/{videoId}.mp4: recordings in local storage, with
// single-range requests so players can seek and downloads can resume. Only
// exact recording names are served (no listing, no other path); with signed
// URLs, a request needs a valid signature that has not expired.
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'
import type { Clock } from '../../clock.ts'
import { fileUrlProblem, type LocalStorage } from './local.ts'
import { RECORDING_KEY } from './object-storage.ts'

export const FILES_PREFIX = '/files/'

const TYPES: Record<string, string> = { mp4: 'video/mp4', mp3: 'audio/mpeg' }

/** The byte range a `Range` header asks for, `undefined` for the whole file, 'unsatisfiable' for 416. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | undefined | 'unsatisfiable' {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  // Several ranges or another unit: answer with the whole file, as RFC 9110 allows.
  if (m === null) return undefined
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return undefined
  let start: number
  let end: number
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0) return 'unsatisfiable'
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(a)
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  }
  if (start >= size || start > end) return 'unsatisfiable'
  return { start, end }
}

export function registerFileRoute(api: FastifyInstance, storage: LocalStorage, clock: Clock): void {
  api.get(`${FILES_PREFIX}*`, async (request, reply) => {
    const key = (request.params as { '*': string })['*']
    if (!RECORDING_KEY.test(key)) return reply.code(404).type('text/plain').send('not found')
    const signing = storage.signing
    if (signing !== undefined) {
      const q = request.query as { expires?: unknown; signature?: unknown }
      const problem = fileUrlProblem(
        signing,
        key,
        typeof q.expires === 'string' ? q.expires : undefined,
        typeof q.signature === 'string' ? q.signature : undefined,
        clock.now(),
      )
      if (problem !== undefined) {
        return reply
          .code(403)
          .type('text/plain')
          .send(problem === 'expired' ? 'this link has expired' : 'not a valid link')
      }
    }
    const file = storage.path(key)
    const info = await stat(file).catch(() => undefined)
    if (info === undefined || !info.isFile()) {
      return reply.code(404).type('text/plain').send('not found')
    }
    const size = info.size
    const range = parseRange(request.headers.range, size)
    reply
      .header('accept-ranges', 'bytes')
      .header('last-modified', info.mtime.toUTCString())
      .header('cache-control', signing ? 'private, max-age=3600' : 'public, max-age=86400')
      .type(TYPES[key.slice(key.lastIndexOf('.') + 1)] ?? 'application/octet-stream')
    if (range === 'unsatisfiable') {
      return reply.code(416).header('content-range', `bytes */${size}`).send()
    }
    const { start, end } = range ?? { start: 0, end: size - 1 }
    if (range) reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`)
    reply.header('content-length', end - start + 1)
    // HEAD runs this handler too; Fastify drops the body and keeps the headers.
    if (size === 0) return reply.send()
    return reply.send(createReadStream(file, { start, end }))
  })
}
