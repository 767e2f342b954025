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

/** The publishes: each its peer connection, session resource (URL and id) and stream. */
const publishes = { main: undefined, aux: undefined }
const NAMES = { main: 'camera', aux: 'screen share' }
const PREVIEWS = { main: 'preview', aux: 'screen-preview' }

/** A refusal of the service, or no answer from it (status 0). */
class Refusal extends Error {
  constructor(message, status, retryAfter) {
    super(message)
    this.status = status
    this.retryAfter = retryAfter
  }
}

/** Publishes `stream` with WHIP; resolves with the publish, throws a Refusal. */
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
    throw new Refusal(`cannot reach the service: ${error.message}`, 0)
  }
  const body = await res.text()
  if (res.status !== 201) {
    pc.close()
    const reason = body.trim() || res.statusText
    throw new Refusal(
      res.status === 401 ? `Not allowed: ${reason}` : `Refused (${res.status}): ${reason}`,
      res.status,
      Number(res.headers.get('retry-after')) || undefined,
    )
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: body })
  const session = new URL(res.headers.get('location'), location.href).href
  const p = { kind, pc, session, id: session.split('/').pop(), stream, reconnecting: false }
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' && publishes[kind] === p)
      republish(kind, 'the connection to the service was lost')
    render()
  })
  return p
}

/** Refusals worth another try: a quota or the service's capacity, the old publish not ended yet, no answer. */
const RETRY = new Set([0, 409, 429, 502, 503, 504])

/**
 * Publishes, trying again (after Retry-After, at most 10 s apart, for about
 * two minutes) while a refusal says it may pass and `wanted()` still holds.
 */
async function publishPatiently(kind, stream, wanted, waiting) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await publish(kind, stream)
    } catch (error) {
      if (!(error instanceof Refusal) || !RETRY.has(error.status) || attempt >= 30) throw error
      waiting(error)
      await new Promise((r) => setTimeout(r, Math.min(10, error.retryAfter ?? 2) * 1000))
      if (!wanted()) throw new Refusal('stopped', -1)
    }
  }
}

/** Ends a publish: its tracks, its connection, its session resource. */
async function end(p) {
  for (const t of p.stream.getTracks()) t.stop()
  p.pc.close()
  await fetch(p.session, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${who.userSig}` },
  }).catch(() => {})
}

async function unpublish(kind) {
  const p = publishes[kind]
  if (!p) return
  publishes[kind] = undefined
  await end(p)
}

/** Why a publish ended, as the status says it, in the participant's words. */
const ENDED = {
  failed: "the service's media process stopped",
  dropped: 'the connection was lost',
  kicked: 'the service was restarting',
  replaced: 'it was published again from elsewhere',
  unpublished: 'it was ended from elsewhere',
  refused: 'the service does not record what the browser sent',
}

/** The service lost a publish (its media worker died, the network dropped): published again, same stream. */
async function republish(kind, why) {
  const lost = publishes[kind]
  if (!lost || lost.reconnecting) return
  lost.reconnecting = true
  lost.pc.close()
  const name = NAMES[kind]
  show(`The service lost your ${name} (${why}); publishing it again…`)
  render()
  try {
    const again = await publishPatiently(
      kind,
      lost.stream,
      () => publishes[kind] === lost,
      (e) => show(`The service lost your ${name} (${why}); publishing it again… (${e.message})`),
    )
    if (publishes[kind] !== lost) {
      // Stopped meanwhile.
      await end(again)
      return
    }
    publishes[kind] = again
    show(`Your ${name} was published again after the service lost it (${why}).`)
  } catch (error) {
    if (publishes[kind] !== lost) return
    publishes[kind] = undefined
    for (const t of lost.stream.getTracks()) t.stop()
    $(PREVIEWS[kind]).srcObject = null
    show(`Your ${name} could not be published again: ${error.message}`)
  } finally {
    render()
  }
}

/** A publish ended for a reason not to fight (another device took it over): stopped here too. */
function ended(kind, why) {
  const p = publishes[kind]
  if (!p) return
  publishes[kind] = undefined
  for (const t of p.stream.getTracks()) t.stop()
  p.pc.close()
  $(PREVIEWS[kind]).srcObject = null
  show(`Your ${NAMES[kind]} stopped: ${why}.`)
  render()
}

function render() {
  const cam = publishes.main
  $('camera').textContent = cam ? 'Stop camera' : 'Publish camera'
  $('camera').classList.toggle('on', Boolean(cam))
  $('camera-state').textContent = cam
    ? cam.reconnecting
      ? 'publishing again…'
      : cam.pc.connectionState === 'connected'
        ? 'publishing'
        : `connecting (${cam.pc.connectionState})`
    : 'camera off'
  $('screen').textContent = publishes.aux ? 'Stop sharing' : 'Share screen'
  $('screen').classList.toggle('on', Boolean(publishes.aux))
  $('screen-figure').hidden = !publishes.aux
}

/** While a first publish waits for the service: what it said. */
const waitingFor = (kind) => (e) =>
  show(`Waiting for the service to take your ${NAMES[kind]}: ${e.message}`)

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
        publishes.main = await publishPatiently('main', stream, () => true, waitingFor('main'))
        show('')
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
        publishes.aux = await publishPatiently('aux', stream, () => true, waitingFor('aux'))
        show('')
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
    // The page's own sessions are asked about: the service may have lost one (its media worker died).
    const mine = Object.values(publishes).filter((p) => p && !p.reconnecting)
    const sessions = mine.length > 0 ? `&sessions=${mine.map((p) => p.id).join(',')}` : ''
    const res = await fetch(
      `/class/${encodeURIComponent(room)}/status?sdkappid=${encodeURIComponent(who.sdkAppId)}&userid=${encodeURIComponent(who.userId)}${sessions}`,
      { headers: { authorization: `Bearer ${who.userSig}` }, cache: 'no-store' },
    )
    const body = await res.json().catch(() => ({}))
    const el = $('recording')
    if (res.ok) {
      el.dataset.state = body.state
      el.textContent = LABELS[body.state] ?? body.state
      for (const p of mine) {
        const state = body.sessions?.[p.id]
        // Still this publish (not stopped or published again since the question).
        if (publishes[p.kind] !== p || p.reconnecting) continue
        if (state === 'failed' || state === 'dropped' || state === 'kicked')
          republish(p.kind, ENDED[state])
        else if (state === 'replaced' || state === 'unpublished' || state === 'refused')
          ended(p.kind, ENDED[state])
      }
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
