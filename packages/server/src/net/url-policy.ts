// Which URLs a tenant gives us may be called (callbacks, pad images, board
// images). Always http(s) without credentials; with `blockPrivate` (for
// hosting several tenants on one service) no address of the host itself or of
// its private networks, checked on the literal host and on every resolved
// address at connect time, so a DNS name cannot be pointed at one after it
// was accepted.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'

const PRIVATE = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata services
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4')
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6')
}

/** Whether an IP address is loopback, private, link-local or otherwise not a public host. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 4) return PRIVATE.check(address, 'ipv4')
  if (family !== 6) return false
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return PRIVATE.check(mapped[1] as string, 'ipv4')
  return PRIVATE.check(address, 'ipv6')
}

export class BlockedAddressError extends Error {
  readonly code = 'ERR_CALLBACK_ADDRESS_BLOCKED'
}

/** What may be called: `blockPrivate` refuses the addresses `isBlocked` names (default: isPrivateAddress). */
export interface AddressPolicy {
  blockPrivate: boolean
  isBlocked?: (address: string) => boolean
}

/**
 * Why `url` cannot be a callback URL, or `undefined` when it can. Only the
 * literal host is checked here; names are checked when they are resolved.
 */
export function callbackUrlProblem(url: string, blockPrivate: boolean): string | undefined {
  return urlProblem(url, { blockPrivate })
}

/** Why `url` may not be called under `policy`, or `undefined`; the literal host only. */
export function urlProblem(url: string, policy: AddressPolicy): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'is not a URL'
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must be http or https'
  if (parsed.username || parsed.password) return 'must not carry credentials'
  if (!policy.blockPrivate) return undefined
  const host = parsed.hostname.replace(/^\[|\]$/g, '')
  const blocked = policy.isBlocked ?? isPrivateAddress
  if (host === 'localhost' || host.endsWith('.localhost') || blocked(host)) {
    return 'points at a loopback or private address, which this service does not call'
  }
  return undefined
}

/**
 * A `lookup` for sockets that refuses names resolving to a private address.
 * Every address of the answer is checked, since the socket may try any of them.
 */
export const publicOnlyLookup: LookupFunction = policyLookup(isPrivateAddress)

/** A `lookup` that refuses names resolving to an address `isBlocked` names. */
export function policyLookup(isBlocked: (address: string) => boolean): LookupFunction {
  return (hostname, options, callback) => lookupChecked(isBlocked, hostname, options, callback)
}

function lookupChecked(
  isBlocked: (address: string) => boolean,
  ...[hostname, options, callback]: Parameters<LookupFunction>
): void {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, [])
    const blocked = addresses.find((a) => isBlocked(a.address))
    if (blocked) {
      return callback(
        new BlockedAddressError(
          `${hostname} resolves to ${blocked.address}, a loopback or private address, which this service does not call`,
        ),
        [],
      )
    }
    if (options.all) return callback(null, addresses)
    const first = addresses[0] as LookupAddress
    callback(null, first.address, first.family)
  })
}
