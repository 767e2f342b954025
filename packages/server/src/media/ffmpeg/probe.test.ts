import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fpsValue, parseProbe, sameCodecParameters } from './probe.ts'

const json = JSON.stringify({
  streams: [
    {
      codec_type: 'video',
      codec_name: 'h264',
      profile: 'High',
      level: 12,
      width: 320,
      height: 240,
      pix_fmt: 'yuv420p',
      r_frame_rate: '15/1',
      avg_frame_rate: '45000/2999',
      extradata_hash: 'MD5:aa',
    },
    {
      codec_type: 'audio',
      codec_name: 'aac',
      sample_rate: '44100',
      channels: 1,
      extradata_hash: 'MD5:bb',
    },
  ],
  format: { duration: '3.018367', size: '51234' },
})

test('ffprobe JSON: duration in ms, the nominal frame rate, codec hashes', () => {
  const info = parseProbe(json)
  assert.equal(info.durationMs, 3018)
  assert.equal(info.sizeBytes, 51234)
  assert.equal(info.video?.fps, '15/1', 'the nominal rate, not the average of a short file')
  assert.equal(info.video?.extradata, 'MD5:aa')
  assert.deepEqual(info.audio, {
    codec: 'aac',
    sampleRate: 44100,
    channels: 1,
    extradata: 'MD5:bb',
  })
  assert.equal(fpsValue('30000/1001').toFixed(2), '29.97')
  const audioOnly = parseProbe(JSON.stringify({ streams: [], format: {} }))
  assert.equal(audioOnly.video, undefined)
  assert.equal(audioOnly.durationMs, 0)
})

test('files join by stream copy only with the same codec parameters', () => {
  const a = parseProbe(json)
  assert.ok(sameCodecParameters(a, parseProbe(json)))
  const other = parseProbe(json.replace('MD5:aa', 'MD5:cc'))
  assert.equal(sameCodecParameters(a, other), false, 'other SPS/PPS')
  const noAudio = { ...a, audio: undefined }
  assert.equal(sameCodecParameters(a, noAudio), false, 'other streams')
})
