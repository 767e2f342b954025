// The audio stage's work: an mp3 of a recorded video (AudioFileNeeded).
import { FfmpegCommand } from '../ffmpeg/command.ts'
import type { MediaTools } from '../ffmpeg/ffmpeg-tools.ts'
import { ffmpeg } from './splice.ts'

/** Writes the audio of `video` to `mp3` (LAME, VBR quality 4: about 165 kbit/s stereo). */
export async function extractMp3(tools: MediaTools, video: string, mp3: string): Promise<void> {
  await ffmpeg(
    tools,
    new FfmpegCommand()
      .input({ url: video })
      .output({ url: mp3, maps: ['0:a:0'], options: ['-c:a', 'libmp3lame', '-q:a', '4'] }),
  )
}
