import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { dedupeKey, MemoryDedupeStore } from './dedupe.ts'
import { createReceiver } from './receiver.ts'
import { sampleEvent, signPayload } from './testing.ts'

const KEY = 'k'
const now = () => 1_800_000_000_000

describe('typed dispatch', () => {
  test('a receiver with neither a key nor a secret is refused at creation', () => {
    for (const options of [{}, { callbackKeys: '' }, { callbackKeys: [], webhookSecrets: [''] }]) {
      assert.throws(() => createReceiver(options), {
        name: 'TypeError',
        message: /needs callbackKeys .* webhookSecrets/,
      })
    }
    assert.ok(createReceiver({ webhookSecrets: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }))
  })

  test('handlers receive the payload type of their event name', async () => {
    const receiver = createReceiver({ callbackKeys: KEY, now })
    const seen: number[] = []
    receiver.on('OnlineRecordLongPauseWarning', (event) => {
      const estimate: number = event.EventData.EstimateStopTime
      // @ts-expect-error a warning has no VideoInfos
      assert.equal(event.EventData.VideoInfos, undefined)
      seen.push(estimate)
    })
    receiver.on('OnlineRecordFinished', (event) => {
      const sizes: number[] = event.EventData.VideoInfos.map((v) => v.VideoSize)
      // @ts-expect-error a Finished event has no EstimateStopTime
      assert.equal(event.EventData.EstimateStopTime, undefined)
      seen.push(sizes.length)
    })
    for (const type of ['OnlineRecordLongPauseWarning', 'OnlineRecordFinished'] as const) {
      const { body } = signPayload(sampleEvent(type), { callbackKey: KEY, now })
      assert.equal((await receiver.receive(body, {})).status, 200)
    }
    assert.deepEqual(seen, [1575546412, 4])
  })

  test('the handler context carries the sequence and attempt headers when they are well formed', async () => {
    const receiver = createReceiver({ callbackKeys: KEY, now })
    const seen: unknown[] = []
    receiver.onAny((_event, { sequence, attempt }) => void seen.push([sequence, attempt]))
    const { body } = signPayload(sampleEvent('OnlineRecordStarted'), { callbackKey: KEY, now })
    for (const headers of [
      { 'online-record-sequence': '3', 'online-record-attempt': '2' },
      { 'Online-Record-Sequence': '12' },
      { 'online-record-sequence': '0', 'online-record-attempt': 'x' },
      {},
    ]) {
      assert.equal((await receiver.receive(body, headers)).status, 200)
    }
    assert.deepEqual(seen, [
      [3, 2],
      [12, undefined],
      [undefined, undefined],
      [undefined, undefined],
    ])
  })

  test('on() with several names, onAny, removeListener', async () => {
    const receiver = createReceiver({ callbackKeys: KEY, now })
    const log: string[] = []
    const started = () => void log.push('started-or-stopped')
    receiver.on(['OnlineRecordStarted', 'OnlineRecordStopped'], started)
    receiver.onAny((event) => void log.push(`any:${event.EventType}`))
    for (const type of [
      'OnlineRecordStarted',
      'OnlineRecordStopped',
      'OnlineRecordFinished',
    ] as const) {
      await receiver.receive(signPayload(sampleEvent(type), { callbackKey: KEY, now }).body, {})
    }
    receiver.removeListener('OnlineRecordStarted', started)
    await receiver.receive(
      signPayload(sampleEvent('OnlineRecordStarted'), { callbackKey: KEY, now }).body,
      {},
    )
    assert.deepEqual(log, [
      'started-or-stopped',
      'any:OnlineRecordStarted',
      'started-or-stopped',
      'any:OnlineRecordStopped',
      'any:OnlineRecordFinished',
      'any:OnlineRecordStarted',
    ])
  })

  test('handler errors are gathered, reported to onError and mapped to a status', async () => {
    const receiver = createReceiver({ callbackKeys: KEY, now })
    const reported: Error[] = []
    receiver.on('OnlineRecordStopped', () => {
      throw new Error('first')
    })
    receiver.onAny(async () => {
      throw new Error('second')
    })
    receiver.onError((e) => void reported.push(e))
    const result = await receiver.receive(
      signPayload(sampleEvent('OnlineRecordStopped'), { callbackKey: KEY, now }).body,
      {},
    )
    assert.equal(result.status, 500)
    assert.ok(result.error instanceof AggregateError)
    assert.equal(result.error.errors.length, 2)
    assert.equal(reported[0], result.error)
    const refused = await receiver.receive('{}', {})
    assert.equal(refused.status, 401)
    assert.equal((reported[1] as Error & { code: string }).code, 'MISSING_SIGNATURE')
  })
})

describe('deduplication', () => {
  test('a redelivered event runs its handlers once; a failed one runs again', async () => {
    const receiver = createReceiver({
      callbackKeys: KEY,
      now,
      dedupe: new MemoryDedupeStore({ now }),
    })
    let calls = 0
    let fail = true
    receiver.on('OnlineRecordFinished', () => {
      calls++
      if (fail) throw new Error('db down')
    })
    const { body } = signPayload(sampleEvent('OnlineRecordFinished'), { callbackKey: KEY, now })
    assert.equal((await receiver.receive(body, {})).status, 500)
    fail = false
    assert.equal((await receiver.receive(body, {})).status, 200)
    const third = await receiver.receive(body, {})
    assert.deepEqual([third.status, third.duplicate, calls], [200, true, 2])
  })

  test('keys: webhook-id when present, else TaskId:EventType:Timestamp', () => {
    const event = sampleEvent('OnlineRecordStarted')
    assert.equal(dedupeKey(event, 'evt_1'), 'evt_1')
    assert.equal(dedupeKey(event, undefined), 'bj0mt2l23osdj300hl30:OnlineRecordStarted:1575545412')
  })

  test('the memory store forgets after the TTL and keeps at most maxEntries', () => {
    let t = 0
    const store = new MemoryDedupeStore({ maxEntries: 2, now: () => t })
    assert.equal(store.claim('a', 10), true)
    assert.equal(store.claim('a', 10), false)
    t = 10_001
    assert.equal(store.claim('a', 10), true)
    store.claim('b', 10)
    store.claim('c', 10)
    assert.equal(store.size, 2)
    assert.equal(store.claim('a', 10), true, 'the oldest key was evicted')
  })
})
