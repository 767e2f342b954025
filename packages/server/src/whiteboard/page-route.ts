// The built-in board page: GET /whiteboard/{GroupId}?sdkappid=…&userid=…&usersig=…
// (the channel's own address, without the WebSocket upgrade) serves a page
// that draws on that board with the stock y-websocket provider. Its scripts
// and the libraries it imports (Yjs, y-protocols, y-websocket, lib0) are
// served from this process under /whiteboard-app/ — nothing comes from a CDN.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, normalize, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'

export const APP_PREFIX = '/whiteboard-app/'
const PAGE_DIR = fileURLToPath(new URL('./page', import.meta.url))
/** Packages the page may load, by the name its import map uses. */
const PACKAGES = ['yjs', 'lib0', 'y-protocols', 'y-websocket', 'isomorphic.js'] as const

const require = createRequire(import.meta.url)
const roots = new Map<string, string>(
  PACKAGES.map((name) => [name, dirname(require.resolve(`${name}/package.json`))]),
)
roots.set('board', PAGE_DIR)

/** The file under /whiteboard-app/{name}/{path}, or undefined when it is not one the page may load. */
export function appFile(urlPath: string): string | undefined {
  const rest = urlPath.slice(APP_PREFIX.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) return undefined
  const root = roots.get(rest.slice(0, slash))
  if (root === undefined) return undefined
  let path: string
  try {
    path = decodeURIComponent(rest.slice(slash + 1))
  } catch {
    return undefined
  }
  if (path.includes('\0')) return undefined
  // Bare subpath imports (`lib0/encoding`) name a module without its extension.
  if (!/\.(m?js|css|html)$/.test(path)) path = `${path}.js`
  const file = normalize(join(root, path))
  return file.startsWith(root + sep) ? file : undefined
}

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  html: 'text/html; charset=utf-8',
}

export function registerBoardPage(api: FastifyInstance): void {
  api.get('/whiteboard/:groupId', async (_request, reply) => {
    const html = await readFile(join(PAGE_DIR, 'board.html'), 'utf8')
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: http: https:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
      )
      .send(html)
  })
  api.get(`${APP_PREFIX}*`, async (request, reply) => {
    const file = appFile(request.url.split('?')[0] as string)
    if (file === undefined) return reply.code(404).type('text/plain').send('not found\n')
    try {
      const body = await readFile(file)
      return reply
        .type(TYPES[file.split('.').pop() as string] ?? 'application/octet-stream')
        .header('cache-control', 'public, max-age=3600')
        .send(body)
    } catch {
      return reply.code(404).type('text/plain').send('not found\n')
    }
  })
}
