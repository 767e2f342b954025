import assert from 'node:assert/strict'
import { test } from 'node:test'
import { x264Options, x264ParamsFor } from './x264-sei.ts'

const sei = (options: string) =>
  Buffer.concat([
    Buffer.from([0, 0, 0, 1, 6, 5]),
    Buffer.from(`x264 - core 164 r3095 - H.264/MPEG-4 AVC codec - options: ${options}`),
    Buffer.from([0, 0x80]),
  ])

test('the options x264 writes into its SEI', () => {
  const o = x264Options(sei('cabac=1 ref=1 deblock=1:0:0 bframes=0 rc=crf crf=23.0'))
  assert.deepEqual(o, {
    cabac: '1',
    ref: '1',
    deblock: '1:0:0',
    bframes: '0',
    rc: 'crf',
    crf: '23.0',
  })
  assert.equal(x264Options(Buffer.from('no encoder string here')), undefined)
})

test('x264-params that shape SPS and PPS, renamed to what x264 parses', () => {
  const cbr =
    'cabac=1 ref=1 8x8dct=1 cqm=0 chroma_qp_offset=0 sliced_threads=1 interlaced=0 bframes=0 weightp=1 keyint=30 keyint_min=3 scenecut=40 rc_lookahead=0 rc=cbr mbtree=0 bitrate=2000 vbv_maxrate=2000 vbv_bufsize=2000 nal_hrd=cbr'
  assert.equal(
    x264ParamsFor(x264Options(sei(cbr)) as Record<string, string>),
    'cabac=1:ref=1:bframes=0:weightp=1:8x8dct=1:chroma-qp-offset=0:keyint=30:scenecut=40:sliced-threads=1:rc-lookahead=0:mbtree=0:min-keyint=3:bitrate=2000:vbv-maxrate=2000:vbv-bufsize=2000:nal-hrd=cbr',
  )
  const bframes = x264ParamsFor({
    bframes: '3',
    b_pyramid: '2',
    direct: '1',
    weightb: '1',
    rc: 'crf',
    crf: '23.0',
  })
  assert.equal(bframes, 'bframes=3:weightb=1:b-pyramid=normal:direct=spatial:crf=23.0')
  assert.equal(x264ParamsFor({ rc: 'crf', crf: '20', interlaced: 'tff' }), undefined, 'interlaced')
  assert.equal(x264ParamsFor({ rc: 'crf', crf: '20', cqm: '2' }), undefined, 'custom matrices')
  assert.equal(x264ParamsFor({ rc: '2pass' }), undefined)
})
