// H.264 parameter sets: the picture size an SPS describes, the avcC record
// (AVCDecoderConfigurationRecord) that carries SPS and PPS, and conversion of
// Annex B byte streams into the length-prefixed NAL units avcC implies.

/** Reads Exp-Golomb coded fields from an RBSP (emulation prevention removed). */
class BitReader {
  readonly #data: Buffer
  #bit = 0

  constructor(data: Buffer) {
    this.#data = data
  }

  bit(): number {
    const byte = this.#data[this.#bit >> 3]
    if (byte === undefined) throw new RangeError('SPS ends early')
    const value = (byte >> (7 - (this.#bit & 7))) & 1
    this.#bit++
    return value
  }

  bits(n: number): number {
    let v = 0
    for (let i = 0; i < n; i++) v = v * 2 + this.bit()
    return v
  }

  ue(): number {
    let zeros = 0
    while (this.bit() === 0) {
      if (++zeros > 31) throw new RangeError('bad Exp-Golomb code')
    }
    return 2 ** zeros - 1 + this.bits(zeros)
  }

  se(): number {
    const k = this.ue()
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2)
  }
}

/** The RBSP of a NAL unit: its header byte dropped, emulation prevention bytes removed. */
export function rbsp(nal: Buffer): Buffer {
  const out: number[] = []
  for (let i = 1; i < nal.length; i++) {
    if (i + 2 < nal.length && nal[i] === 0 && nal[i + 1] === 0 && nal[i + 2] === 3) {
      out.push(0, 0)
      i += 2
      continue
    }
    out.push(nal[i] as number)
  }
  return Buffer.from(out)
}

export interface SpsInfo {
  profile: number
  level: number
  width: number
  height: number
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135])

/** Profile, level and cropped picture size of a sequence parameter set (NAL unit with header). */
export function parseSps(sps: Buffer): SpsInfo {
  const r = new BitReader(rbsp(sps))
  const profile = r.bits(8)
  r.bits(8) // constraint flags
  const level = r.bits(8)
  r.ue() // seq_parameter_set_id
  let chromaFormat = 1
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = r.ue()
    if (chromaFormat === 3) r.bit() // separate_colour_plane_flag
    r.ue() // bit_depth_luma
    r.ue() // bit_depth_chroma
    r.bit() // qpprime_y_zero_transform_bypass_flag
    if (r.bit()) {
      // seq_scaling_matrix_present_flag: skip the lists
      for (let i = 0; i < (chromaFormat === 3 ? 12 : 8); i++) {
        if (!r.bit()) continue
        let last = 8
        let next = 8
        for (let j = 0; j < (i < 6 ? 16 : 64); j++) {
          if (next !== 0) next = (last + r.se() + 256) % 256
          last = next === 0 ? last : next
        }
      }
    }
  }
  r.ue() // log2_max_frame_num_minus4
  const pocType = r.ue()
  if (pocType === 0) r.ue()
  else if (pocType === 1) {
    r.bit()
    r.se()
    r.se()
    const cycle = r.ue()
    for (let i = 0; i < cycle; i++) r.se()
  }
  r.ue() // max_num_ref_frames
  r.bit() // gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1
  const heightMapUnits = r.ue() + 1
  const frameMbsOnly = r.bit()
  if (!frameMbsOnly) r.bit() // mb_adaptive_frame_field_flag
  r.bit() // direct_8x8_inference_flag
  let [left, right, top, bottom] = [0, 0, 0, 0]
  if (r.bit()) {
    left = r.ue()
    right = r.ue()
    top = r.ue()
    bottom = r.ue()
  }
  const cropX = chromaFormat === 0 ? 1 : chromaFormat === 3 ? 1 : 2
  const cropY = (chromaFormat === 1 ? 2 : 1) * (2 - frameMbsOnly)
  return {
    profile,
    level,
    width: widthMbs * 16 - cropX * (left + right),
    height: (2 - frameMbsOnly) * heightMapUnits * 16 - cropY * (top + bottom),
  }
}

/** SPS and PPS NAL units of an avcC record. */
export function parseAvcC(avcc: Buffer): { sps: Buffer[]; pps: Buffer[]; lengthSize: number } {
  if (avcc.length < 7 || avcc[0] !== 1) throw new RangeError('not an avcC record')
  const lengthSize = ((avcc[4] as number) & 3) + 1
  let at = 6
  const take = (count: number) => {
    const out: Buffer[] = []
    for (let i = 0; i < count; i++) {
      const size = avcc.readUInt16BE(at)
      out.push(avcc.subarray(at + 2, at + 2 + size))
      at += 2 + size
      if (at > avcc.length) throw new RangeError('avcC record ends early')
    }
    return out
  }
  const sps = take((avcc[5] as number) & 0x1f)
  const pps = take(avcc[at++] as number)
  return { sps, pps, lengthSize }
}

/** An avcC record of one SPS and its PPSs, with 4-byte NAL lengths. */
export function avcC(sps: Buffer, pps: readonly Buffer[]): Buffer {
  return Buffer.concat([
    Buffer.from([1, sps[1] ?? 0, sps[2] ?? 0, sps[3] ?? 0, 0xff, 0xe1]),
    u16(sps.length),
    sps,
    Buffer.from([pps.length]),
    ...pps.flatMap((p) => [u16(p.length), p]),
  ])
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01). */
export function splitAnnexB(stream: Buffer): Buffer[] {
  const units: Buffer[] = []
  let start = -1
  for (let i = 0; i + 2 < stream.length; i++) {
    if (stream[i] === 0 && stream[i + 1] === 0 && stream[i + 2] === 1) {
      if (start >= 0) units.push(trimZeros(stream.subarray(start, i)))
      start = i + 3
      i += 2
    }
  }
  if (start >= 0) units.push(stream.subarray(start))
  return units.filter((u) => u.length > 0)
}

function trimZeros(unit: Buffer): Buffer {
  let end = unit.length
  while (end > 0 && unit[end - 1] === 0) end--
  return unit.subarray(0, end)
}

/** NAL units joined with 4-byte length prefixes, as avcC-described access units carry them. */
export function lengthPrefixed(units: readonly Buffer[]): Buffer {
  return Buffer.concat(units.flatMap((u) => [Buffer.from(u32(u.length)), u]))
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

/** nal_unit_type of a NAL unit (5 IDR, 7 SPS, 8 PPS, …). */
export const nalType = (unit: Buffer): number => (unit[0] ?? 0) & 0x1f
