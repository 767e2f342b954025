// Media sources and an S3 store for tests: the ffmpeg arguments of a TRTC-style
// test publisher (testsrc and a sine, x264 without B-frames, one key frame a
// second) and an in-process s3rver with one bucket.
import type { AddressInfo } from 'node:net'
import S3rver from 's3rver'

export interface TestSource {
  seconds: number
  size?: string
  /** Real time (`-re`), as a live publisher sends. */
  live?: boolean
  audio?: boolean
  /** smptebars instead of testsrc (a screen share, say). */
  bars?: boolean
  frequency?: number
  preset?: string
}

/** ffmpeg arguments up to the output: encode a test pattern and a tone as a publisher would. */
export function testSourceArgs(s: TestSource): string[] {
  const audio = s.audio ?? true
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    ...(s.live ? ['-re'] : []),
    '-f',
    'lavfi',
    '-i',
    `${s.bars ? 'smptebars' : 'testsrc'}=size=${s.size ?? '320x240'}:rate=15`,
    ...(audio ? ['-f', 'lavfi', '-i', `sine=frequency=${s.frequency ?? 440}`] : []),
    '-t',
    String(s.seconds),
    '-c:v',
    'libx264',
    '-preset',
    s.preset ?? 'veryfast',
    '-tune',
    'zerolatency',
    '-g',
    '15',
    '-pix_fmt',
    'yuv420p',
    ...(audio ? ['-c:a', 'aac'] : []),
  ]
}

/** A StartOnlineRecord request with Concat, for post-processing outside the API. */
export const CONCAT_REQUEST = {
  SdkAppId: 1,
  RoomId: 1,
  RecordUserId: 'tic_record_user_1_test',
  RecordUserSig: 'not checked by post-processing',
  Concat: { Enabled: true },
}

/** An s3rver on a free port with `bucket`; credentials S3RVER/S3RVER. */
export async function startS3rver(
  directory: string,
  bucket: string,
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const s3 = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
  })
  const address = (await s3.run()) as AddressInfo
  return { endpoint: `http://127.0.0.1:${address.port}`, close: () => s3.close() }
}
