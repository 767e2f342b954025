// The baseline of bench/api.bench.ts: a Fastify route that answers a constant
// TIW-shaped envelope, in its own process, with the same framework settings.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
app.post('/*', async () => ({ Response: { RequestId: 'hello' } }))
const address = await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`listening on ${address}\n`)
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)))
