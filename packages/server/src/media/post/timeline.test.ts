import assert from 'node:assert/strict'
import { test } from 'node:test'
import { omittedDurations, replayTime, type Timeline, totalTime } from './timeline.ts'

const t: Timeline = {
  startMs: 10_000,
  stopMs: 30_000,
  pauses: [
    { pauseMs: 12_000, resumeMs: 15_000 },
    { pauseMs: 20_000, resumeMs: 21_000 },
    // Paused until the stop.
    { pauseMs: 28_000, resumeMs: 30_000 },
  ],
}

test('replay time leaves the pauses out; times inside a pause map to it', () => {
  assert.equal(replayTime(t, 10_000), 0)
  assert.equal(replayTime(t, 12_000), 2000)
  assert.equal(replayTime(t, 13_500), 2000)
  assert.equal(replayTime(t, 15_000), 2000)
  assert.equal(replayTime(t, 16_000), 3000)
  assert.equal(replayTime(t, 22_000), 8000)
  assert.equal(replayTime(t, 5_000), 0, 'before the start')
  assert.equal(replayTime(t, 99_000), totalTime(t), 'after the stop')
  assert.equal(totalTime(t), 20_000 - 3000 - 1000 - 2000)
})

test('one OmittedDuration per pause resumed from, at its replay position', () => {
  assert.deepEqual(omittedDurations(t), [
    { VideoTime: 2000, PauseTime: 12_000, ResumeTime: 15_000 },
    { VideoTime: 7000, PauseTime: 20_000, ResumeTime: 21_000 },
  ])
  assert.deepEqual(omittedDurations({ startMs: 0, stopMs: 5000, pauses: [] }), [])
})
