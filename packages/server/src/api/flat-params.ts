// GET requests and v1 signatures carry parameters flattened into a query or
// form string (`Whiteboard.Width=1280`, `Extras.0=MIX_STREAM`), every value a
// string. They are rebuilt into the nested, typed object a POST body would be,
// guided by the action's schema, so both paths validate the same way.
import type { z } from 'zod'

type Tree = { [key: string]: Tree | string }

export function unflatten(params: Iterable<[string, string]>): Record<string, unknown> {
  const root: Tree = {}
  for (const [key, value] of params) {
    const parts = key.split('.')
    let node: Tree = root
    parts.forEach((part, i) => {
      if (i === parts.length - 1) node[part] = value
      else {
        let next = node[part]
        if (typeof next !== 'object') {
          next = {}
          node[part] = next
        }
        node = next
      }
    })
  }
  return toArrays(root) as Record<string, unknown>
}

/** Objects whose keys are exactly 0..n-1 become arrays. */
function toArrays(node: Tree | string): unknown {
  if (typeof node === 'string') return node
  const keys = Object.keys(node)
  const values = keys.map((k) => toArrays(node[k] as Tree | string))
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return values
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]))
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
    case 'object':
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, def.shape?.[k] ? coerce(v, def.shape[k]) : v]),
      )
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
