// The built-in board page: draws on the board of this page's GroupId with the
// stock y-websocket provider, in the document model v1 (docs/whiteboard.md).
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const $ = (id) => document.getElementById(id)
const groupId = decodeURIComponent(location.pathname.split('/').pop() || '')
const query = new URLSearchParams(location.search)
const params = {
  sdkappid: query.get('sdkappid') || '',
  userid: query.get('userid') || '',
  usersig: query.get('usersig') || '',
}

if (!params.sdkappid || !params.userid || !params.usersig) {
  const form = $('join')
  form.hidden = false
  for (const [k, v] of Object.entries(params)) form.elements[k].value = v
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const q = new URLSearchParams(new FormData(form))
    location.search = q.toString()
  })
} else start()

function start() {
  const doc = new Y.Doc()
  const meta = doc.getMap('meta')
  const pages = doc.getMap('pages')
  const canvas = $('board')
  const ctx = canvas.getContext('2d')
  const status = $('status')
  $('tools').hidden = false
  canvas.hidden = false
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/whiteboard`
  const provider = new WebsocketProvider(ws, groupId, doc, { params, disableBc: true })
  provider.on('status', ({ status: s }) => {
    if (status.dataset.final) return
    status.textContent = s === 'connected' ? `connected as ${params.userid}` : s
    status.className = s === 'connected' ? 'ok' : 'bad'
  })
  provider.on('connection-close', (event) => {
    if (!event || (event.code !== 4401 && event.code !== 4400)) return
    // Refused (bad UserSig) or an update refused: retrying would not help.
    provider.disconnect()
    status.dataset.final = '1'
    status.textContent =
      event.code === 4401 ? `Not allowed: ${event.reason}` : `Disconnected: ${event.reason}`
    status.className = 'bad'
  })
  provider.on('sync', (synced) => {
    if (!synced || meta.get('v') !== undefined) return
    doc.transact(() => {
      meta.set('v', 1)
      meta.set('ratio', '4:3')
      if (pages.size === 0) addPage('p1')
      meta.set('page', [...pages.keys()].sort()[0])
    })
  })

  let tool = 'pen'
  for (const b of document.querySelectorAll('[data-tool]')) {
    b.addEventListener('click', () => {
      tool = b.dataset.tool
      for (const o of document.querySelectorAll('[data-tool]'))
        o.setAttribute('aria-pressed', String(o === b))
    })
  }
  const color = () => $('color').value.toUpperCase()
  const width = () => Number($('width').value)
  const page = () => pages.get(meta.get('page'))
  const els = () => page()?.get('els')
  const order = () => page()?.get('order')

  function addPage(id) {
    const p = new Y.Map()
    p.set('bg', { color: '#FFFFFF' })
    p.set('els', new Y.Map())
    p.set('order', new Y.Array())
    pages.set(id, p)
  }
  $('add-page').addEventListener('click', () => {
    const id = `p${Date.now().toString(36)}`
    doc.transact(() => {
      addPage(id)
      meta.set('page', id)
    })
  })
  $('page').addEventListener('change', (e) => meta.set('page', e.target.value))
  $('clear').addEventListener('click', () => {
    doc.transact(() => {
      for (const id of [...(els()?.keys() ?? [])]) els().delete(id)
      order()?.delete(0, order().length)
    })
  })

  // Pointer positions as fractions of the board.
  const at = (e) => {
    const r = canvas.getBoundingClientRect()
    const clamp = (v) => Math.min(2, Math.max(-1, Math.round(v * 10000) / 10000))
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)]
  }
  let current
  let origin
  const add = (fields) => {
    const el = new Y.Map()
    for (const [k, v] of Object.entries(fields)) el.set(k, v)
    const id = `${doc.clientID.toString(36)}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`
    doc.transact(() => {
      els().set(id, el)
      order().push([id])
    })
    return el
  }
  const numbers = (list) => {
    const a = new Y.Array()
    a.push(list)
    return a
  }
  canvas.addEventListener('pointerdown', (e) => {
    if (!els()) return
    canvas.setPointerCapture(e.pointerId)
    const [x, y] = at(e)
    origin = [x, y]
    if (tool === 'pen')
      current = add({ kind: 'path', color: color(), width: width(), points: numbers([x, y]) })
    else if (tool === 'line')
      current = add({ kind: 'line', color: color(), width: width(), points: numbers([x, y, x, y]) })
    else if (tool === 'rect' || tool === 'ellipse')
      current = add({ kind: tool, color: color(), width: width(), x, y, w: 0, h: 0 })
    else if (tool === 'eraser') erase(x, y)
    else if (tool === 'text') {
      const text = prompt('Text')
      if (text) add({ kind: 'text', color: color(), x, y, size: 0.04, text: text.slice(0, 10000) })
    }
  })
  canvas.addEventListener('pointermove', (e) => {
    if (e.buttons === 0) return
    const [x, y] = at(e)
    if (tool === 'eraser') return erase(x, y)
    if (!current) return
    const kind = current.get('kind')
    if (kind === 'path') current.get('points').push([x, y])
    else if (kind === 'line') {
      const p = current.get('points')
      doc.transact(() => {
        p.delete(2, p.length - 2)
        p.push([x, y])
      })
    } else {
      doc.transact(() => {
        current.set('x', Math.min(origin[0], x))
        current.set('y', Math.min(origin[1], y))
        current.set('w', Math.abs(x - origin[0]))
        current.set('h', Math.abs(y - origin[1]))
      })
    }
  })
  const end = () => {
    current = undefined
  }
  canvas.addEventListener('pointerup', end)
  canvas.addEventListener('pointercancel', end)

  /** Deletes the topmost element near (x, y). */
  function erase(x, y) {
    const ids = order()?.toArray() ?? []
    const near = 0.015
    for (let i = ids.length - 1; i >= 0; i--) {
      const el = els()?.get(ids[i])
      if (!el) continue
      const p = el.get('points')?.toArray()
      const hit = p
        ? p.some((v, j) => j % 2 === 0 && Math.abs(v - x) < near && Math.abs(p[j + 1] - y) < near)
        : x >= el.get('x') - near &&
          x <= el.get('x') + (el.get('w') ?? 0.2) + near &&
          y >= el.get('y') - near &&
          y <= el.get('y') + (el.get('h') ?? 0.05) + near
      if (hit) {
        doc.transact(() => {
          els().delete(ids[i])
          order().delete(i, 1)
        })
        return
      }
    }
  }

  // Drawing: the same rules as the recording's renderer.
  let queued = false
  const redraw = () => {
    if (queued) return
    queued = true
    requestAnimationFrame(() => {
      queued = false
      draw()
    })
  }
  doc.on('update', redraw)
  function draw() {
    const [rw, rh] = String(meta.get('ratio') || '4:3')
      .split(':')
      .map(Number)
    canvas.height = Math.round((canvas.width * rh) / rw) || 960
    const W = canvas.width
    const H = canvas.height
    const select = $('page')
    const ids = [...pages.keys()].sort()
    select.replaceChildren(
      ...ids.map((id, i) => new Option(`${i + 1}`, id, false, id === meta.get('page'))),
    )
    const p = page()
    ctx.fillStyle = p?.get('bg')?.color || '#FFFFFF'
    ctx.fillRect(0, 0, W, H)
    if (!p) return
    const list = p.get('order')?.toArray() ?? []
    for (const id of list) {
      const el = p.get('els')?.get(id)
      if (!el) continue
      ctx.strokeStyle = el.get('color') || '#000000'
      ctx.fillStyle = el.get('fill') || el.get('color') || '#000000'
      ctx.lineWidth = Math.max(1, (el.get('width') ?? 0.004) * H)
      ctx.lineCap = 'round'
      ctx.lineJoin = 'round'
      const kind = el.get('kind')
      const pts = el.get('points')?.toArray() ?? []
      const x = (el.get('x') ?? 0) * W
      const y = (el.get('y') ?? 0) * H
      const w = (el.get('w') ?? 0) * W
      const h = (el.get('h') ?? 0) * H
      if ((kind === 'path' || kind === 'line') && pts.length >= 2) {
        ctx.beginPath()
        ctx.moveTo(pts[0] * W, pts[1] * H)
        for (let i = 2; i + 1 < pts.length; i += 2) ctx.lineTo(pts[i] * W, pts[i + 1] * H)
        if (pts.length === 2) ctx.lineTo(pts[0] * W + 0.01, pts[1] * H)
        ctx.stroke()
      } else if (kind === 'rect') {
        if (el.get('fill')) ctx.fillRect(x, y, w, h)
        ctx.strokeRect(x, y, w, h)
      } else if (kind === 'ellipse') {
        ctx.beginPath()
        ctx.ellipse(x + w / 2, y + h / 2, Math.abs(w / 2), Math.abs(h / 2), 0, 0, 2 * Math.PI)
        if (el.get('fill')) ctx.fill()
        ctx.stroke()
      } else if (kind === 'text') {
        const size = (el.get('size') ?? 0.04) * H
        ctx.fillStyle = el.get('color') || '#000000'
        ctx.font = `${size}px sans-serif`
        ctx.textBaseline = 'top'
        for (const [i, line] of String(el.get('text') ?? '')
          .split('\n')
          .entries()) {
          ctx.fillText(line, x, y + i * size * 1.25)
        }
      }
    }
  }
  draw()
}
