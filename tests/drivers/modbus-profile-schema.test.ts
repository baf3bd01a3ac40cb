import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readingPlan } from '../../drivers/modbus/register-map.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { FirmwareProfileSchema, type ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';

/**
 * What the profile schema refuses, and how it says so: each impossible map is named by its field, the way
 * `loadFirmwareProfiles` prints it at start-up ("<file>: modbus.relayState.mask: …").
 */

const shipped = [...loadFirmwareProfiles(fileURLToPath(new URL('../../firmware-profiles', import.meta.url))).values()].filter(
  (p): p is ModbusFirmwareProfile => p.protocol === 'modbus',
);
const base = shipped.find((p) => p.id === 'mtr-em500-modbus-fw1.4')!;

/** The problems of the EM500 profile with parts of its map replaced, as "path: message". */
function problems(modbus: Record<string, unknown>): string[] {
  const r = FirmwareProfileSchema.safeParse({ ...base, modbus: { ...base.modbus, ...modbus } });
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

const statusWord = (extra: Record<string, unknown>) => ({ relayState: { kind: 'holdingRegister', address: 257, values: { connected: 1, disconnected: 0, armed: 2 }, ...extra } });
const step = (s: Record<string, unknown>) => ({ relayCommand: { kind: 'sequence', steps: [s] } });

describe('the Modbus profile schema rejects impossible maps, naming the field', () => {
  it('relay state bit fields', () => {
    expect(problems(statusWord({ mask: 0 }))).toContain('modbus.relayState.mask: mask 0 selects no bit of the register');
    expect(problems(statusWord({ mask: 0x8000, shift: 16 }))).toContain('modbus.relayState.shift: shift 16 is beyond bit 15 of a 16-bit register');
    expect(problems(statusWord({ mask: 0x0003, shift: 1 }))).toContain('modbus.relayState.shift: shift 1 drops bits of mask 0x3: shift by the mask\'s lowest bit');
    expect(problems(statusWord({ mask: 0x0001 }))).toContain('modbus.relayState.values.armed: value 2 is wider than the field (at most 1)');
    expect(problems({ relayState: { kind: 'holdingRegister', address: 257, values: { connected: [1, 3], disconnected: [0, 3], armed: 2 } } })).toContain(
      'modbus.relayState.values.disconnected: value 3 is given for both connected and disconnected',
    );
    expect(problems({ relayState: { kind: 'discreteInputs', address: 2, count: 2, values: { connected: 4, disconnected: 1, armed: 2 } } })).toContain(
      'modbus.relayState.values.connected: value 4 is wider than the field (at most 3)',
    );
    expect(problems(statusWord({ values: { connected: 0x10000, disconnected: 0 } })).join()).toMatch(/modbus\.relayState\.values\.connected/);
  });

  it('command writes', () => {
    expect(problems(step({ function: 15, address: 0, quantity: 3, values: { disconnect: [1, 0], reconnect: [0, 1] } }))).toEqual([
      'modbus.relayCommand.steps.0.values.disconnect: quantity 3 does not fit 2 value(s)',
      'modbus.relayCommand.steps.0.values.reconnect: quantity 3 does not fit 2 value(s)',
    ]);
    expect(problems(step({ function: 16, address: 0, values: Array.from({ length: 124 }, () => 0) }))).toEqual(['modbus.relayCommand.steps.0.values: function 16 writes at most 123 values, not 124']);
    expect(problems(step({ function: 15, address: 0, values: [1, 2] }))).toEqual(['modbus.relayCommand.steps.0.values: a coil value is 0 or 1, not 2']);
    expect(problems(step({ function: 6, address: 0, values: [1, 2] }))).toEqual(['modbus.relayCommand.steps.0.values: function 6 writes one value, not 2']);
    expect(problems(step({ function: 6, address: 0, values: [0x10000] }))).toEqual(['modbus.relayCommand.steps.0.values: 65536 is wider than a 16-bit register']);
    expect(problems(step({ function: 16, address: 0xfffe, values: [1, 2, 3] }))).toEqual(['modbus.relayCommand.steps.0.address: 3 value(s) from address 65534 run past 0xFFFF']);
    expect(problems(step({ function: 3, address: 0, values: [1] })).join()).toMatch(/modbus\.relayCommand\.steps\.0\.function/);
    const two = (delayMs: number, lastDelay?: number) => ({
      relayCommand: { kind: 'sequence', steps: [{ function: 6, address: 1, values: [7], delayMs }, { function: 6, address: 2, values: { disconnect: [0], reconnect: [1] }, ...(lastDelay === undefined ? {} : { delayMs: lastDelay }) }] },
    });
    expect(problems(two(60_001))).toEqual(['modbus.relayCommand.steps.0.delayMs: delayMs must be 0–60000']);
    expect(problems(two(-1))).toEqual(['modbus.relayCommand.steps.0.delayMs: delayMs must be 0–60000']);
    expect(problems(two(50, 10))).toEqual(['modbus.relayCommand.steps.1.delayMs: the last step has no next step to wait for (use relay.operateTimeMs for the settle before read-back)']);
    expect(problems(two(50))).toEqual([]);
  });

  it('numeric points: overlap, the end of the address space, the limit register', () => {
    expect(problems({ energyWh: { table: 'holdingRegister', address: 258, type: 'uint64' } })).toEqual(['modbus.energyWh.address: registers 258–261 overlap voltageV (258–259)']);
    expect(problems({ voltageV: { table: 'holdingRegister', address: 255, type: 'float64' } })).toEqual(['modbus.voltageV.address: registers 255–258 overlap relayState (257–257)']);
    expect(problems({ voltageV: { table: 'inputRegister', address: 0xfffd, type: 'uint64' } })).toEqual(['modbus.voltageV.address: uint64 at 65533 runs past register 0xFFFF']);
    expect(problems({ loadLimit: { table: 'holdingRegister', address: 300, type: 'uint32', noLimit: 0, writeFunction: 6 } })).toEqual([
      'modbus.loadLimit.writeFunction: function 6 writes one register; a uint32 needs function 16',
    ]);
    expect(problems({ loadLimit: { table: 'holdingRegister', address: 300, type: 'uint16', noLimit: 70000 } })).toEqual(['modbus.loadLimit.noLimit: 70000 does not fit a uint16']);
    expect(problems({ loadLimit: { table: 'inputRegister', address: 300, type: 'uint16', noLimit: 0 } }).join()).toMatch(/modbus\.loadLimit\.table/);
    expect(problems({ closeRefusal: {} })).toEqual(['modbus.closeRefusal: closeRefusal needs an exceptionCode, a statusBit or both']);
  });

  it('the existing maps stay valid unchanged, and every data-sheet profile names its source', () => {
    expect(problems({})).toEqual([]);
    for (const p of shipped.filter((x) => !['brk-rc100-modbus-fw3.2', 'mtr-em500-modbus-fw1.4'].includes(x.id))) {
      expect(p.source, p.id).toMatch(/^[A-Z][\w ]+, .+/);
    }
    expect(shipped.map((p) => p.id)).toEqual(expect.arrayContaining(['se-compactnsx-bscm-modbus', 'siemens-wl-com16-modbus', 'accuenergy-dv300-relay-modbus']));
  });
});

describe('relay state from a bit field or a set of inputs', () => {
  it("the issue's breaker: register 257 reads 0x0101 and its relay is bit 0", () => {
    const map = FirmwareProfileSchema.parse({ ...base, relay: { ...base.relay, remoteReconnect: 'closes' }, modbus: { ...base.modbus, relayState: { kind: 'holdingRegister', address: 257, mask: 1, values: { connected: 1, disconnected: 0 } } } });
    const plan = readingPlan((map as ModbusFirmwareProfile).modbus);
    expect(plan.decode([{ kind: 'registers', words: [0x0101, 0, 0, 0, 0] }])).toMatchObject({ relay: 'connected' });
    expect(plan.decode([{ kind: 'registers', words: [0x0100, 0, 0, 0, 0] }])).toMatchObject({ relay: 'disconnected' });
  });

  it('two status inputs: open, closed, tripped reads open; "not ready" (00) matches no state and is garbled', () => {
    const wl = shipped.find((p) => p.id === 'siemens-wl-com16-modbus')!;
    const plan = readingPlan(wl.modbus);
    expect(plan.reads.map((r) => r.pdu.toString('hex'))).toEqual(['0200020002']);
    const bits = (b2: boolean, b3: boolean) => [{ kind: 'bits' as const, bits: [b2, b3] }];
    expect(plan.decode(bits(true, false))).toEqual({ relay: 'disconnected' });
    expect(plan.decode(bits(false, true))).toEqual({ relay: 'connected' });
    expect(plan.decode(bits(true, true))).toEqual({ relay: 'disconnected' });
    expect(plan.decode(bits(false, false))).toEqual({ problem: expect.stringMatching(/^relay state value 0 \(2 input\(s\) from 2\) is none of the profile's encodings/) });
  });

  it('a status word whose field matches no state names the register, its value and the mask', () => {
    const nsx = shipped.find((p) => p.id === 'se-compactnsx-bscm-modbus')!;
    const m = { ...nsx.modbus, relayState: { kind: 'holdingRegister' as const, address: 562, mask: 0x0006, shift: 1, values: { connected: 2, disconnected: 0 } } };
    expect(readingPlan(m).decode([{ kind: 'registers', words: [0x0003] }])).toEqual({ problem: expect.stringMatching(/^relay state value 1 \(register 562 reads 0x0003, mask 0x6, shift 1\)/) });
  });
});
