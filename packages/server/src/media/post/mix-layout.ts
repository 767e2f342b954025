// Where each stream goes in the mixed video: TIW's two built-in layouts
// (ModelId 1 and 2) and Custom layouts as slots on a canvas, and the streams
// of a task assigned to those slots. Pure: no ffmpeg here (mix.ts builds the
// graph from what this decides).
import type { StartOnlineRecordRequest } from '@online-record/protocol'

type MixStream = NonNullable<StartOnlineRecordRequest['MixStream']>

export interface Rect {
  x: number
  y: number
  width: number
  height: number
}

/** What a slot shows. */
export type SlotSource =
  /** The whiteboard (`tic_record_user`). */
  | { kind: 'board' }
  /** A screen share whose stream id starts with `prefix` (`tic_substream…`). */
  | { kind: 'substream'; prefix: string }
  /** A camera whose user id starts with `prefix` (exactly `id` for TeacherId). */
  | { kind: 'user'; prefix: string; exact?: boolean }
  /** The next stream not placed elsewhere (cameras only in the built-in layouts). */
  | { kind: 'next'; camerasOnly: boolean }

export interface Slot {
  rect: Rect
  /** Larger is drawn on top; equal values keep the list order. */
  z: number
  source: SlotSource
  /** Drawn under the stream; where there is none, the canvas shows. */
  background: string | undefined
  /** 0: fit, letterboxed; 1: fill, the overflow cropped. */
  fill: 0 | 1
}

export interface Layout {
  /** The `n` of the mixed video's UserId `tic_mixstream_{RoomId}_{n}`: ModelId, or 101 for a Custom layout. */
  id: number
  width: number
  height: number
  /** #RRGGBB */
  background: string
  slots: Slot[]
}

/** TIW's template background. */
export const TEMPLATE_BACKGROUND = '#34363B'
/** The UserId suffix of a mixed video made from a Custom layout (ours: TIW does not document its numbers). */
export const CUSTOM_LAYOUT_ID = 101

const BOARD: Rect = { x: 8, y: 8, width: 1280, height: 960 }
const SMALL = { width: 320, height: 240 }

/** The slots of a template: the board, a screen share over it, then the small windows. */
function template(id: 1 | 2, teacherId: string | undefined): Layout {
  const board = id === 2 ? BOARD : { ...BOARD, x: 20 }
  const windows =
    id === 2
      ? [8, 256, 504, 752].map((y) => ({ x: 1296, y, ...SMALL }))
      : [8, 336, 664, 992].map((x) => ({ x, y: 976, ...SMALL }))
  const slot = (rect: Rect, z: number, source: SlotSource): Slot => ({
    rect,
    z,
    source,
    background: undefined,
    fill: 0,
  })
  return {
    id,
    width: id === 2 ? 1624 : 1320,
    height: id === 2 ? 1000 : 1224,
    background: TEMPLATE_BACKGROUND,
    slots: [
      slot(board, 1, { kind: 'board' }),
      slot(board, 2, { kind: 'substream', prefix: 'tic_substream' }),
      ...windows.map((rect, i) =>
        slot(
          rect,
          3,
          i === 0 && teacherId
            ? { kind: 'user', prefix: teacherId, exact: true }
            : { kind: 'next', camerasOnly: true },
        ),
      ),
    ],
  }
}

/** The layout a MixStream asks for: its Custom layout, else template ModelId. */
export function layoutOf(mix: MixStream): Layout {
  const custom = mix.Custom
  if (custom === undefined) return template(mix.ModelId === 1 ? 1 : 2, mix.TeacherId || undefined)
  return {
    id: CUSTOM_LAYOUT_ID,
    width: custom.Canvas.LayoutParams.Width,
    height: custom.Canvas.LayoutParams.Height,
    background: custom.Canvas.BackgroundColor ?? '#000000',
    slots: custom.InputStreamList.map((s) => {
      const p = s.LayoutParams
      const id = s.InputStreamId ?? ''
      const source: SlotSource =
        id === ''
          ? { kind: 'next', camerasOnly: false }
          : id.startsWith('tic_record_user')
            ? { kind: 'board' }
            : id.startsWith('tic_substream')
              ? { kind: 'substream', prefix: id }
              : { kind: 'user', prefix: id }
      return {
        rect: { x: p.X ?? 0, y: p.Y ?? 0, width: p.Width, height: p.Height },
        z: p.ZOrder ?? 0,
        source,
        background: s.BackgroundColor,
        fill: s.FillMode === 1 ? 1 : 0,
      }
    }),
  }
}

/** A stream of the task as the mix sees it. */
export interface MixStreamRef {
  streamId: string
  /** 0 camera, 1 screen share. */
  videoType: number
  /** Where its first part starts on the replay timeline, ms. */
  firstAt: number
}

/**
 * Which stream each slot shows (slot index → stream id). Streams are taken in
 * the order they first appeared; slots that name a stream are served before
 * the slots that take the next one, so a named stream is never taken by an
 * earlier "next" slot. A stream is placed once; a slot with nothing for it
 * shows its background (or the canvas).
 */
export function assignStreams(
  layout: Layout,
  streams: readonly MixStreamRef[],
): Map<number, string> {
  const ordered = [...streams].sort(
    (a, b) =>
      a.firstAt - b.firstAt || (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0),
  )
  const placed = new Set<string>()
  const result = new Map<number, string>()
  const take = (i: number, match: (s: MixStreamRef) => boolean) => {
    const s = ordered.find((c) => !placed.has(c.streamId) && match(c))
    if (s === undefined) return
    placed.add(s.streamId)
    result.set(i, s.streamId)
  }
  layout.slots.forEach((slot, i) => {
    const src = slot.source
    if (src.kind === 'substream')
      take(i, (s) => s.videoType === 1 && s.streamId.startsWith(src.prefix))
    else if (src.kind === 'user') {
      take(
        i,
        (s) =>
          s.videoType === 0 &&
          (src.exact ? s.streamId === src.prefix : s.streamId.startsWith(src.prefix)),
      )
    }
  })
  layout.slots.forEach((slot, i) => {
    const src = slot.source
    if (src.kind !== 'next') return
    take(i, (s) => s.videoType === 0)
    if (!result.has(i) && !src.camerasOnly) take(i, () => true)
  })
  return result
}
