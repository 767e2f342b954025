import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { resolveMediaTools, runTool, ToolError } from './ffmpeg-tools.ts'

const dir = mkdtempSync(join(tmpdir(), 'online-record-tools-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function executable(name: string): string {
  const path = join(dir, name)
  writeFileSync(path, '#!/bin/sh\necho "$0 $@"\n')
  chmodSync(path, 0o755)
  return path
}

test('FFMPEG_PATH and FFPROBE_PATH come first, and must be executable', () => {
  const ffmpeg = executable('my-ffmpeg')
  const ffprobe = executable('my-ffprobe')
  const tools = resolveMediaTools({ FFMPEG_PATH: ffmpeg, FFPROBE_PATH: ffprobe, PATH: '' })
  assert.deepEqual([tools.ffmpeg, tools.ffprobe], [ffmpeg, ffprobe])
  assert.deepEqual(tools.source, { ffmpeg: 'env', ffprobe: 'env' })
  writeFileSync(join(dir, 'plain'), '')
  assert.throws(() => resolveMediaTools({ FFMPEG_PATH: join(dir, 'plain') }), /not an executable/)
})

test('then the PATH, then the npm packages (their ffprobe made executable)', () => {
  const bin = mkdtempSync(join(dir, 'bin-'))
  writeFileSync(join(bin, 'ffmpeg'), '#!/bin/sh\n')
  chmodSync(join(bin, 'ffmpeg'), 0o755)
  const onPath = resolveMediaTools({ PATH: `/nonexistent:${bin}` })
  assert.equal(onPath.ffmpeg, join(bin, 'ffmpeg'))
  assert.equal(onPath.source.ffmpeg, 'PATH')
  assert.equal(onPath.source.ffprobe, 'npm', 'no ffprobe in that directory')
  const npm = resolveMediaTools({ PATH: '' })
  assert.deepEqual(npm.source, { ffmpeg: 'npm', ffprobe: 'npm' })
  assert.match(npm.ffprobe, /@ffprobe-installer/)
})

test('runTool gives stdout, or a ToolError with the tail of stderr', async () => {
  assert.match(await runTool(executable('echoer'), ['a', 'b']), /echoer a b/)
  const failing = join(dir, 'failing')
  writeFileSync(failing, '#!/bin/sh\necho "it broke" >&2\nexit 3\n')
  chmodSync(failing, 0o755)
  const error = await runTool(failing, []).catch((e: unknown) => e)
  assert.ok(error instanceof ToolError)
  assert.equal(error.code, 3)
  assert.match(error.message, /it broke/)
})
