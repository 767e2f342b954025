// The payload of an RTMP audio or video message (an FLV tag body) as the
// media core wants it: track configuration, an access unit, or a codec this
// service does not record. H.264 (classic AVC) and AAC are what RTMP
// publishers send; anything else is named so the publish can be refused with
// a reason rather than recorded as nothing.
import { parseAudioSpecificConfig } from '../../codecs/audio.ts'
import { parseAvcC, parseSps } from '../../codecs/h264.ts'
import type { AccessUnit, AudioTrack, VideoTrack } from '../../contracts.ts'

export type FlvMedia =
  | { kind: 'video-config'; track: VideoTrack }
  | { kind: 'audio-config'; track: AudioTrack }
  | { kind: 'unit'; unit: AccessUnit }
  | { kind: 'unsupported'; what: string }
  | { kind: 'ignore' }

const VIDEO_CODECS: Record<number, string> = {
  2: 'Sorenson H.263',
  3: 'Screen video',
  4: 'VP6',
  5: 'VP6 with alpha',
  6: 'Screen video 2',
  12: 'HEVC',
  13: 'AV1',
}
const AUDIO_CODECS: Record<number, string> = {
  0: 'PCM',
  1: 'ADPCM',
  2: 'MP3',
  3: 'PCM',
  4: 'Nellymoser',
  5: 'Nellymoser',
  6: 'Nellymoser',
  7: 'G.711 A-law',
  8: 'G.711 mu-law',
  9: 'enhanced RTMP audio',
  11: 'Speex',
  14: 'MP3',
  15: 'device-specific audio',
}

/** Reads an RTMP video (type 9) or audio (type 8) message at stream time `time` (ms). */
export function parseFlvMedia(type: number, time: number, data: Buffer): FlvMedia {
  if (data.length === 0) return { kind: 'ignore' }
  const first = data[0] as number
  if (type === 9) {
    if (first & 0x80) {
      const fourCC = data.subarray(1, 5).toString('latin1')
      return { kind: 'unsupported', what: `enhanced RTMP video (${fourCC})` }
    }
    const codec = first & 0x0f
    if (codec !== 7) {
      return { kind: 'unsupported', what: VIDEO_CODECS[codec] ?? `video codec ${codec}` }
    }
    if (data.length < 5) return { kind: 'ignore' }
    const packetType = data[1]
    if (packetType === 0) {
      const config = Buffer.from(data.subarray(5))
      const { sps } = parseAvcC(config)
      const size = sps[0] ? parseSps(sps[0]) : { width: 0, height: 0 }
      return {
        kind: 'video-config',
        track: { type: 'video', codec: 'h264', config, width: size.width, height: size.height },
      }
    }
    if (packetType !== 1) return { kind: 'ignore' }
    const cts = data.readIntBE(2, 3)
    return {
      kind: 'unit',
      unit: {
        type: 'video',
        dts: time,
        pts: time + cts,
        key: first >> 4 === 1,
        data: Buffer.from(data.subarray(5)),
      },
    }
  }
  if (type === 8) {
    const format = first >> 4
    if (format !== 10) {
      return { kind: 'unsupported', what: AUDIO_CODECS[format] ?? `audio format ${format}` }
    }
    if (data.length < 2) return { kind: 'ignore' }
    if (data[1] === 0) {
      const config = Buffer.from(data.subarray(2))
      const { sampleRate, channels } = parseAudioSpecificConfig(config)
      return {
        kind: 'audio-config',
        track: { type: 'audio', codec: 'aac', config, sampleRate, channels },
      }
    }
    return {
      kind: 'unit',
      unit: { type: 'audio', dts: time, pts: time, key: true, data: Buffer.from(data.subarray(2)) },
    }
  }
  return { kind: 'ignore' }
}
