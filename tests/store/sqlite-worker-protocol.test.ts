import { describe, expect, it } from 'vitest';
import { ANSWER_CODECS } from '../../src/store/sqlite-worker-protocol.js';
import type { MeterView } from '../../src/store/store.js';

/** As postMessage would carry it. */
const cross = (v: unknown): unknown => structuredClone(v);

describe('the journal worker protocol: energy readings', () => {
  const codec = ANSWER_CODECS.energyReadings!;

  it('cross as one Float64Array and come back as the same readings, in order (integers, fractions, NaN, -0, large values)', () => {
    const readings = [
      { at: 1_764_000_000_000, energyWh: 12 },
      { at: 1_764_000_000_500, energyWh: 12.25 },
      { at: 1_764_000_001_000, energyWh: Number.NaN },
      { at: 1_764_000_001_500, energyWh: -0 },
      { at: Number.MAX_SAFE_INTEGER, energyWh: 1e15 + 0.5 },
    ];
    const encoded = codec.encode(readings);
    expect(encoded).toBeInstanceOf(Float64Array);
    const back = codec.decode(cross(encoded));
    expect(back).toEqual(readings);
    expect(Object.is(back[3]!.energyWh, -0)).toBe(true);
    expect(Object.keys(back[0]!)).toEqual(['at', 'energyWh']);
    expect(codec.decode(cross(codec.encode([])))).toEqual([]);
  });

  it('a reading whose value is not a number (a column read as text) makes the list cross as it is, unchanged', () => {
    const readings = [{ at: 1, energyWh: 2 }, { at: 3, energyWh: '4' as unknown as number }];
    const encoded = codec.encode(readings);
    expect(Array.isArray(encoded)).toBe(true);
    expect(codec.decode(cross(encoded))).toEqual(readings);
  });

  it('refuses a malformed answer rather than make readings up', () => {
    expect(() => codec.decode(new Float64Array(3))).toThrow(/malformed/);
    expect(() => codec.decode(null)).toThrow(/malformed/);
    expect(() => codec.decode(new Float32Array(2))).toThrow(/malformed/);
    expect(() => codec.decode({ length: 2 })).toThrow(/malformed/);
  });
});

describe('the journal worker protocol: a meter', () => {
  const codec = ANSWER_CODECS.getMeter!;
  const flags = { vulnerable: false, medicalEquipment: false, priorityRegister: false, protectedMode: false, prepaymentMode: false, prepaymentAgreementRef: null, hasLoadLimiter: false, loadLimitedSince: null };
  const meter: MeterView = {
    meterId: 'M-1', profileId: 'acme', link: 'L1', region: 'north', address: null, accountId: 'acct-1', createdAt: 1, updatedAt: 2,
    observed: { relay: 'connected', at: 3, source: 'read', voltageV: 230.5, energyWh: null },
    desiredRelay: 'connected', desiredOrderId: 'ord-1', flags,
  };
  /** Encoded, cloned as postMessage would, decoded: compared as JSON (key order counts). */
  const roundTrip = (m: MeterView): unknown => codec.decode(cross(codec.encode(m)));

  it('comes back with the same keys in the same order and the same values: default flags as one value, others as values, observed as values', () => {
    const encoded = codec.encode(meter) as unknown[];
    expect(encoded[11]).toBe(0);
    expect(encoded[8]).toEqual(['connected', 3, 'read', 230.5, null]);
    expect(JSON.stringify(roundTrip(meter))).toBe(JSON.stringify(meter));
    const flagged = { ...meter, observed: null, flags: { ...flags, medicalEquipment: true, prepaymentAgreementRef: 'agr-9', loadLimitedSince: 17 } };
    expect(Array.isArray((codec.encode(flagged) as unknown[])[11])).toBe(true);
    expect(JSON.stringify(roundTrip(flagged))).toBe(JSON.stringify(flagged));
    // Each meter gets its own flags object (the store's callers may change theirs).
    const a = codec.decode(cross(codec.encode(meter)))!;
    const b = codec.decode(cross(codec.encode(meter)))!;
    expect(a.flags).not.toBe(b.flags);
    expect(codec.decode(cross(codec.encode(undefined)))).toBeUndefined();
  });

  it('flags or an observation of another shape (a key more, or in another order) cross as they are', () => {
    const extra = { ...meter, flags: { ...flags, futureFlag: true } as MeterView['flags'] };
    expect(JSON.stringify(roundTrip(extra))).toBe(JSON.stringify(extra));
    const reordered = { ...meter, observed: { at: 3, relay: 'connected' as const, source: 'read' as const, voltageV: null, energyWh: 5 } };
    expect(JSON.stringify(roundTrip(reordered))).toBe(JSON.stringify(reordered));
    const fewer = { ...meter, flags: { vulnerable: true } as unknown as MeterView['flags'] };
    expect(JSON.stringify(roundTrip(fewer))).toBe(JSON.stringify(fewer));
  });

  it('refuses malformed flags or observations rather than make a meter up', () => {
    const encoded = codec.encode(meter) as unknown[];
    expect(() => codec.decode([...encoded.slice(0, 11), [false, true]])).toThrow(/malformed/);
    expect(() => codec.decode([...encoded.slice(0, 11), 1])).toThrow(/malformed/);
    expect(() => codec.decode([...encoded.slice(0, 8), ['connected', 3], ...encoded.slice(9)])).toThrow(/malformed/);
    expect(() => codec.decode([...encoded.slice(0, 8), 'connected', ...encoded.slice(9)])).toThrow(/malformed/);
  });
});
