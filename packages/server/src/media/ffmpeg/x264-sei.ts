// x264 writes its settings into an SEI message of the first frame ("x264 -
// core … - options: cabac=1 ref=1 …"). OBS and ffmpeg publishers encode with
// x264, so those settings let a pad be encoded with the publisher's own
// SPS/PPS, and spliced by stream copy. Only the settings that shape the
// parameter sets are carried over; the splice still checks the result.
import { open } from 'node:fs/promises'

/** The options of the first x264 SEI in `head` (the start of a file), or undefined. */
export function x264Options(head: Buffer): Record<string, string> | undefined {
  const at = head.indexOf('x264 - core')
  if (at < 0) return undefined
  const end = head.indexOf(0, at)
  const text = head.subarray(at, end < 0 ? undefined : end).toString('latin1')
  const options = /options: (.*)$/.exec(text)?.[1]
  if (options === undefined) return undefined
  return Object.fromEntries(
    options
      .trim()
      .split(/\s+/)
      .map((kv) => kv.split('=', 2) as [string, string])
      .filter(([k, v]) => k && v !== undefined),
  )
}

export async function readX264Options(file: string): Promise<Record<string, string> | undefined> {
  const handle = await open(file, 'r')
  try {
    const head = Buffer.alloc(1 << 20)
    const { bytesRead } = await handle.read(head, 0, head.length, 0)
    return x264Options(head.subarray(0, bytesRead))
  } finally {
    await handle.close()
  }
}

const PYRAMID = ['none', 'strict', 'normal']
const DIRECT = ['none', 'spatial', 'temporal', 'auto']

/**
 * `-x264-params` reproducing what shapes SPS and PPS (entropy coding,
 * references, B-frames, weighted prediction, 8x8 transform, GOP length, rate
 * control and HRD), or undefined when the settings cannot be reproduced.
 */
export function x264ParamsFor(o: Record<string, string>): string | undefined {
  const out: string[] = []
  const copy = (from: string, to = from.replaceAll('_', '-')) => {
    const v = o[from]
    if (v !== undefined && /^[\w.]+$/.test(v)) out.push(`${to}=${v}`)
  }
  for (const key of ['cabac', 'ref', 'bframes', 'weightp', '8x8dct', 'chroma_qp_offset']) copy(key)
  for (const key of ['constrained_intra', 'open_gop', 'intra_refresh', 'keyint', 'scenecut'])
    copy(key)
  // Threading and lookahead decide the HRD delays written into the VUI.
  for (const key of ['sliced_threads', 'rc_lookahead', 'mbtree']) copy(key)
  copy('keyint_min', 'min-keyint')
  if (Number(o.bframes ?? 0) > 0) {
    copy('weightb')
    const pyramid = PYRAMID[Number(o.b_pyramid)]
    if (pyramid) out.push(`b-pyramid=${pyramid}`)
    const direct = DIRECT[Number(o.direct)]
    if (direct) out.push(`direct=${direct}`)
  }
  if ((o.interlaced ?? '0') !== '0') return undefined
  // Custom quantiser matrices are written into the parameter sets.
  if (o.cqm === '1') out.push('cqm=jvt')
  else if ((o.cqm ?? '0') !== '0') return undefined
  switch (o.rc) {
    case 'crf':
      copy('crf')
      break
    case 'cqp':
      copy('qp')
      break
    case 'abr':
    case 'cbr':
      copy('bitrate')
      break
    default:
      return undefined
  }
  copy('vbv_maxrate')
  copy('vbv_bufsize')
  copy('nal_hrd')
  return out.join(':')
}
