import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';

/**
 * The shipped firmware profiles with their timeouts and backoff shortened so that retry scenarios run in
 * seconds; everything else (topics, relay words, reconnect behaviour, retry limits) stays as shipped.
 * Written to a temp directory so the gateway loads them the way it loads real ones; `extra` profiles with them.
 */
export function writeFastProfiles(extra: readonly FirmwareProfile[] = []): { dir: string; profiles: Map<string, FirmwareProfile> } {
  const shipped = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles'));
  const dir = mkdtempSync(join(tmpdir(), 'ml-profiles-'));
  // A test's own profiles (a variant of a shipped one, say) are written and loaded beside them, the same way.
  for (const p of [...shipped.values(), ...extra]) {
    const fast: FirmwareProfile = {
      ...p,
      timeouts: { commandMs: 600, readMs: 600 },
      relay: { ...p.relay, operateTimeMs: 20 },
      retry: { ...p.retry, baseDelayMs: 50, maxDelayMs: 200 },
    };
    writeFileSync(join(dir, `${p.id}.json`), JSON.stringify(fast, null, 2));
  }
  return { dir, profiles: loadFirmwareProfiles(dir) };
}
