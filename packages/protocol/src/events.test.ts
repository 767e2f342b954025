import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { EVENT_TYPES, eventSchemas, parseCallback } from './events.ts'
import { eventJsonSchemas } from './json-schema.ts'

const fixtures = new URL('../fixtures/', import.meta.url)
const readJson = (path: string): unknown =>
  JSON.parse(readFileSync(new URL(path, fixtures), 'utf8'))
const valid = readdirSync(new URL('events/', fixtures)).map(
  (f) => [f, readJson(`events/${f}`)] as const,
)
const invalid = readdirSync(new URL('invalid/', fixtures)).map(
  (f) =>
    [
      f,
      readJson(`invalid/${f}`) as { description: string; expectPath: string; payload: unknown },
    ] as const,
)

describe('callback event schemas', () => {
  test('there is a seed example for every event type, and one success and one failure Finished', () => {
    const types = valid.map(([, v]) => (v as { EventType: string }).EventType)
    for (const type of EVENT_TYPES) assert.ok(types.includes(type), type)
    assert.equal(types.filter((t) => t === 'OnlineRecordFinished').length, 2)
  })

  for (const [file, payload] of valid) {
    test(`seed example ${file} parses strictly, unchanged`, () => {
      const result = parseCallback(payload)
      assert.ok(result.ok, result.ok ? '' : result.message)
      assert.deepEqual(result.value, payload)
    })
  }

  for (const [file, fixture] of invalid) {
    test(`invalid variant ${file} is rejected naming ${fixture.expectPath}`, () => {
      for (const mode of ['strict', 'lenient'] as const) {
        const result = parseCallback(fixture.payload, mode)
        assert.equal(result.ok, false, fixture.description)
        assert.ok(!result.ok)
        assert.equal(result.path, fixture.expectPath)
        assert.ok(result.message.includes(fixture.expectPath), result.message)
      }
    })
  }

  test('strict mode rejects fields the seed does not define; lenient mode drops them', () => {
    const payload = structuredClone(readJson('events/OnlineRecordFinished.success.json')) as {
      EventData: { VideoInfos: Record<string, unknown>[]; Interrupts?: unknown }
    }
    payload.EventData.Interrupts = []
    ;(payload.EventData.VideoInfos[0] as Record<string, unknown>).Codec = 'h264'
    const strict = parseCallback(payload, 'strict')
    assert.ok(!strict.ok)
    assert.match(strict.message, /EventData\.Interrupts|EventData\.VideoInfos\.0\.Codec/)
    const lenient = parseCallback(payload, 'lenient')
    assert.ok(lenient.ok)
    assert.equal('Interrupts' in lenient.value.EventData, false)
  })

  test('VideoInfo accepts the Width/Height of the data-type reference', () => {
    const info = {
      UserId: 'u',
      VideoDuration: 1,
      VideoFormat: 'mp4',
      VideoId: 'a'.repeat(32),
      VideoPlayTime: 0,
      VideoSize: 1,
      VideoType: 0,
      VideoUrl: 'http://x/y.mp4',
      Width: 640,
      Height: 360,
    }
    assert.ok(eventSchemas.VideoInfo.safeParse(info).success)
    assert.equal(eventSchemas.VideoInfo.safeParse({ ...info, VideoType: 5 }).success, false)
  })
})

describe('JSON Schema export', () => {
  const schemas = eventJsonSchemas()
  const ajv = new Ajv2020({ allErrors: true, strict: false })
  const validateAny = ajv.compile(schemas['OnlineRecordCallback.json'] as object)

  test('one schema per event type plus the union', () => {
    assert.deepEqual(
      Object.keys(schemas).sort(),
      [...EVENT_TYPES.map((t) => `${t}.json`), 'OnlineRecordCallback.json'].sort(),
    )
  })

  test('accepts every seed example, under its own schema and the union', () => {
    for (const [file, payload] of valid) {
      const type = (payload as { EventType: string }).EventType
      const own = ajv.compile(schemas[`${type}.json`] as object)
      assert.ok(own(payload), `${file}: ${ajv.errorsText(own.errors)}`)
      assert.ok(validateAny(payload), `${file}: ${ajv.errorsText(validateAny.errors)}`)
    }
  })

  test('rejects every invalid variant', () => {
    for (const [file, fixture] of invalid) {
      assert.equal(validateAny(fixture.payload), false, file)
    }
  })
})

describe('sample events', () => {
  test('equal the seed fixtures', async () => {
    const { sampleEvents, sampleFailedFinished } = await import('./samples.ts')
    for (const type of EVENT_TYPES) {
      const file = type === 'OnlineRecordFinished' ? 'OnlineRecordFinished.success' : type
      assert.deepEqual(sampleEvents[type], readJson(`events/${file}.json`))
    }
    assert.deepEqual(sampleFailedFinished, readJson('events/OnlineRecordFinished.failure.json'))
  })
})
