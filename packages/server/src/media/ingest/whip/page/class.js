// The class page: a participant publishes camera and microphone (and, if
// they like, their screen) into the room with WHIP, sees their own preview,
// and sees whether the class is being recorded. Plain browser APIs only.
const room = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '')
const params = new URLSearchParams(location.search)
const who = {
  sdkAppId: params.get('sdkappid') ?? '',
  userId: params.get('userid') ?? '',
  userSig: params.get('usersig') ?? '',
}
const $ = (id) => document.getElementById(id)

function show(message) {
  $('message').textContent = message
  $('message').hidden = message === ''
}

/** One WHIP publish: its peer connection and session resource. */
const publishes = { main: undefined, aux: undefined }

async function publish(kind, stream) {
  const pc = new RTCPeerConnection()
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] })
    if (track.kind === 'video') {
      // H.264 first: it is recorded without transcoding.
      const codecs = RTCRtpSender.getCapabilities('video').codecs
      const h264 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264')
      if (h264.length > 0)
        t.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))])
      const p = t.sender.getParameters()
      p.degradationPreference = 'maintain-resolution'
      t.sender.setParameters(p).catch(() => {})
    }
  }
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve()
    const timer = setTimeout(resolve, 3000)
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  const url = `/whip/${encodeURIComponent(room)}?sdkappid=${encodeURIComponent(who.sdkAppId)}&userid=${encodeURIComponent(who.userId)}${kind === 'aux' ? '&streamtype=aux' : ''}`
  let res
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${who.userSig}` },
      body: pc.localDescription.sdp,
    })
  } catch (error) {
    pc.close()
    throw new Error(`cannot reach the service: ${error.message}`)
  }
  const body = await res.text()
  if (res.status !== 201) {
    pc.close()
    const reason = body.trim() || res.statusText
    throw new Error(
      res.status === 401 ? `Not allowed: ${reason}` : `Refused (${res.status}): ${reason}`,
    )
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: body })
  const session = new URL(res.headers.get('location'), location.href).href
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed') show('The connection to the service was lost.')
    render()
  })
  publishes[kind] = { pc, session, stream }
}

async function unpublish(kind) {
  const p = publishes[kind]
  if (!p) return
  publishes[kind] = undefined
  for (const t of p.stream.getTracks()) t.stop()
  p.pc.close()
  await fetch(p.session, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${who.userSig}` },
  }).catch(() => {})
}

function render() {
  const cam = publishes.main
  $('camera').textContent = cam ? 'Stop camera' : 'Publish camera'
  $('camera').classList.toggle('on', Boolean(cam))
  $('camera-state').textContent = cam
    ? cam.pc.connectionState === 'connected'
      ? 'publishing'
      : `connecting (${cam.pc.connectionState})`
    : 'camera off'
  $('screen').textContent = publishes.aux ? 'Stop sharing' : 'Share screen'
  $('screen').classList.toggle('on', Boolean(publishes.aux))
  $('screen-figure').hidden = !publishes.aux
}

async function toggleCamera() {
  $('camera').disabled = true
  show('')
  try {
    if (publishes.main) {
      await unpublish('main')
      $('preview').srcObject = null
    } else {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: true,
      })
      $('preview').srcObject = stream
      try {
        await publish('main', stream)
      } catch (error) {
        for (const t of stream.getTracks()) t.stop()
        $('preview').srcObject = null
        throw error
      }
    }
  } catch (error) {
    show(error.message)
  } finally {
    $('camera').disabled = false
    render()
  }
}

async function toggleScreen() {
  $('screen').disabled = true
  show('')
  try {
    if (publishes.aux) await unpublish('aux')
    else {
      const stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: 15 },
        audio: false,
      })
      $('screen-preview').srcObject = stream
      // Sharing ended from the browser's own bar.
      stream.getVideoTracks()[0]?.addEventListener('ended', () => unpublish('aux').then(render))
      try {
        await publish('aux', stream)
      } catch (error) {
        for (const t of stream.getTracks()) t.stop()
        $('screen-preview').srcObject = null
        throw error
      }
    }
  } catch (error) {
    show(error.message)
  } finally {
    $('screen').disabled = false
    render()
  }
}

const LABELS = {
  recording: 'Recording',
  paused: 'Recording paused',
  'not recording': 'Not recording',
}

async function pollStatus() {
  try {
    const res = await fetch(
      `/class/${encodeURIComponent(room)}/status?sdkappid=${encodeURIComponent(who.sdkAppId)}&userid=${encodeURIComponent(who.userId)}`,
      { headers: { authorization: `Bearer ${who.userSig}` }, cache: 'no-store' },
    )
    const body = await res.json().catch(() => ({}))
    const el = $('recording')
    if (res.ok) {
      el.dataset.state = body.state
      el.textContent = LABELS[body.state] ?? body.state
    } else {
      el.dataset.state = 'unknown'
      el.textContent = 'Recording state unknown'
      if (res.status === 401) show(`Not allowed: ${body.reason ?? 'the UserSig was refused'}`)
    }
  } catch (error) {
    $('recording').dataset.state = 'unknown'
    $('recording').textContent = 'Recording state unknown'
    console.warn(`recording state: ${error.message}`)
  }
}

function start() {
  $('bar').hidden = false
  $('stage').hidden = false
  $('who').textContent = `${who.userId} in room ${room}`
  $('camera').addEventListener('click', toggleCamera)
  $('screen').addEventListener('click', toggleScreen)
  if (!navigator.mediaDevices?.getDisplayMedia) $('screen').hidden = true
  addEventListener('pagehide', () => {
    for (const kind of ['main', 'aux']) {
      const p = publishes[kind]
      if (p)
        fetch(p.session, {
          method: 'DELETE',
          keepalive: true,
          headers: { authorization: `Bearer ${who.userSig}` },
        })
    }
  })
  render()
  pollStatus()
  setInterval(pollStatus, 2000)
}

// Without credentials in the link: a form that puts them there.
if (!who.sdkAppId || !who.userId || !who.userSig) {
  const form = $('join')
  form.hidden = false
  $('join-room').textContent = `Room ${room}`
  for (const [k, v] of [
    ['sdkappid', who.sdkAppId],
    ['userid', who.userId],
  ])
    form.elements[k].value = v
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const q = new URLSearchParams(new FormData(form))
    location.search = q.toString()
  })
} else {
  start()
}
