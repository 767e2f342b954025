// Fetching a URL a tenant gave us (a pad image, a board image): the address
// policy on the literal host and on every resolved address, checked again on
// every redirect; the body streamed against a size cap; one deadline for the
// whole exchange. Nothing is read past the cap and nothing waits past the
// deadline, whatever the peer does.
import { Agent, request } from 'undici'
import { type AddressPolicy, isPrivateAddress, policyLookup, urlProblem } from './url-policy.ts'

export interface FetchLimits {
  /** Bytes of body accepted at most; a larger body is refused (by its announced length, or when it gets there). */
  maxBytes: number
  /** The whole exchange (connect, redirects, headers, body) must end within this. */
  deadlineMs: number
  /** Redirects followed at most; default 3. */
  maxRedirects?: number
}

export class OutboundError extends Error {
  override name = 'OutboundError'
}

export interface Fetched {
  body: Buffer
  contentType: string | undefined
  /** The URL the body came from, after redirects. */
  url: string
}

/** Drops a body not to be read; its "aborted" error has nobody to reach. */
function discard(body: { on(event: 'error', fn: () => void): unknown; destroy(): void }): void {
  body.on('error', () => {})
  body.destroy()
}

/** GETs `url` under `policy` within `limits`; rejects with an OutboundError saying why not. */
export async function fetchLimited(
  url: string,
  policy: AddressPolicy,
  limits: FetchLimits,
): Promise<Fetched> {
  const agent = new Agent({
    connect: {
      timeout: limits.deadlineMs,
      ...(policy.blockPrivate
        ? { lookup: policyLookup(policy.isBlocked ?? isPrivateAddress) }
        : {}),
    },
  })
  // One deadline for everything, cleared at the end: a signal that fired
  // later would error bodies nobody reads any more.
  const deadline = new AbortController()
  const signal = deadline.signal
  const timer = setTimeout(() => deadline.abort(), limits.deadlineMs)
  try {
    let at = url
    for (let hop = 0; ; hop++) {
      const problem = urlProblem(at, policy)
      if (problem !== undefined) throw new OutboundError(`${at} ${problem}`)
      const res = await request(at, { method: 'GET', dispatcher: agent, signal }).catch(
        (error: Error & { code?: string }) => {
          throw new OutboundError(
            signal.aborted
              ? `no complete answer within ${limits.deadlineMs} ms`
              : ((error.cause as Error | undefined)?.message ?? error.message),
          )
        },
      )
      const location = res.headers.location
      if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string') {
        discard(res.body)
        if (hop >= (limits.maxRedirects ?? 3)) throw new OutboundError('too many redirects')
        at = new URL(location, at).href
        continue
      }
      if (res.statusCode < 200 || res.statusCode >= 300) {
        discard(res.body)
        throw new OutboundError(`HTTP ${res.statusCode}`)
      }
      const announced = Number(res.headers['content-length'] ?? Number.NaN)
      if (announced > limits.maxBytes) {
        discard(res.body)
        throw new OutboundError(`${announced} bytes, more than ${limits.maxBytes}`)
      }
      const chunks: Buffer[] = []
      let size = 0
      try {
        for await (const chunk of res.body) {
          size += (chunk as Buffer).length
          if (size > limits.maxBytes) {
            discard(res.body)
            throw new OutboundError(`more than ${limits.maxBytes} bytes`)
          }
          chunks.push(chunk as Buffer)
        }
      } catch (error) {
        if (error instanceof OutboundError) throw error
        throw new OutboundError(
          signal.aborted
            ? `no complete answer within ${limits.deadlineMs} ms`
            : (error as Error).message,
        )
      }
      const type = res.headers['content-type']
      return {
        body: Buffer.concat(chunks),
        contentType: typeof type === 'string' ? type : undefined,
        url: at,
      }
    }
  } finally {
    clearTimeout(timer)
    void agent.destroy().catch(() => {})
  }
}
