// A media worker process: it holds WebRTC sessions (werift, UDP, DTLS, SRTP)
// apart from the service, so that whatever a peer sends that breaks the
// WebRTC stack costs this process and its sessions only, never the service.
// The service talks to it over IPC (worker-protocol.ts): offers in, answers,
// tracks, access units and closes out.
import { getHostAddresses } from 'werift'
import { OfferError, WhipSession } from './session.ts'
import { send, type ToWorker } from './worker-protocol.ts'

const sessions = new Map<string, WhipSession>()
/** Offers being answered, and those of them the service ended meanwhile. */
const opening = new Set<string>()
const cancelled = new Set<string>()

async function open(message: Extract<ToWorker, { t: 'open' }>): Promise<void> {
  const { id } = message
  try {
    const { session, answer } = await WhipSession.open(message.offer, message.settings, {
      connected: () => send({ t: 'connected', id }),
      tracks: (tracks) => send({ t: 'tracks', id, tracks }),
      unit: (unit) => send({ t: 'unit', id, unit }),
      problem: (text) => send({ t: 'problem', id, message: text }),
      close: (reason, detail) => {
        sessions.delete(id)
        send({ t: 'close', id, reason, ...(detail === undefined ? {} : { detail }) })
      },
    })
    if (cancelled.delete(id)) {
      session.close('kicked')
      return
    }
    sessions.set(id, session)
    send({ t: 'answer', id, sdp: answer })
  } catch (error) {
    cancelled.delete(id)
    send({
      t: 'error',
      id,
      message: (error as Error).message,
      kind: error instanceof OfferError ? 'offer' : 'busy',
    })
  }
}

process.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'open':
      opening.add(message.id)
      void open(message).finally(() => opening.delete(message.id))
      return
    case 'key':
      sessions.get(message.id)?.requestKeyFrame()
      return
    case 'close': {
      const session = sessions.get(message.id)
      if (session) session.close(message.reason)
      else if (opening.has(message.id)) cancelled.add(message.id)
      return
    }
    default:
      return
  }
})
// The service is gone, or ends this process: so is everything it holds.
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
// werift's own choice of host addresses (session.ts: every IPv4 interface when no address is set).
send({ t: 'ready', hostAddresses: getHostAddresses(true, false).length })
