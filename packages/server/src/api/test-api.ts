// Test helpers for the API over real HTTP: hand-made requests (signed with
// TC3 or not) for what the official client cannot send, and their envelopes.
import assert from 'node:assert/strict'
import { signTc3 } from '@online-record/protocol'
import type { Clock } from '../clock.ts'

export interface Credentials {
  sdkAppId: number
  secretId: string
  secretKey: string
}

export interface RawResponse {
  status: number
  headers: Headers
  json: {
    Response: { Error?: { Code: string; Message: string }; RequestId: string } & Record<
      string,
      unknown
    >
  }
}

export function apiTestClient(baseUrl: string, clock: Clock, app: Credentials) {
  const endpoint = baseUrl.replace('http://', '')
  const raw = async (
    body: string | Buffer,
    headers: Record<string, string>,
    method = 'POST',
    path = '/',
  ): Promise<RawResponse> => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(method === 'GET' ? {} : { body }),
    })
    const text = await response.text()
    return { status: response.status, headers: response.headers, json: JSON.parse(text) }
  }
  /** TC3 headers for `body` (POST) or for `query` (GET), as the official SDK signs them. */
  const signedHeaders = (
    body: string,
    patch: Record<string, string> = {},
    timestamp = Math.floor(clock.now() / 1000),
    credentials: Credentials = app,
    get?: { query: string },
  ) => {
    const { authorization, contentType } = signTc3({
      secretId: credentials.secretId,
      secretKey: credentials.secretKey,
      service: 'tiw',
      host: endpoint.split(':')[0] as string,
      timestamp,
      payload: body,
      ...(get ? { method: 'GET' as const, query: get.query } : {}),
    })
    return {
      'content-type': contentType,
      'x-tc-action': 'DescribeOnlineRecordCallback',
      'x-tc-version': '2019-09-19',
      'x-tc-timestamp': String(timestamp),
      authorization,
      ...patch,
    }
  }
  /** The envelope's error code (undefined on success); asserts HTTP 200 and a RequestId. */
  const errorCode = (r: RawResponse) => {
    assert.equal(r.status, 200, 'always HTTP 200')
    assert.ok(r.json.Response.RequestId)
    return r.json.Response.Error?.Code
  }
  return { endpoint, raw, signedHeaders, errorCode }
}
