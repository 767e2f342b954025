// One recorded segment: a recording process (ffmpeg, stream copy) fed with a
// Matroska stream of the publisher's access units on its stdin, writing a
// Matroska file in clusters of at most a second, so a process killed at any
// moment leaves everything but its last second playable. Timestamps are
// rebased to start at 0 at the segment's first unit.
import type { ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { spawnTied } from '../../proc/children.ts'
import type { AccessUnit, Tracks } from '../contracts.ts'
import { FfmpegCommand } from '../ffmpeg/command.ts'
import { MatroskaWriter } from './matroska.ts'

export interface SegmentWriterOptions {
  ffmpeg: string
  file: string
  /** The tracks to write (audio left out when RecordControl disables it). */
  tracks: Tracks
  /** The first unit: a key frame, or any audio unit of an audio-only stream. */
  first: AccessUnit
  /** Called once if the recording process ends without having been asked to, or cannot take input. */
  onFault: (message: string) => void
  /** Backpressure: the process's input is full / can take more. Always released by the end. */
  onFull: () => void
  onDrain: () => void
}

/** What the recorder needs of a segment writer; a fake stands in for it in the recorder's tests. */
export interface SegmentSink {
  write(unit: AccessUnit): void
  /** Ends the input and waits until the process has written and closed the file. */
  close(): Promise<void>
}

/** Starts the recording process of a segment. */
export type OpenSegment = (options: Omit<SegmentWriterOptions, 'ffmpeg'>) => SegmentSink

/** Segment writers that run `ffmpeg`. */
export const ffmpegSegments =
  (ffmpeg: string): OpenSegment =>
  (options) =>
    new SegmentWriter({ ...options, ffmpeg })

/** How long a closing process may take to write its last cluster before it is killed. */
const CLOSE_TIMEOUT_MS = 15_000

/** The recording process: Matroska in, Matroska out, by stream copy. */
export function segmentCommand(file: string): string[] {
  return (
    new FfmpegCommand()
      // stdin is the input: no -nostdin.
      .globals(['-hide_banner', '-loglevel', 'error', '-y'])
      // The stream's header describes every track: nothing to probe.
      .input({
        url: 'pipe:0',
        format: 'matroska',
        options: ['-probesize', '32', '-analyzeduration', '0'],
      })
      .output({
        url: file,
        format: 'matroska',
        maps: ['0'],
        // A cluster at least every second, flushed when it closes: a killed
        // process loses at most its last second.
        options: ['-c', 'copy', '-cluster_time_limit', '1000', '-flush_packets', '1'],
      })
      .args()
  )
}

export class SegmentWriter implements SegmentSink {
  readonly #child: ChildProcessByStdio<Writable, null, Readable>
  readonly #mkv: MatroskaWriter
  readonly #base: number
  readonly #options: SegmentWriterOptions
  readonly #exited: Promise<void>
  #closing = false
  #ended = false
  #broken = false
  #full = false
  #stderr = ''
  /** Last time written per track, so output never goes backwards. */
  #last = { video: Number.NEGATIVE_INFINITY, audio: Number.NEGATIVE_INFINITY }
  units = 0

  constructor(options: SegmentWriterOptions) {
    this.#options = options
    this.#base = options.first.dts
    this.#mkv = new MatroskaWriter(options.tracks)
    // Tied to the service: a kill -9 of it leaves no recording process behind
    // (the restart records the stream again into a new segment).
    this.#child = spawnTied(options.ffmpeg, segmentCommand(options.file), {
      stdio: ['pipe', 'ignore', 'pipe'],
    }) as ChildProcessByStdio<Writable, null, Readable>
    this.#child.stderr.setEncoding('utf8')
    this.#child.stderr.on('data', (c: string) => {
      this.#stderr = (this.#stderr + c).slice(-2000)
    })
    this.#child.stdin.on('error', () => {
      // EPIPE: the process is gone, and its exit says why. Nothing more is written.
      this.#broken = true
      this.#release()
    })
    this.#child.stdin.on('drain', () => this.#release())
    this.#exited = new Promise((resolve) => {
      this.#child.on('error', (error) => {
        this.#end(`cannot run ffmpeg: ${error.message}`)
        resolve()
      })
      this.#child.on('exit', (code, signal) => {
        if (code !== 0 || !this.#closing) {
          const detail = this.#stderr.trim()
          this.#end(
            `recording process ended (${signal ?? `code ${code}`})${detail ? `: ${detail}` : ''}`,
          )
        }
        this.#end(undefined)
        resolve()
      })
    })
    this.#send([this.#mkv.header()])
    this.write(options.first)
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  write(unit: AccessUnit): void {
    if (this.#closing || this.#ended || this.#broken) return
    const track = this.#options.tracks[unit.type]
    if (track === undefined) return
    const dts = unit.dts - this.#base
    // Audio captured just before the first key frame has nothing to go with.
    if (dts < 0) return
    const at = Math.max(unit.pts - this.#base, this.#last[unit.type])
    this.#last[unit.type] = unit.type === 'audio' ? at : Math.max(dts, this.#last.video)
    this.units++
    this.#send(this.#mkv.block(unit.type, at, unit.key, unit.data))
  }

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

  /** Writes `buffers` together: one system call for a unit's few buffers. */
  #send(buffers: readonly Buffer[]): void {
    if (buffers.length === 0) return
    const stdin = this.#child.stdin
    let ok = true
    stdin.cork()
    for (const b of buffers) ok = stdin.write(b) && ok
    stdin.uncork()
    if (!ok && !this.#full) {
      this.#full = true
      this.#options.onFull()
    }
  }

  /** Backpressure is released when the input drains, and always when the process is gone. */
  #release(): void {
    if (!this.#full) return
    this.#full = false
    this.#options.onDrain()
  }

  /** The process is gone (or never ran): a fault, with `message`, unless it was asked to close. */
  #end(message: string | undefined): void {
    if (this.#ended) return
    this.#ended = true
    this.#release()
    if (message !== undefined && !this.#closing) this.#options.onFault(message)
  }
}
