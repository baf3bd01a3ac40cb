import { fileURLToPath } from 'node:url';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { FirmwareProfileSchema, type ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';

/**
 * Devices for the profile-format tests: the shipped data-sheet profiles (a status-word breaker commanded with FC16,
 * a breaker read from two status inputs and commanded with FC15, a meter relay on a coil), and one test-only relay
 * module whose map uses what no shipped data sheet needed yet: an unlock write before the operate write, float64 and
 * uint64 values in unusual orders, a demand-limit register, the load-side voltage and a refused close reported by a
 * vendor exception code. Timeouts are test-sized.
 */

const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));

function shipped(id: string, timeoutMs: number): ModbusFirmwareProfile {
  const p = loadFirmwareProfiles(dir).get(id);
  if (p?.protocol !== 'modbus') throw new Error(`firmware-profiles/ must hold the Modbus profile ${id}`);
  return { ...p, relay: { ...p.relay, operateTimeMs: 0 }, timeouts: { commandMs: timeoutMs, readMs: timeoutMs } };
}

/** The vendor exception code the test relay module answers a refused close with. */
export const REFUSED_CLOSE_EXCEPTION = 0x84;

/** The test relay module's profile, validated like a profile file (defaults filled in). */
export function selectBeforeOperateModule(timeoutMs: number, overrides: Record<string, unknown> = {}): ModbusFirmwareProfile {
  return FirmwareProfileSchema.parse({
    id: 'test-sbo-relay-module',
    manufacturer: 'Meterline tests',
    model: 'relay module with select-before-operate and a demand limiter',
    firmware: '1',
    protocol: 'modbus',
    modbus: {
      relayCommand: {
        kind: 'sequence',
        steps: [
          { function: 6, address: 100, values: [0x5a5a], delayMs: 30 },
          { function: 6, address: 101, values: { disconnect: [0], reconnect: [1] } },
        ],
      },
      relayState: { kind: 'inputRegister', address: 200, mask: 0x0030, shift: 4, values: { connected: 1, disconnected: [0, 2] } },
      voltageV: { table: 'inputRegister', address: 202, type: 'float64', wordOrder: 'lowFirst', byteOrder: 'swapped' },
      energyWh: { table: 'inputRegister', address: 206, type: 'uint64', wordOrder: 'highFirst', scale: 0.001 },
      loadSideVoltageV: { table: 'inputRegister', address: 210, type: 'int16', scale: 0.1 },
      closeRefusal: { exceptionCode: REFUSED_CLOSE_EXCEPTION },
      loadLimit: { table: 'holdingRegister', address: 300, type: 'uint16', scale: 10, noLimit: 65535, writeFunction: 6 },
      ...overrides,
    },
    relay: { remoteReconnect: 'closes', operateTimeMs: 0 },
    timeouts: { commandMs: timeoutMs, readMs: timeoutMs },
    retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
  }) as ModbusFirmwareProfile;
}

export function profileDevices(timeoutMs = 500) {
  const nsx = shipped('se-compactnsx-bscm-modbus', timeoutMs);
  const wl = shipped('siemens-wl-com16-modbus', timeoutMs);
  const dv300 = shipped('accuenergy-dv300-relay-modbus', timeoutMs);
  const sbo = selectBeforeOperateModule(timeoutMs);
  /** The same module reporting a refused close only by a status bit (and accepting the write). */
  const sboStatusBit = { ...selectBeforeOperateModule(timeoutMs, { closeRefusal: { statusBit: { table: 'inputRegister', address: 212, mask: 0x0001 } } }), id: 'test-sbo-status-bit' };
  return { nsx, wl, dv300, sbo, sboStatusBit, all: [nsx, wl, dv300, sbo, sboStatusBit] };
}
