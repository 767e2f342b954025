// Pictures of a board (`image` elements, a page's `bg.image`), as the renderer
// draws them: fetched once per URL under the tenant URL policy, their size
// read from the header before anything is decoded (a 1 MB PNG can hold
// 16000x16000 pixels, 1 GB decoded), decoded one at a time and kept only as a
// copy no larger than the video, within a memory budget per render. What is
// refused or fails is reported (to the operator's log, through the render's
// parent), and the page colour shows where it would be.
import { type Canvas, createCanvas, loadImage } from '@napi-rs/canvas'
import * as Y from 'yjs'
import { fetchLimited } from '../net/outbound.ts'
import type { AddressPolicy } from '../net/url-policy.ts'

export const PICTURE_LIMITS = {
  /** Bytes of one picture, and the time its fetch may take. */
  bytes: 10 * 1024 * 1024,
  deadlineMs: 10_000,
  /** Pictures (URLs) one render fetches. */
  count: 100,
  /** Pixels of one picture, read from its header: 40 MP, 160 MB decoded. */
  pixels: 40_000_000,
  /** Bytes of the copies a render keeps (each at most the video's size, 4 bytes a pixel). */
  keptBytes: 512 * 1024 * 1024,
  /** Time all of a render's fetches may take together. */
  fetchTotalMs: 60_000,
} as const

export type PictureType = 'png' | 'jpeg' | 'gif' | 'webp'

/**
 * The type and the size (pixels) a decoder makes of a picture, from its
 * header; undefined when the header is not one of PNG, JPEG, GIF, WebP or
 * does not say. Read as the decoders read it: PNG's IHDR; JPEG's first SOFn
 * before the scan (any of them, a height left to a DNL marker being refused);
 * GIF's logical screen grown to its first frame (decoders enlarge the screen
 * to a larger first frame); WebP's VP8X canvas, or its VP8 or VP8L frame.
 */
export function pictureSize(
  data: Buffer,
): { type: PictureType; width: number; height: number } | undefined {
  const at = (i: number, n: number) => i + n <= data.length
  if (
    at(0, 24) &&
    data.readUInt32BE(0) === 0x89504e47 &&
    data.toString('latin1', 12, 16) === 'IHDR'
  )
    return { type: 'png', width: data.readUInt32BE(16), height: data.readUInt32BE(20) }
  if (at(0, 3) && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff) return jpegSize(data)
  if (at(0, 13) && /^GIF8[79]a/.test(data.toString('latin1', 0, 6))) return gifSize(data)
  if (
    at(0, 30) &&
    data.toString('latin1', 0, 4) === 'RIFF' &&
    data.toString('latin1', 8, 12) === 'WEBP'
  ) {
    const chunk = data.toString('latin1', 12, 16)
    if (chunk === 'VP8X')
      return { type: 'webp', width: 1 + data.readUIntLE(24, 3), height: 1 + data.readUIntLE(27, 3) }
    if (chunk === 'VP8 ' && data.readUIntBE(23, 3) === 0x9d012a)
      return {
        type: 'webp',
        width: data.readUInt16LE(26) & 0x3fff,
        height: data.readUInt16LE(28) & 0x3fff,
      }
    if (chunk === 'VP8L' && data[20] === 0x2f) {
      const bits = data.readUInt32LE(21)
      return { type: 'webp', width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) }
    }
  }
  return undefined
}

function jpegSize(data: Buffer): { type: 'jpeg'; width: number; height: number } | undefined {
  let i = 2
  while (i + 4 <= data.length) {
    if (data[i] !== 0xff) return undefined
    const marker = data[i + 1] as number
    // Fill bytes before a marker.
    if (marker === 0xff) {
      i++
      continue
    }
    // Markers without a length.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2
      continue
    }
    // The scan or the end came before any frame header.
    if (marker === 0xda || marker === 0xd9) return undefined
    const length = data.readUInt16BE(i + 2)
    const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)
    if (sof) {
      if (i + 9 > data.length) return undefined
      const height = data.readUInt16BE(i + 5)
      const width = data.readUInt16BE(i + 7)
      return height === 0 ? undefined : { type: 'jpeg', width, height }
    }
    i += 2 + length
  }
  return undefined
}

function gifSize(data: Buffer): { type: 'gif'; width: number; height: number } | undefined {
  let width = data.readUInt16LE(6)
  let height = data.readUInt16LE(8)
  const flags = data[10] as number
  let i = 13 + (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0)
  while (i < data.length) {
    const block = data[i]
    if (block === 0x21) {
      // An extension: its label, then sub-blocks up to an empty one.
      i += 2
      while (i < data.length && data[i] !== 0) i += (data[i] as number) + 1
      i++
    } else if (block === 0x2c) {
      if (i + 9 > data.length) return undefined
      width = Math.max(width, data.readUInt16LE(i + 1) + data.readUInt16LE(i + 5))
      height = Math.max(height, data.readUInt16LE(i + 3) + data.readUInt16LE(i + 7))
      return { type: 'gif', width, height }
    } else if (block === 0x3b) break
    else return undefined
  }
  return { type: 'gif', width, height }
}

/** The size a picture is kept at: its own, or fitted into the video's when larger. */
export function keptSize(
  width: number,
  height: number,
  video: { width: number; height: number },
): { width: number; height: number } {
  const scale = Math.min(1, video.width / width, video.height / height)
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  }
}

export interface PictureStats {
  /** Pictures kept, and their bytes. */
  kept: number
  keptBytes: number
  /** Pictures refused or failed. */
  refused: number
}

/** The pictures of one render, by URL. */
export class BoardPictures {
  readonly #policy: AddressPolicy
  readonly #video: { width: number; height: number }
  readonly #warn: (message: string) => void
  readonly #pictures = new Map<string, Canvas | null>()
  #fetchMs = 0
  readonly stats: PictureStats = { kept: 0, keptBytes: 0, refused: 0 }

  constructor(
    policy: AddressPolicy,
    video: { width: number; height: number },
    warn: (message: string) => void = () => {},
  ) {
    this.#policy = policy
    this.#video = video
    this.#warn = warn
  }

  get(url: string): Canvas | undefined {
    return this.#pictures.get(url) ?? undefined
  }

  /** Fetches what the page shown needs and has not been tried yet. */
  async load(doc: Y.Doc): Promise<void> {
    const meta = doc.getMap('meta')
    const page = doc.getMap('pages').get(meta.get('page') as string)
    if (!(page instanceof Y.Map)) return
    const urls: string[] = []
    const bg = page.get('bg') as { image?: unknown } | undefined
    if (typeof bg?.image === 'string') urls.push(bg.image)
    const els = page.get('els')
    if (els instanceof Y.Map) {
      for (const el of els.values()) {
        if (el instanceof Y.Map && el.get('kind') === 'image' && typeof el.get('src') === 'string')
          urls.push(el.get('src') as string)
      }
    }
    for (const url of urls) {
      if (this.#pictures.has(url)) continue
      let picture: Canvas | null = null
      try {
        if (this.#pictures.size >= PICTURE_LIMITS.count)
          throw new Error(`the render has fetched ${PICTURE_LIMITS.count} pictures already`)
        picture = await this.#load(url)
        this.stats.kept++
        this.stats.keptBytes += picture.width * picture.height * 4
      } catch (error) {
        this.stats.refused++
        this.#warn(`board picture ${url} not drawn: ${(error as Error).message}`)
      }
      this.#pictures.set(url, picture)
    }
  }

  async #load(url: string): Promise<Canvas> {
    const left = PICTURE_LIMITS.fetchTotalMs - this.#fetchMs
    if (left <= 0)
      throw new Error(
        `the render's ${PICTURE_LIMITS.fetchTotalMs / 1000} s for fetching pictures are spent`,
      )
    const begun = performance.now()
    let body: Buffer
    try {
      body = (
        await fetchLimited(url, this.#policy, {
          maxBytes: PICTURE_LIMITS.bytes,
          deadlineMs: Math.min(PICTURE_LIMITS.deadlineMs, left),
        })
      ).body
    } finally {
      this.#fetchMs += performance.now() - begun
    }
    // Raster pictures only (PNG, JPEG, GIF, WebP): nothing that could reach out further.
    const size = pictureSize(body)
    if (size === undefined)
      throw new Error('not a PNG, JPEG, GIF or WebP picture with a readable size')
    const { width, height } = size
    if (width === 0 || height === 0) throw new Error(`a ${width}x${height} picture`)
    if (width * height > PICTURE_LIMITS.pixels)
      throw new Error(
        `${width}x${height} is over the ${PICTURE_LIMITS.pixels / 1e6} megapixels a picture may have`,
      )
    const kept = keptSize(width, height, this.#video)
    const bytes = kept.width * kept.height * 4
    if (this.stats.keptBytes + bytes > PICTURE_LIMITS.keptBytes)
      throw new Error(
        `the render keeps ${PICTURE_LIMITS.keptBytes / 1024 / 1024} MiB of pictures at most, and has ${Math.round(this.stats.keptBytes / 1024 / 1024)} MiB`,
      )
    // Decoded whole once (within the pixel limit), drawn once at the kept size; only that copy stays.
    const canvas = createCanvas(kept.width, kept.height)
    await draw(canvas, body, width, height)
    // The decoded picture is garbage now. Where the process may collect (the renderer's
    // may), it is collected at once: its memory goes with a finalizer the second pass runs.
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    await new Promise((r) => setImmediate(r))
    gc?.()
    return canvas
  }
}

/** Decodes `body` (checked to be `width`x`height`) and draws it whole into `canvas`. */
async function draw(canvas: Canvas, body: Buffer, width: number, height: number): Promise<void> {
  const image = await loadImage(body)
  // A JPEG turned by its orientation swaps the two.
  if (image.width * image.height !== width * height)
    throw new Error(
      `its header says ${width}x${height}, its decoder ${image.width}x${image.height}`,
    )
  const ctx = canvas.getContext('2d')
  ctx.imageSmoothingQuality = 'high'
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height)
}
