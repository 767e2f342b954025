// GET requests and v1 signatures carry parameters flattened into a query or
// form string (`Whiteboard.Width=1280`, `Extras.0=MIX_STREAM`), every value a
// string. They are rebuilt into the nested, typed object a POST body would be,
// guided by the action's schema, so both paths validate the same way.
//
// Keys are the client's: every node is built without a prototype, a path
// segment must look like a TIW parameter name or an array index, and the
// nesting and the number of parameters are capped before any work.
import { ApiError } from '@online-record/protocol'
import type { z } from 'zod'

type Tree = { [key: string]: Tree | string }

/** The deepest TIW parameter is six segments (`MixStream.Custom.InputStreamList.0.LayoutParams.X`). */
export const MAX_FLAT_DEPTH = 8
export const MAX_FLAT_PARAMS = 1000
/** A parameter name (`RoomId`, `SdkAppID`) or an array index (`0`, `12`). */
const SEGMENT = /^(?:[A-Za-z][A-Za-z0-9]{0,63}|0|[1-9][0-9]{0,3})$/

const node = (): Tree => Object.create(null) as Tree

export function unflatten(params: Iterable<[string, string]>): Record<string, unknown> {
  const root = node()
  let count = 0
  for (const [key, value] of params) {
    if (++count > MAX_FLAT_PARAMS) {
      throw new ApiError('InvalidParameter', `More than ${MAX_FLAT_PARAMS} parameters.`)
    }
    const parts = key.split('.')
    if (parts.length > MAX_FLAT_DEPTH) {
      throw new ApiError(
        'InvalidParameter',
        `The parameter \`${printable(key)}\` is nested deeper than ${MAX_FLAT_DEPTH} levels.`,
      )
    }
    if (!parts.every((part) => SEGMENT.test(part))) {
      throw new ApiError(
        'UnknownParameter',
        `The parameter \`${printable(key)}\` is not recognized.`,
      )
    }
    let at: Tree = root
    parts.forEach((part, i) => {
      if (i === parts.length - 1) {
        at[part] = value
        return
      }
      let next = at[part]
      if (typeof next !== 'object') {
        next = node()
        at[part] = next
      }
      at = next
    })
  }
  return toArrays(root) as Record<string, unknown>
}

/** A key as it may be quoted in a message: printable ASCII, at most 100 characters. */
function printable(key: string): string {
  const clean = key.replace(/[^\x20-\x7e]/g, '?')
  return clean.length > 100 ? `${clean.slice(0, 100)}…` : clean
}

/** Objects whose keys are exactly 0..n-1 become arrays. */
function toArrays(tree: Tree | string): unknown {
  if (typeof tree === 'string') return tree
  const keys = Object.keys(tree)
  const values = keys.map((k) => toArrays(tree[k] as Tree | string))
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return values
  const out = node() as Record<string, unknown>
  keys.forEach((k, i) => {
    out[k] = values[i]
  })
  return out
}

interface Def {
  type: string
  shape?: Record<string, z.ZodType>
  innerType?: z.ZodType
  element?: z.ZodType
  options?: z.ZodType[]
  values?: unknown[]
  in?: z.ZodType
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def

/** Turns string leaves into numbers and booleans where `schema` expects them. */
export function coerce(value: unknown, schema: z.ZodType): unknown {
  const def = defOf(schema)
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
      return coerce(value, def.innerType as z.ZodType)
    case 'pipe':
      return coerce(value, def.in as z.ZodType)
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
      const shape = def.shape ?? {}
      const out = node() as Record<string, unknown>
      for (const [k, v] of Object.entries(value)) {
        // Only the schema's own fields: a key such as `constructor` must not reach Object.prototype's.
        out[k] = Object.hasOwn(shape, k) ? coerce(v, shape[k] as z.ZodType) : v
      }
      return out
    }
    case 'array':
      return Array.isArray(value) ? value.map((v) => coerce(v, def.element as z.ZodType)) : value
    case 'union':
      for (const option of def.options ?? []) {
        const converted = coerce(value, option)
        if (converted !== value) return converted
      }
      return value
    case 'number':
      return typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value
    case 'boolean':
      return value === 'true' ? true : value === 'false' ? false : value
    case 'literal':
      if (
        typeof value === 'string' &&
        def.values?.every((v) => typeof v === 'number') &&
        /^-?\d+$/.test(value)
      ) {
        return Number(value)
      }
      return value
    default:
      return value
  }
}
