// Developer commands for receiving callbacks: `listen`, `sign`, `trigger`.
// They back the `online-record` CLI and the receiver's own
// `online-record-receiver` bin.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { EVENT_TYPES, type EventType, signCallback } from '@online-record/protocol'
import { createNodeMiddleware } from './adapters/node.ts'
import { createReceiver } from './receiver.ts'
import { sampleEvent, signPayload } from './testing.ts'

export const RECEIVER_USAGE = `Commands for app developers:
  listen --port P (--key K | --secret S | both) [--path /cb] [--host 127.0.0.1]
        run a local receiver that verifies and prints every callback
        (K: the app's CallbackKey, S: its whsec_… webhook secret)
  sign --key K --expire-time T
        print the callback Sign, md5(K + T)
  trigger <EventType> --url U [--key K] [--secret S] [--sdk-app-id N] [--task-id T]
        send a correctly signed sample event to U
        EventType: ${EVENT_TYPES.join(', ')}`

type Out = (line: string) => void

export interface ListenOptions {
  port: number
  host?: string
  path?: string
  callbackKeys?: string[]
  webhookSecrets?: string[]
  log?: Out
}

/** Starts the local receiver; resolves once it listens. */
export async function listen(options: ListenOptions): Promise<Server> {
  const log = options.log ?? console.log
  const receiver = createReceiver({
    ...(options.callbackKeys?.length ? { callbackKeys: options.callbackKeys } : {}),
    ...(options.webhookSecrets?.length ? { webhookSecrets: options.webhookSecrets } : {}),
  })
  receiver.onAny((event, { id, verifiedBy, sequence, attempt }) => {
    const data = event.EventData
    const position =
      (sequence ? `  seq ${sequence}` : '') + (attempt && attempt > 1 ? `  attempt ${attempt}` : '')
    log(
      `✔ ${event.EventType}  task ${data.TaskId}  room ${data.RoomId}  verified by ${verifiedBy}${id ? `  id ${id}` : ''}${position}\n${JSON.stringify(event, null, 2)}`,
    )
  })
  receiver.onError((error) => {
    log(`✖ refused: ${'code' in error ? `${String(error.code)}: ` : ''}${error.message}`)
  })
  const middleware = createNodeMiddleware(receiver, options.path ? { path: options.path } : {})
  const server = createServer((req, res) => void middleware(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host ?? '127.0.0.1', resolve)
  })
  const { address, port } = server.address() as AddressInfo
  log(
    `listening on http://${address.includes(':') ? `[${address}]` : address}:${port}${options.path ?? '/'}`,
  )
  return server
}

export interface TriggerOptions {
  url: string
  type: EventType
  callbackKey?: string
  webhookSecret?: string
  sdkAppId?: number
  taskId?: string
}

/** Sends one signed sample event; returns the receiver's status and body. */
export async function trigger(options: TriggerOptions): Promise<{ status: number; body: string }> {
  const event = sampleEvent(options.type, options.taskId ? { TaskId: options.taskId } : {})
  event.Timestamp = Math.floor(Date.now() / 1000)
  if (options.sdkAppId !== undefined) event.SdkAppId = options.sdkAppId
  const { body, headers } = signPayload(event, {
    ...(options.callbackKey !== undefined ? { callbackKey: options.callbackKey } : {}),
    ...(options.webhookSecret !== undefined ? { webhookSecret: options.webhookSecret } : {}),
  })
  const response = await fetch(options.url, { method: 'POST', headers, body })
  return { status: response.status, body: await response.text() }
}

const usage = (err: Out, message: string): number => {
  err(`${message}\n\n${RECEIVER_USAGE}`)
  return 2
}

/**
 * Runs one receiver command. Returns an exit code, or `undefined` for `listen`,
 * which keeps running.
 */
export async function runReceiverCommand(
  argv: readonly string[],
  out: Out = console.log,
  err: Out = console.error,
): Promise<number | undefined> {
  const [command, ...rest] = argv
  try {
    if (command === 'sign') {
      const { values } = parseArgs({
        args: [...rest],
        options: { key: { type: 'string' }, 'expire-time': { type: 'string' } },
      })
      const expireTime = Number(values['expire-time'])
      if (
        values.key === undefined ||
        !/^\d+$/.test(values['expire-time'] ?? '') ||
        !Number.isSafeInteger(expireTime)
      ) {
        return usage(err, 'sign needs --key and --expire-time (Unix seconds)')
      }
      out(signCallback(values.key, expireTime))
      return 0
    }
    if (command === 'listen') {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          port: { type: 'string' },
          host: { type: 'string' },
          path: { type: 'string' },
          key: { type: 'string', multiple: true },
          secret: { type: 'string', multiple: true },
        },
      })
      const port = Number(values.port)
      if (!/^\d+$/.test(values.port ?? '') || port > 65535)
        return usage(err, 'listen needs --port (0-65535)')
      if (!values.key?.length && !values.secret?.length)
        return usage(err, 'listen needs --key, --secret or both')
      await listen({
        port,
        ...(values.host ? { host: values.host } : {}),
        ...(values.path ? { path: values.path } : {}),
        callbackKeys: values.key ?? [],
        webhookSecrets: values.secret ?? [],
        log: out,
      })
      return undefined
    }
    if (command === 'trigger') {
      const { values, positionals } = parseArgs({
        args: [...rest],
        allowPositionals: true,
        options: {
          url: { type: 'string' },
          key: { type: 'string' },
          secret: { type: 'string' },
          'sdk-app-id': { type: 'string' },
          'task-id': { type: 'string' },
        },
      })
      const type = positionals[0]
      if (type === undefined || !(EVENT_TYPES as readonly string[]).includes(type)) {
        return usage(err, `trigger needs an EventType, got ${type ?? 'none'}`)
      }
      if (values.url === undefined || !/^https?:\/\//.test(values.url))
        return usage(err, 'trigger needs --url http(s)://…')
      const sdkAppId = values['sdk-app-id'] === undefined ? undefined : Number(values['sdk-app-id'])
      if (sdkAppId !== undefined && !(Number.isSafeInteger(sdkAppId) && sdkAppId > 0)) {
        return usage(err, '--sdk-app-id must be a positive integer')
      }
      const result = await trigger({
        url: values.url,
        type: type as EventType,
        ...(values.key !== undefined ? { callbackKey: values.key } : {}),
        ...(values.secret !== undefined ? { webhookSecret: values.secret } : {}),
        ...(sdkAppId !== undefined ? { sdkAppId } : {}),
        ...(values['task-id'] !== undefined ? { taskId: values['task-id'] } : {}),
      })
      out(`${result.status} ${result.body}`)
      return result.status >= 200 && result.status < 300 ? 0 : 1
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    if (
      error instanceof TypeError &&
      String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')
    ) {
      return usage(err, message)
    }
    err(message)
    return 1
  }
  return usage(err, `unknown command "${command ?? ''}"`)
}
