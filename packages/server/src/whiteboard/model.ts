// The whiteboard's document model v1 (docs/whiteboard.md), and the check that
// keeps a board inside it. An update is applied first to a shadow copy of the
// board; what the update changed is found from that transaction and checked
// (only the parts it touched, so a stroke costs the stroke, not the board);
// an update that would leave the model is refused and never reaches the
// board itself, the store or another client.
import * as Y from 'yjs'

export const MODEL_VERSION = 1
export const LIMITS = {
  /** A single update (one WebSocket message) larger than this is refused unread. */
  updateBytes: 1024 * 1024,
  /** A board whose stored updates exceed this takes no more. */
  boardBytes: 20 * 1024 * 1024,
  elementsPerPage: 10_000,
  pages: 1_000,
  /** Coordinates are fractions of the board; a little outside is allowed (a stroke past the edge). */
  coordinate: { min: -1, max: 2 },
  pointsPerElement: 100_000,
  textChars: 10_000,
  idChars: 256,
  urlChars: 2048,
} as const

export const ELEMENT_KINDS = ['path', 'line', 'rect', 'ellipse', 'text', 'image'] as const
export type ElementKind = (typeof ELEMENT_KINDS)[number]

const COLOR = /^#[0-9A-Fa-f]{6}$/
const RATIO = /^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$/

/** Why an update is refused. */
export class ModelError extends Error {
  override name = 'ModelError'
}

const fail = (where: string, what: string): never => {
  throw new ModelError(`${where}: ${what}`)
}

const isColor = (v: unknown) => typeof v === 'string' && COLOR.test(v)
const isCoordinate = (v: unknown) =>
  typeof v === 'number' &&
  Number.isFinite(v) &&
  v >= LIMITS.coordinate.min &&
  v <= LIMITS.coordinate.max
const isFraction = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 1
const isId = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= LIMITS.idChars
function isHttpUrl(v: unknown): boolean {
  if (typeof v !== 'string' || v.length > LIMITS.urlChars) return false
  try {
    const u = new URL(v)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

function checkKeys(where: string, map: Y.Map<unknown>, allowed: readonly string[]) {
  // List content inside a map is invisible to its keys: none is allowed.
  if (map._start !== null) fail(where, 'a map with list content')
  for (const key of map.keys()) if (!allowed.includes(key)) fail(where, `unknown key "${key}"`)
}

/** Clocks each client had before the transaction: items at or after them are new. */
type Before = Map<number, number>

/**
 * The values of a list place (`order`, `points`) that `before` does not know
 * (all of them without `before`): plain values only, no keys, no formatting
 * marks, no types. A stroke growing by a point costs that point.
 */
function newListValues(where: string, list: Y.Array<unknown>, before?: Before): unknown[] {
  if (list._map.size > 0) fail(where, 'a list with keys')
  const values: unknown[] = []
  for (let item = list._start; item !== null; item = item.right) {
    if (item.deleted) continue
    // Items wholly older than the transaction were checked when they came.
    if (before && item.id.clock + item.length <= (before.get(item.id.client) ?? 0)) continue
    if (!(item.content instanceof Y.ContentAny || item.content instanceof Y.ContentJSON))
      fail(where, 'holds something that is not a plain value')
    values.push(...item.content.getContent())
  }
  return values
}

function checkMeta(meta: Y.Map<unknown>) {
  checkKeys('meta', meta, ['v', 'ratio', 'page'])
  const v = meta.get('v')
  if (v !== undefined && v !== MODEL_VERSION) fail('meta.v', `must be ${MODEL_VERSION}`)
  const ratio = meta.get('ratio')
  if (ratio !== undefined && !(typeof ratio === 'string' && RATIO.test(ratio)))
    fail('meta.ratio', 'must be "W:H", e.g. "4:3"')
  const page = meta.get('page')
  if (page !== undefined && !isId(page)) fail('meta.page', 'must be a page id')
}

function checkPoints(where: string, points: unknown, before?: Before) {
  if (!(points instanceof Y.Array)) return fail(where, 'must be a Y.Array of numbers')
  if (points.length > LIMITS.pointsPerElement) fail(where, `more than ${LIMITS.pointsPerElement}`)
  for (const n of newListValues(where, points, before))
    if (!isCoordinate(n)) fail(where, 'a point outside -1..2')
}

const ELEMENT_KEYS = [
  'kind',
  'color',
  'width',
  'fill',
  'x',
  'y',
  'w',
  'h',
  'points',
  'text',
  'size',
  'src',
]

function checkElement(where: string, el: unknown) {
  if (!(el instanceof Y.Map)) return fail(where, 'an element must be a Y.Map')
  checkKeys(where, el, ELEMENT_KEYS)
  const kind = el.get('kind')
  if (!ELEMENT_KINDS.includes(kind as ElementKind))
    fail(`${where}.kind`, `must be one of ${ELEMENT_KINDS.join(', ')}`)
  for (const key of ['color', 'fill'])
    if (el.has(key) && !isColor(el.get(key))) fail(`${where}.${key}`, 'must be "#RRGGBB"')
  for (const key of ['x', 'y', 'w', 'h'])
    if (el.has(key) && !isCoordinate(el.get(key))) fail(`${where}.${key}`, 'must be in -1..2')
  for (const key of ['width', 'size'])
    if (el.has(key) && !isFraction(el.get(key))) fail(`${where}.${key}`, 'must be in (0, 1]')
  if (el.has('points')) checkPoints(`${where}.points`, el.get('points'))
  const text = el.get('text')
  if (el.has('text') && !(typeof text === 'string' && text.length <= LIMITS.textChars))
    fail(`${where}.text`, `must be text of at most ${LIMITS.textChars} characters`)
  if (el.has('src') && !isHttpUrl(el.get('src'))) fail(`${where}.src`, 'must be an http(s) URL')
}

function checkOrder(where: string, order: unknown, before?: Before) {
  if (!(order instanceof Y.Array)) return fail(where, 'must be a Y.Array of element ids')
  if (order.length > 2 * LIMITS.elementsPerPage) fail(where, 'too long')
  for (const id of newListValues(where, order, before))
    if (!isId(id)) fail(where, 'holds something not an id')
}

function checkEls(where: string, els: unknown, keys?: Iterable<string>) {
  if (!(els instanceof Y.Map)) return fail(where, 'must be a Y.Map of elements')
  if (els._start !== null) fail(where, 'a map with list content')
  if (els.size > LIMITS.elementsPerPage)
    fail(where, `more than ${LIMITS.elementsPerPage} elements on a page`)
  for (const key of keys ?? els.keys()) {
    if (!isId(key)) fail(where, 'an element id must be 1 to 256 characters')
    if (els.has(key)) checkElement(`${where}.${key}`, els.get(key))
  }
}

function checkBg(where: string, bg: unknown) {
  if (bg === null || typeof bg !== 'object' || Array.isArray(bg) || bg instanceof Y.AbstractType)
    return fail(where, 'must be { color, image? }')
  for (const key of Object.keys(bg))
    if (key !== 'color' && key !== 'image') fail(where, `unknown key "${key}"`)
  const { color, image } = bg as { color?: unknown; image?: unknown }
  if (!isColor(color)) fail(`${where}.color`, 'must be "#RRGGBB"')
  if (image !== undefined && !isHttpUrl(image)) fail(`${where}.image`, 'must be an http(s) URL')
}

function checkPageKey(where: string, page: Y.Map<unknown>, key: string) {
  if (!page.has(key)) return
  const value = page.get(key)
  if (key === 'bg') checkBg(`${where}.bg`, value)
  else if (key === 'els') checkEls(`${where}.els`, value)
  else if (key === 'order') checkOrder(`${where}.order`, value)
  else fail(where, `unknown key "${key}"`)
}

function checkPage(where: string, page: unknown) {
  if (!(page instanceof Y.Map)) return fail(where, 'a page must be a Y.Map')
  if (page._start !== null) fail(where, 'a map with list content')
  for (const key of page.keys()) checkPageKey(where, page, key)
}

/** What a transaction changed: each type, and its keys (null for an array). */
// biome-ignore lint/suspicious/noExplicitAny: Yjs types its transactions' changes so.
type Changed = Map<Y.AbstractType<Y.YEvent<any>>, Set<string | null>>

/** The keys from the root down to `type`, e.g. ["pages", "p1", "els", "e7"]. */
function pathOf(type: Y.AbstractType<unknown>): string[] | undefined {
  const path: string[] = []
  let t: Y.AbstractType<unknown> = type
  while (t._item !== null) {
    const item = t._item
    // Types inside arrays have no key; the model has none at such a place.
    if (item.parentSub === null) return undefined
    path.unshift(item.parentSub)
    t = item.parent as Y.AbstractType<unknown>
  }
  path.unshift(Y.findRootTypeKey(t))
  return path
}

/**
 * Checks what a transaction on the shadow changed. Throws a ModelError
 * naming the place and the rule when the board would leave the model.
 */
export function checkChanges(doc: Y.Doc, changed: Changed, before?: Before) {
  for (const name of doc.share.keys()) {
    if (name !== 'meta' && name !== 'pages') fail(name, 'the board has only "meta" and "pages"')
  }
  for (const [type, keys] of changed) {
    const path = pathOf(type as unknown as Y.AbstractType<unknown>)
    if (path === undefined) fail('board', 'a shared type where the model has none')
    const [root, page, part, el, field] = path as string[]
    const where = path?.join('.') ?? ''
    const named = [...keys].filter((k): k is string => k !== null)
    const isList = path?.at(-1) === 'order' || path?.at(-1) === 'points'
    if (isList ? named.length > 0 : keys.has(null)) {
      fail(where, isList ? 'a list with keys' : 'a map with list content')
    }
    if (root === 'meta' && path?.length === 1) {
      if (!(type instanceof Y.Map)) fail('meta', 'must be a Y.Map')
      checkMeta(type as unknown as Y.Map<unknown>)
    } else if (root === 'pages' && path?.length === 1) {
      if (!(type instanceof Y.Map)) fail('pages', 'must be a Y.Map')
      const pages = type as unknown as Y.Map<unknown>
      if (pages.size > LIMITS.pages) fail('pages', `more than ${LIMITS.pages} pages`)
      for (const id of named) {
        if (!isId(id)) fail('pages', 'a page id must be 1 to 256 characters')
        if (pages.has(id)) checkPage(`pages.${id}`, pages.get(id))
      }
    } else if (root === 'pages' && path?.length === 2 && page !== undefined) {
      for (const key of named) checkPageKey(where, type as unknown as Y.Map<unknown>, key)
    } else if (root === 'pages' && path?.length === 3 && part === 'els') {
      checkEls(where, type, named)
    } else if (root === 'pages' && path?.length === 3 && part === 'order') {
      checkOrder(where, type, before)
    } else if (root === 'pages' && path?.length === 4 && part === 'els' && el !== undefined) {
      checkElement(where, type)
    } else if (root === 'pages' && path?.length === 5 && part === 'els' && field === 'points') {
      checkPoints(where, type, before)
    } else fail(where, 'not a place of the model')
  }
}

/** A doc whose two roots are typed as the model says (a client's update cannot make them something else). */
export function boardDoc(): Y.Doc {
  const doc = new Y.Doc({ gc: true })
  doc.getMap('meta')
  doc.getMap('pages')
  return doc
}

/** What one applied update's transaction changed. */
interface Tracked {
  changed: Changed | undefined
  before: Before | undefined
  any: boolean
}

/**
 * A board, checked as it changes, and the same board as bytes: its state
 * encoded at some point and every update it took since. An update is applied
 * to the board in one transaction, and what that transaction changed is
 * checked; a refused update leaves the board outside the model for a moment,
 * so the board is rebuilt from its bytes (which hold only what was taken).
 * The bytes are also what a new client is sent, so answering a client costs
 * no encoding of the board; they are encoded anew once the updates since
 * outweigh the state (`compact`), so that costs a fraction of each byte taken.
 * (One document, not a document and a checking copy: a board of unmergeable
 * items costs about 28 times its bytes in memory.)
 */
export class CheckedDoc {
  #doc = boardDoc()
  #state: Uint8Array = Y.encodeStateAsUpdate(this.#doc)
  #since: Uint8Array[] = []
  #sinceBytes = 0
  /** Times the board was rebuilt after a refused update. */
  rebuilds = 0

  /** The board. It is another Y.Doc after a refused update: do not keep it. */
  get doc(): Y.Doc {
    return this.#doc
  }

  /** Bytes of the encoded state and the updates since: what `bytes()` returns. */
  get size(): number {
    return this.#state.length + this.#sinceBytes
  }

  /** The board as bytes: the state and the updates taken since, to be applied in order. */
  bytes(): { state: Uint8Array; since: readonly Uint8Array[] } {
    return { state: this.#state, since: this.#since }
  }

  /**
   * Applies a stored or relayed update (already checked); true when it is
   * part of the board now: it changed the board, or waits in it for what it
   * builds on.
   */
  load(update: Uint8Array, origin: unknown = 'store'): boolean {
    const { any } = this.#applyTracked(update, origin)
    const taken = any || this.incomplete
    if (taken) this.#took(update)
    return taken
  }

  /** Whether the board holds changes it cannot place yet (it misses what they build on). */
  get incomplete(): boolean {
    const store = this.#doc.store
    return store.pendingStructs !== null || store.pendingDs !== null
  }

  /**
   * Throws a ModelError when `update` would take the board out of the model
   * (or depends on state the board lacks), the board unchanged; otherwise
   * applies it with `origin` and returns whether it changed anything.
   */
  apply(update: Uint8Array, origin: unknown): boolean {
    if (update.length > LIMITS.updateBytes) throw new ModelError('the update is larger than 1 MB')
    try {
      let tracked: Tracked
      try {
        tracked = this.#applyTracked(update, origin)
      } catch (error) {
        throw new ModelError(`not a Yjs update: ${(error as Error).message}`)
      }
      if (this.incomplete)
        throw new ModelError('the update depends on changes the board does not have')
      if (tracked.changed) checkChanges(this.#doc, tracked.changed, tracked.before)
      if (tracked.any) this.#took(update)
      return tracked.any
    } catch (error) {
      this.#rebuild()
      throw error
    }
  }

  /** Applies `update` and tells what its transaction changed. */
  #applyTracked(update: Uint8Array, origin: unknown): Tracked {
    const out: Tracked = { changed: undefined, before: undefined, any: false }
    const seen = (tr: Y.Transaction) => {
      out.changed = tr.changed
      out.before = tr.beforeState
      // Deletions, and structs that change no type (garbage-collected ranges), change the board too.
      out.any =
        tr.changed.size > 0 ||
        tr.deleteSet.clients.size > 0 ||
        [...tr.afterState].some(([client, clock]) => tr.beforeState.get(client) !== clock)
    }
    const doc = this.#doc
    doc.on('afterTransaction', seen)
    try {
      Y.applyUpdate(doc, update, origin)
    } finally {
      doc.off('afterTransaction', seen)
    }
    return out
  }

  /**
   * Encodes the state anew when the updates taken since outweigh it (more
   * than half its size, or more than 2,000 of them), or when `force`d;
   * returns the new state and how many of the updates it now covers, or
   * undefined.
   */
  compact(force = false): { state: Uint8Array; covers: number } | undefined {
    const light =
      this.#since.length <= 2000 && this.#sinceBytes <= Math.max(64 * 1024, this.#state.length / 2)
    if (light && !force) return undefined
    // Changes waiting for what they build on are in the encoding too (Yjs adds them).
    const covers = this.#since.length
    this.#state = Y.encodeStateAsUpdate(this.#doc)
    this.#since = []
    this.#sinceBytes = 0
    return { state: this.#state, covers }
  }

  #took(update: Uint8Array): void {
    this.#since.push(update)
    this.#sinceBytes += update.length
  }

  /** The board again from its bytes: what it was before the refused update. */
  #rebuild(): void {
    this.rebuilds++
    const doc = boardDoc()
    Y.applyUpdate(doc, this.#state)
    for (const u of this.#since) Y.applyUpdate(doc, u)
    this.#doc.destroy()
    this.#doc = doc
  }
}
