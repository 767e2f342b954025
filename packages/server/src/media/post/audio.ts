// The audio stage's work: an mp3 of a recorded video (AudioFileNeeded).
import { FfmpegCommand } from '../ffmpeg/command.ts'
import { type FfmpegRun, runFfmpeg } from './budget.ts'

/**
 * Writes the audio of `video` (`durationMs` long) to `mp3` (LAME, VBR
 * quality 4: about 165 kbit/s stereo).
 */
export async function extractMp3(
  run: FfmpegRun,
  video: string,
  mp3: string,
  durationMs: number,
): Promise<void> {
  await runFfmpeg(
    run,
    new FfmpegCommand()
      .input({ url: video })
      .output({ url: mp3, maps: ['0:a:0'], options: ['-c:a', 'libmp3lame', '-q:a', '4'] }),
    // Decoded and encoded.
    { inputs: 1, audioS: (2 * durationMs) / 1000, madeMpx: 0, decodedMpx: 0, copiedS: 0 },
  )
}
