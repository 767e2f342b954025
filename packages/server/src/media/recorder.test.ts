// The recorder's decisions that need no media; recording itself is exercised
// end to end in test/media-*.test.ts with real publishers and processes.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { StartOnlineRecordRequest } from '@online-record/protocol'
import { recordPolicy } from './recorder.ts'

const base: StartOnlineRecordRequest = {
  SdkAppId: 1,
  RoomId: 1,
  RecordUserId: 'tic_record_user_1_x',
  RecordUserSig: 's',
}

test('RecordControl: off unless Enabled; globals; the longest StreamId prefix wins', () => {
  assert.deepEqual(recordPolicy(base, 'alice'), { record: true, audio: true })
  assert.deepEqual(
    recordPolicy({ ...base, RecordControl: { Enabled: false, DisableRecord: true } }, 'alice'),
    { record: true, audio: true },
  )
  const rc = {
    ...base,
    RecordControl: {
      Enabled: true,
      DisableAudio: true,
      StreamControls: [
        { StreamId: 'tic_substream', DisableRecord: true },
        { StreamId: 'tic_substream_teacher', DisableRecord: false },
        { StreamId: 'bob', DisableAudio: false },
      ],
    },
  }
  assert.deepEqual(recordPolicy(rc, 'alice'), { record: true, audio: false })
  assert.deepEqual(recordPolicy(rc, 'bob'), { record: true, audio: true })
  assert.deepEqual(recordPolicy(rc, 'tic_substream_alice'), { record: false, audio: false })
  assert.deepEqual(recordPolicy(rc, 'tic_substream_teacher'), { record: true, audio: false })
  assert.deepEqual(
    recordPolicy({ ...base, RecordControl: { Enabled: true, DisableRecord: true } }, 'x'),
    { record: false, audio: true },
  )
})
