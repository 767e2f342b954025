// Audio codec configuration: what an AAC AudioSpecificConfig says, and the
// OpusHead identification header Matroska carries for Opus.

const AAC_RATES = [
  96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
]

/** Sample rate and channels of an AAC AudioSpecificConfig (ISO 14496-3). */
export function parseAudioSpecificConfig(asc: Buffer): { sampleRate: number; channels: number } {
  if (asc.length < 2) throw new RangeError('AudioSpecificConfig too short')
  const bits = asc.readUInt16BE(0)
  let objectType = bits >> 11
  let at = 5
  if (objectType === 31) at += 6 // escape: objectType in 6 more bits
  const read = (n: number) => {
    let v = 0
    for (let i = 0; i < n; i++) {
      const byte = asc[(at + i) >> 3]
      if (byte === undefined) throw new RangeError('AudioSpecificConfig too short')
      v = v * 2 + ((byte >> (7 - ((at + i) & 7))) & 1)
    }
    at += n
    return v
  }
  if (objectType === 31) objectType = 32
  const index = read(4)
  const sampleRate = index === 15 ? read(24) : (AAC_RATES[index] ?? 0)
  const channels = read(4)
  return { sampleRate, channels }
}

/** An OpusHead (RFC 7845 §5.1) for a stream of `channels` at 48 kHz with the usual 312-sample pre-skip. */
export function opusHead(channels: number, preSkip = 312): Buffer {
  const head = Buffer.alloc(19)
  head.write('OpusHead', 0, 'latin1')
  head[8] = 1
  head[9] = channels
  head.writeUInt16LE(preSkip, 10)
  head.writeUInt32LE(48_000, 12)
  head.writeInt16LE(0, 16)
  head[18] = 0
  return head
}
