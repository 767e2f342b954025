// The browser of the browser suites: Debian's chromium (never a downloaded
// one), headless, driven by playwright-core. `media`: a fake camera and
// microphone that need no permission prompt, and loopback ICE candidates.
import { after } from 'node:test'
import { type Browser, chromium } from 'playwright-core'

/** Chromium's flags: headless, no sandbox or GPU, nothing fetched; `media`: the fake devices. */
export function chromiumArgs(options: { media?: boolean } = {}): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    ...(options.media
      ? [
          '--use-fake-device-for-media-stream',
          '--use-fake-ui-for-media-stream',
          '--allow-loopback-in-peer-connection',
        ]
      : []),
  ]
}

export async function launchBrowser(options: { media?: boolean } = {}): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: chromiumArgs(options),
  })
  after(() => browser.close())
  return browser
}
