import { fileURLToPath } from 'node:url';
import { loadFirmwareProfiles } from '../../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile, FirmwareProfile } from '../../../src/domain/firmware-profile.js';
import type { MeterAddress } from '../../../drivers/driver.js';

/** The shipped DLMS profiles, with test-sized timeouts (ptys answer in milliseconds). */
export function dlmsTestProfiles(timeoutMs = 300, responseTimeoutMs = 60): { closes: DlmsFirmwareProfile; arms: DlmsFirmwareProfile; all: DlmsFirmwareProfile[] } {
  const dir = fileURLToPath(new URL('../../../firmware-profiles', import.meta.url));
  const all = [...loadFirmwareProfiles(dir).values()]
    .filter((p): p is DlmsFirmwareProfile => p.protocol === 'dlms')
    .map((p) => ({ ...p, timeouts: { commandMs: timeoutMs, readMs: timeoutMs }, relay: { ...p.relay, operateTimeMs: 20 }, retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 50 }, dlms: { ...p.dlms, hdlc: { ...p.dlms.hdlc, responseTimeoutMs } } }));
  // The password (LLS) profiles; the HLS-GMAC ones need keys and have tests of their own (dlms-security.test.ts).
  const closes = all.find((p) => p.relay.remoteReconnect === 'closes' && p.dlms.security === 'low');
  const arms = all.find((p) => p.relay.remoteReconnect === 'arms' && p.dlms.security === 'low');
  if (!closes || !arms) throw new Error('need one closes and one arms DLMS profile in firmware-profiles/');
  return { closes, arms, all };
}

export const TEST_PASSWORDS = { closes: 'E570-lls-secret', arms: 'OMNI-0042' } as const;

/** The environment the driver reads passwords from, keyed by the profiles' passwordEnv names. */
export function passwordEnv(closes: DlmsFirmwareProfile, arms: DlmsFirmwareProfile): Record<string, string> {
  return { [closes.dlms.passwordEnv!]: TEST_PASSWORDS.closes, [arms.dlms.passwordEnv!]: TEST_PASSWORDS.arms };
}

export function dlmsAddress(meterId: string, profile: FirmwareProfile, link: string, address: string): MeterAddress {
  return { meterId, profile, link, address };
}

export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
