import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's chromium, headless, driven by playwright-core, for the console's browser tests. Playwright gives every
 * launch a fresh temporary profile (user-data-dir); the flags keep it off the network and quiet.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
