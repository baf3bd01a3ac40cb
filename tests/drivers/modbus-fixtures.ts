import { fileURLToPath } from 'node:url';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';

/** The shipped Modbus profiles (a 'closes' breaker and an 'arms' meter), with test-sized timeouts. */
export function modbusTestProfiles(timeoutMs = 300): { breaker: ModbusFirmwareProfile; meter: ModbusFirmwareProfile; all: ModbusFirmwareProfile[] } {
  const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
  const all = [...loadFirmwareProfiles(dir).values()]
    .filter((p): p is ModbusFirmwareProfile => p.protocol === 'modbus')
    .map((p) => ({ ...p, timeouts: { commandMs: timeoutMs, readMs: timeoutMs } }));
  const breaker = all.find((p) => p.id === 'brk-rc100-modbus-fw3.2');
  const meter = all.find((p) => p.id === 'mtr-em500-modbus-fw1.4');
  if (!breaker || !meter) throw new Error('firmware-profiles/ must hold brk-rc100-modbus-fw3.2 and mtr-em500-modbus-fw1.4');
  return { breaker, meter, all };
}

/** Deterministic pseudo-random numbers (mulberry32), so noise tests corrupt the same bytes every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
