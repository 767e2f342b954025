// A media worker process: it holds WebRTC sessions (werift, UDP, DTLS, SRTP)
// apart from the service, so that whatever a peer sends that breaks the
// WebRTC stack costs this process and its sessions only, never the service.
// The service talks to it over IPC (worker-protocol.ts): offers in, answers,
// tracks, access units and closes out.

import { WhipSession } from './session.ts'
import type { ToWorker } from './worker-protocol.ts'
import { send } from './worker-protocol.ts'

const sessions = new Map<string, WhipSession>()

async function open(message: Extract<ToWorker, { t: 'open' }>): Promise<void> {
  const { id } = message
  try {
    const { session, answer } = await WhipSession.open(message.offer, message.settings, {
      tracks: (tracks) => send({ t: 'tracks', id, tracks }),
      unit: (unit) => send({ t: 'unit', id, unit }),
      problem: (text) => send({ t: 'problem', id, message: text }),
      close: (reason, detail) => {
        sessions.delete(id)
        send({ t: 'close', id, reason, ...(detail === undefined ? {} : { detail }) })
      },
    })
    sessions.set(id, session)
    send({ t: 'answer', id, sdp: answer })
  } catch (error) {
    send({ t: 'error', id, message: (error as Error).message })
  }
}

process.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'open':
      void open(message)
      return
    case 'key':
      sessions.get(message.id)?.requestKeyFrame()
      return
    case 'close':
      sessions.get(message.id)?.close(message.reason)
      return
    default:
      return
  }
})
// The service is gone: so is everything this process holds.
process.on('disconnect', () => process.exit(0))
send({ t: 'ready' })
