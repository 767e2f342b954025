// Caps on the connections a listener holds: in all, and per remote address.
// Every listener of the service (HTTP API, RTMP ingest, and what rides on
// them) takes one, so a peer that opens connections and never finishes them
// runs into a limit long before the process runs out of memory or sockets.
import type { Server, Socket } from 'node:net'

export interface ConnectionLimits {
  /** Connections held at once, from anyone. */
  total: number
  /** Connections held at once from one address. */
  perAddress: number
}

export class ConnectionGuard {
  readonly #limits: ConnectionLimits
  readonly #byAddress = new Map<string, number>()
  #total = 0
  /** Connections refused since the start (for logs and metrics). */
  refused = 0

  constructor(limits: ConnectionLimits) {
    this.#limits = limits
  }

  get open(): number {
    return this.#total
  }

  /**
   * Counts `socket` in, or destroys it when a limit is reached. Returns
   * whether it was admitted; an admitted socket is counted out when it closes.
   */
  admit(socket: Socket): boolean {
    const address = socket.remoteAddress ?? ''
    const fromAddress = this.#byAddress.get(address) ?? 0
    if (this.#total >= this.#limits.total || fromAddress >= this.#limits.perAddress) {
      this.refused++
      socket.destroy()
      return false
    }
    this.#total++
    this.#byAddress.set(address, fromAddress + 1)
    socket.once('close', () => {
      this.#total--
      const n = (this.#byAddress.get(address) ?? 1) - 1
      if (n > 0) this.#byAddress.set(address, n)
      else this.#byAddress.delete(address)
    })
    return true
  }

  /** Guards every connection `server` accepts, before any other listener sees it. */
  attach(server: Server): void {
    server.prependListener('connection', (socket: Socket) => {
      this.admit(socket)
    })
  }
}
