// The folders are the architecture: imports point one way. The API knows
// nothing of the media plane (the service composes them), and the media core
// (contracts, capture, post-processing, storage, codecs, ffmpeg) knows
// nothing of any ingest adapter; adapters import the core's contracts.
import assert from 'node:assert/strict'
import { globSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const src = dirname(fileURLToPath(import.meta.url))

/** Every relative import of the non-test sources under `folder`, as paths relative to src. */
function imports(folder: string): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = []
  for (const file of globSync(`${folder}/**/*.ts`, { cwd: src })) {
    if (/(\.test|-suite|test-[a-z-]+|\/test-media)\.ts$/.test(file) || file.endsWith('.test.ts'))
      continue
    const text = readFileSync(join(src, file), 'utf8')
    for (const m of text.matchAll(/^import[^'"]*['"](\.{1,2}\/[^'"]+)['"]/gm)) {
      out.push({ from: file, to: relative(src, resolve(src, dirname(file), m[1] as string)) })
    }
  }
  return out
}

test('the API does not import the media plane', () => {
  const bad = imports('api').filter((i) => i.to.startsWith('media/'))
  assert.deepEqual(bad, [])
})

test('the media core does not import an ingest adapter', () => {
  const core = ['capture', 'post', 'storage', 'codecs', 'ffmpeg'].flatMap((f) =>
    imports(`media/${f}`),
  )
  const top = imports('media').filter((i) => !i.from.slice('media/'.length).includes('/'))
  const bad = [...core, ...top].filter((i) => i.to.startsWith('media/ingest/'))
  assert.deepEqual(bad, [])
})

test('an ingest adapter imports the core, never another adapter', () => {
  const adapters = imports('media/ingest')
  assert.ok(
    adapters.some((i) => i.to === 'media/contracts.ts'),
    'the scan sees imports',
  )
  const bad = adapters.filter((i) => {
    const own = i.from.split('/').slice(0, 3).join('/')
    return i.to.startsWith('media/ingest/') && !i.to.startsWith(own)
  })
  assert.deepEqual(bad, [])
})
