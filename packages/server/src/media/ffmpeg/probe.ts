// What ffprobe says about a media file: the figures a VideoInfo reports, and
// the codec parameters that decide whether files can be joined by stream copy.
import { runTool } from './ffmpeg-tools.ts'

export interface VideoStreamInfo {
  codec: string
  profile: string
  level: number
  width: number
  height: number
  pixFmt: string
  /** Frames per second as ffmpeg writes it ("15/1", "30000/1001"): the nominal rate. */
  fps: string
  /** Hash of the codec's extradata (H.264: SPS and PPS). */
  extradata: string
}

export interface AudioStreamInfo {
  codec: string
  sampleRate: number
  channels: number
  extradata: string
}

export interface MediaInfo {
  /** Container duration, ms. */
  durationMs: number
  sizeBytes: number
  video: VideoStreamInfo | undefined
  audio: AudioStreamInfo | undefined
}

interface RawStream {
  codec_type?: string
  codec_name?: string
  profile?: string
  level?: number
  width?: number
  height?: number
  pix_fmt?: string
  avg_frame_rate?: string
  r_frame_rate?: string
  sample_rate?: string
  channels?: number
  extradata_hash?: string
}

function frameRate(value: string | undefined): string | undefined {
  const [num, den] = (value ?? '0/1').split('/').map(Number)
  return num && den && num / den > 0 && num / den <= 120 ? `${num}/${den}` : undefined
}

/** A frame rate "n/d" as a number. */
export function fpsValue(rate: string): number {
  const [num = 25, den = 1] = rate.split('/').map(Number)
  return num / den
}

/** Parses ffprobe's JSON (`-show_format -show_streams -show_data_hash md5`). */
export function parseProbe(json: string): MediaInfo {
  const raw = JSON.parse(json) as {
    format?: { duration?: string; size?: string }
    streams?: RawStream[]
  }
  const streams = raw.streams ?? []
  const v = streams.find((s) => s.codec_type === 'video')
  const a = streams.find((s) => s.codec_type === 'audio')
  return {
    durationMs: Math.round(Number(raw.format?.duration ?? 0) * 1000),
    sizeBytes: Number(raw.format?.size ?? 0),
    video: v && {
      codec: v.codec_name ?? '',
      profile: v.profile ?? '',
      level: v.level ?? 0,
      width: v.width ?? 0,
      height: v.height ?? 0,
      pixFmt: v.pix_fmt ?? '',
      // The nominal rate is what an encoder writes into the SPS timing; the
      // average of a short segment is a little off (45000/2999).
      fps: frameRate(v.r_frame_rate) ?? frameRate(v.avg_frame_rate) ?? '25/1',
      extradata: v.extradata_hash ?? '',
    },
    audio: a && {
      codec: a.codec_name ?? '',
      sampleRate: Number(a.sample_rate ?? 0),
      channels: a.channels ?? 0,
      extradata: a.extradata_hash ?? '',
    },
  }
}

export async function probe(ffprobe: string, file: string): Promise<MediaInfo> {
  const out = await runTool(
    ffprobe,
    [
      '-v',
      'error',
      '-show_data_hash',
      'md5',
      '-show_entries',
      'format=duration,size:stream=codec_type,codec_name,profile,level,width,height,pix_fmt,avg_frame_rate,r_frame_rate,sample_rate,channels,extradata_hash',
      '-of',
      'json',
      file,
    ],
    // Headers only: a second at most on any real file.
    { budget: { cpuMs: 30_000, wallMs: 120_000 } },
  )
  return parseProbe(out)
}

/** The video parameters that must be equal for stream copy (undefined: no video). */
export const videoParameters = (m: MediaInfo): string | undefined =>
  m.video && [m.video.codec, m.video.width, m.video.height, m.video.extradata].join('/')

/** The audio parameters that must be equal for stream copy (undefined: no audio). */
export const audioParameters = (m: MediaInfo): string | undefined =>
  m.audio && [m.audio.codec, m.audio.sampleRate, m.audio.channels, m.audio.extradata].join('/')

/** Whether two files' streams can be joined by stream copy. */
export function sameCodecParameters(a: MediaInfo, b: MediaInfo): boolean {
  return videoParameters(a) === videoParameters(b) && audioParameters(a) === audioParameters(b)
}
