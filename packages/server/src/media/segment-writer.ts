// One recorded segment: an `ffmpeg -f flv -i pipe:0 -c copy` that writes
// fragmented MP4, so whatever happens to the process, the fragments already
// written stay playable. Timestamps are rebased to start at 0.
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { flvHeader, type MediaPacket, writeTagTime } from './rtmp-ingest.ts'

export interface SegmentWriterOptions {
  ffmpeg: string
  file: string
  /** Codec headers (FLV tags) to write first: AVC and/or AAC configuration. */
  headers: { video?: Buffer | undefined; audio?: Buffer | undefined }
  /** Record audio (RecordControl DisableAudio turns it off). */
  audio: boolean
  /** The first packet: a key frame, or any audio packet of an audio-only stream. */
  first: MediaPacket
  /** Called once if ffmpeg ends without having been asked to. */
  onFault: (message: string) => void
  /** Backpressure: stdin's buffer is full / drained. */
  onFull: () => void
  onDrain: () => void
}

/** How long a closing ffmpeg may take to write its last fragment before it is killed. */
const CLOSE_TIMEOUT_MS = 15_000

export const SEGMENT_FFMPEG_ARGS = [
  '-hide_banner',
  '-loglevel',
  'error',
  '-f',
  'flv',
  '-i',
  'pipe:0',
  '-map',
  '0:v?',
  '-map',
  '0:a?',
  '-c',
  'copy',
  // A fragment per key frame, flushed at once: a killed writer loses at most a GOP.
  '-movflags',
  '+frag_keyframe+empty_moov+default_base_moof',
  '-flush_packets',
  '1',
  '-f',
  'mp4',
  '-y',
]

export class SegmentWriter {
  readonly #child: ChildProcessByStdio<Writable, null, Readable>
  readonly #base: number
  readonly #audio: boolean
  readonly #onFull: () => void
  readonly #exited: Promise<void>
  #closing = false
  #faulted = false
  #stderr = ''
  /** Last timestamp written per tag type, so output never goes backwards. */
  #last = { 8: 0, 9: 0 }
  packets = 0

  constructor(options: SegmentWriterOptions) {
    this.#base = options.first.dts
    this.#audio = options.audio
    const video = options.headers.video
    const audio = options.audio ? options.headers.audio : undefined
    this.#child = spawn(options.ffmpeg, [...SEGMENT_FFMPEG_ARGS, options.file], {
      stdio: ['pipe', 'ignore', 'pipe'],
    })
    this.#child.stderr.setEncoding('utf8')
    this.#child.stderr.on('data', (c: string) => {
      this.#stderr = (this.#stderr + c).slice(-2000)
    })
    this.#child.stdin.on('error', () => {
      // EPIPE when ffmpeg died: reported by the exit handler.
    })
    this.#child.stdin.on('drain', options.onDrain)
    this.#exited = new Promise((resolve) => {
      const fault = (message: string) => {
        if (this.#closing || this.#faulted) return
        this.#faulted = true
        options.onFault(message)
      }
      this.#child.on('error', (error) => {
        fault(`cannot run ffmpeg: ${error.message}`)
        resolve()
      })
      this.#child.on('exit', (code, signal) => {
        if (code !== 0 || !this.#closing)
          fault(
            `recording process ended (${signal ?? `code ${code}`})${this.#stderr ? `: ${this.#stderr.trim()}` : ''}`,
          )
        resolve()
      })
    })
    this.#onFull = options.onFull
    const stdin = this.#child.stdin
    stdin.write(flvHeader(audio !== undefined, video !== undefined))
    for (const header of [video, audio]) {
      if (header === undefined) continue
      writeTagTime(header, 0)
      stdin.write(header)
    }
    this.write(options.first)
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  get faulted(): boolean {
    return this.#faulted
  }

  write(packet: MediaPacket): void {
    if (this.#closing || this.#faulted) return
    if (packet.type === 8 && !this.#audio) return
    const t = packet.dts - this.#base
    // Audio captured just before the first key frame has nothing to go with.
    if (t < 0) return
    const time = Math.max(t, this.#last[packet.type])
    this.#last[packet.type] = time
    writeTagTime(packet.tag, time)
    this.packets++
    if (!this.#child.stdin.write(packet.tag)) this.#onFull()
  }

  /** Ends the input and waits until ffmpeg has written the last fragment. */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true
      this.#child.stdin.end()
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), CLOSE_TIMEOUT_MS)
      await this.#exited
      clearTimeout(timer)
    }
    await this.#exited
  }
}
