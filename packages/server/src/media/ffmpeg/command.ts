// ffmpeg command lines, made in one place: inputs with their options, an
// optional filter graph, outputs with theirs. Every stage (segment writing,
// remuxing, padding, splicing, audio extraction, mixing, board rendering)
// builds its command here, so the common options and their order are the same
// everywhere and a stage is read as what it asks for.

export interface InputSpec {
  /** A path, `pipe:0`, or a lavfi graph (with `format: 'lavfi'`). */
  url: string
  /** `-f` of the input. */
  format?: string
  /** Options before `-i` (e.g. `-loop 1`, `-framerate 15`, `-ss 2`). */
  options?: readonly string[]
}

export interface OutputSpec {
  url: string
  /** `-f` of the output. */
  format?: string
  /** `-map` arguments, in order. */
  maps?: readonly string[]
  /** Codec and muxer options after the maps. */
  options?: readonly string[]
}

export class FfmpegCommand {
  readonly #inputs: InputSpec[] = []
  readonly #outputs: OutputSpec[] = []
  #graph: string | undefined
  #global: string[] = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y']

  /** Adds an input; it is input number `inputCount - 1` in maps and filter labels. */
  input(spec: InputSpec): this {
    this.#inputs.push(spec)
    return this
  }

  /** A lavfi source (`color=…`, `anullsrc=…`) as an input. */
  source(graph: string, options: readonly string[] = []): this {
    return this.input({ url: graph, format: 'lavfi', options })
  }

  get inputCount(): number {
    return this.#inputs.length
  }

  filter(graph: string): this {
    this.#graph = graph
    return this
  }

  output(spec: OutputSpec): this {
    this.#outputs.push(spec)
    return this
  }

  /** Global options replacing the defaults (used where stdin is the input: `-nostdin` must go). */
  globals(options: readonly string[]): this {
    this.#global = [...options]
    return this
  }

  args(): string[] {
    if (this.#outputs.length === 0) throw new Error('an ffmpeg command needs an output')
    const args = [...this.#global]
    for (const i of this.#inputs) {
      args.push(...(i.options ?? []))
      if (i.format) args.push('-f', i.format)
      args.push('-i', i.url)
    }
    if (this.#graph !== undefined) args.push('-filter_complex', this.#graph)
    for (const o of this.#outputs) {
      for (const m of o.maps ?? []) args.push('-map', m)
      args.push(...(o.options ?? []))
      if (o.format) args.push('-f', o.format)
      args.push(o.url)
    }
    return args
  }
}

/** Copy every video and audio stream as it is. */
export const COPY_STREAMS = ['0:v?', '0:a?'] as const
