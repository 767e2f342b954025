// The whiteboard stage of post-processing: the board of the task's app and
// GroupId (default: the decimal RoomId), replayed over the task's recording
// into its whiteboard video — VideoType 2, UserId "", VideoPlayTime where the
// first picture is. No change to the board while the task recorded: no video.
// A board that cannot be drawn within the render's budget is a problem of the
// task (ExceptionCnt, the operator's log) and its other videos are kept.
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { LIMITS as API_LIMITS } from '@online-record/protocol'
import { recordPolicy } from '../media/capture/recorder.ts'
import { probe } from '../media/ffmpeg/probe.ts'
import type { PostProcessor, Stage } from '../media/post/post-process.ts'
import { totalTime } from '../media/post/timeline.ts'
import type { RenderResult } from './render.ts'
import { RenderLimitError } from './render-cost.ts'
import { renderInProcess } from './render-process.ts'
import type { BoardStore } from './store.ts'

/** The whiteboard's stream id in RecordControl and layouts. */
export const BOARD_STREAM_ID = 'tic_record_user'

export function whiteboardStage(post: PostProcessor, store: BoardStore): Stage {
  return {
    name: 'whiteboard',
    async run(ctx) {
      const request = ctx.spec.request
      if (ctx.done.has('whiteboard') || !recordPolicy(request, BOARD_STREAM_ID).record) return
      const key = {
        sdkAppId: ctx.spec.sdkAppId,
        groupId: request.GroupId ?? String(request.RoomId),
      }
      const { before, during } = await store.history(key, ctx.timeline.startMs, ctx.timeline.stopMs)
      const file = join(ctx.work, 'whiteboard.mp4')
      const begun = performance.now()
      const taskId = ctx.spec.taskId
      let made: RenderResult | undefined
      try {
        made = await renderInProcess(
          {
            timeline: ctx.timeline,
            before,
            during,
            width: request.Whiteboard?.Width ?? API_LIMITS.whiteboardSize.defaultWidth,
            height: request.Whiteboard?.Height ?? API_LIMITS.whiteboardSize.defaultHeight,
            ffmpeg: post.tools.ffmpeg,
            out: file,
            onProgress: (f) => ctx.progress(f),
            onWarning: (m) => post.log('warn', `task ${taskId}: whiteboard ${key.groupId}: ${m}`),
            urlPolicy: { blockPrivate: post.urlPolicy.blockPrivate },
            signal: ctx.signal,
          },
          join(ctx.work, 'whiteboard.job'),
        )
      } catch (error) {
        if (!(error instanceof RenderLimitError)) throw error
        await rm(file, { force: true })
        ctx.problem(
          BOARD_STREAM_ID,
          `no whiteboard video: ${error.message}`,
          totalTime(ctx.timeline),
        )
        return
      }
      if (made === undefined) return
      const { estimate } = made
      post.log(
        'info',
        `task ${taskId}: whiteboard ${key.groupId}: ${during.length} update(s), ${made.frames} frame(s) (${made.drawn} drawn, ${made.gathered} gathered into later ones) in ${((performance.now() - begun) / 1000).toFixed(1)} s, ${(made.cpuMs / 1000).toFixed(1)} CPU-s (estimated ${estimate.plannedMs === undefined ? 'over the budget' : `${(estimate.plannedMs / 1000).toFixed(1)} CPU-s`} for every frame, at least ${(estimate.leastMs / 1000).toFixed(1)}), ${made.peakRssMb} MB peak; pictures: ${made.pictures.kept} kept (${(made.pictures.keptBytes / 1024 / 1024).toFixed(1)} MiB), ${made.pictures.refused} not drawn`,
      )
      await ctx.keep([
        {
          key: 'whiteboard',
          file,
          format: 'mp4',
          userId: '',
          videoType: 2,
          playTime: made.playTimeMs,
          info: await probe(post.tools.ffprobe, file),
        },
      ])
    },
  }
}
