import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { exceptionVerdict } from '../../drivers/modbus/modbus-exceptions.js';
import { ExceptionCode, FunctionCode } from '../../drivers/modbus/modbus-codes.js';
import { parseResponse, readRequest, writeSingleCoilRequest, writeSingleRegisterRequest } from '../../drivers/modbus/modbus-pdu.js';
import { encodeMbap, MbapReader } from '../../drivers/modbus/mbap-frame.js';
import { claimFromEcho, commandSteps, readingPlan, registerMapProblem, stepPdu } from '../../drivers/modbus/register-map.js';
import { decodeNumber, encodeNumber, encodeRaw, UnsafeValueError } from '../../drivers/modbus/register-values.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { FirmwareProfileSchema, type ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { ModbusRegisterMapSchema } from '../../src/domain/profiles/modbus-profile.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const shipped = [...loadFirmwareProfiles(fileURLToPath(new URL('../../firmware-profiles', import.meta.url))).values()].filter(
  (p): p is ModbusFirmwareProfile => p.protocol === 'modbus',
);
const breaker = shipped.find((p) => p.id === 'brk-rc100-modbus-fw3.2')!;
const meter = shipped.find((p) => p.id === 'mtr-em500-modbus-fw1.4')!;

describe('register value encoding (word order, scaling)', () => {
  it('reads a 32-bit value high word first or word-swapped', () => {
    // 123456789 = 0x075BCD15
    expect(decodeNumber([0x075b, 0xcd15], { type: 'uint32', wordOrder: 'highFirst', scale: 1 })).toBe(123_456_789);
    expect(decodeNumber([0xcd15, 0x075b], { type: 'uint32', wordOrder: 'lowFirst', scale: 1 })).toBe(123_456_789);
    expect(encodeNumber(123_456_789, { type: 'uint32', wordOrder: 'lowFirst', scale: 1 })).toEqual([0xcd15, 0x075b]);
  });

  it('applies the scale: tenths of a volt, hundredths of a kWh', () => {
    expect(decodeNumber([2304], { type: 'uint16', wordOrder: 'highFirst', scale: 0.1 })).toBe(230.4);
    expect(encodeNumber(230.4, { type: 'uint16', wordOrder: 'highFirst', scale: 0.1 })).toEqual([2304]);
    expect(decodeNumber([0x0001, 0x86a0], { type: 'uint32', wordOrder: 'highFirst', scale: 10 })).toBe(1_000_000); // 100,000 × 0.01 kWh
  });

  it('reads signed and IEEE-754 values (230.4 V as float32 is 0x43666666)', () => {
    expect(decodeNumber([0xffff], { type: 'int16', wordOrder: 'highFirst', scale: 1 })).toBe(-1);
    expect(decodeNumber([0xffff, 0xfffe], { type: 'int32', wordOrder: 'highFirst', scale: 1 })).toBe(-2);
    expect(encodeNumber(230.4, { type: 'float32', wordOrder: 'highFirst', scale: 1 })).toEqual([0x4366, 0x6666]);
    expect(decodeNumber([0x6666, 0x4366], { type: 'float32', wordOrder: 'lowFirst', scale: 1 })).toBe(230.4);
  });

  it('round-trips every type and order', () => {
    for (const type of ['uint16', 'int16', 'uint32', 'int32', 'float32'] as const) {
      for (const wordOrder of ['highFirst', 'lowFirst'] as const) {
        const enc = { type, wordOrder, scale: 0.1 };
        expect(decodeNumber(encodeNumber(123.4, enc), enc)).toBeCloseTo(123.4, 4);
      }
    }
  });
});

describe('64-bit and float64 values in every byte and word order', () => {
  // The four orders as data sheets letter them, for bytes A (most significant) to H.
  const ORDERS = {
    ABCD: { wordOrder: 'highFirst', byteOrder: 'bigEndian' },
    CDAB: { wordOrder: 'lowFirst', byteOrder: 'bigEndian' },
    BADC: { wordOrder: 'highFirst', byteOrder: 'swapped' },
    DCBA: { wordOrder: 'lowFirst', byteOrder: 'swapped' },
  } as const;
  const enc = (type: 'uint64' | 'int64' | 'float64' | 'float32' | 'uint32', order: keyof typeof ORDERS, scale = 1) => ({ type, ...ORDERS[order], scale });

  it('uint64 0x0102030405060708 as the registers of each order', () => {
    const words: Record<keyof typeof ORDERS, number[]> = {
      ABCD: [0x0102, 0x0304, 0x0506, 0x0708],
      CDAB: [0x0708, 0x0506, 0x0304, 0x0102],
      BADC: [0x0201, 0x0403, 0x0605, 0x0807],
      DCBA: [0x0807, 0x0605, 0x0403, 0x0201],
    };
    for (const order of Object.keys(ORDERS) as Array<keyof typeof ORDERS>) {
      // 0x0102030405060708 = 72,623,859,790,382,856: beyond 2^53, so only a scale that brings it down is reportable.
      expect(decodeNumber(words[order], enc('uint64', order, 0.001)), order).toBe(72_623_859_790_382.856);
      expect(() => decodeNumber(words[order], enc('uint64', order))).toThrow(UnsafeValueError);
      expect(encodeRaw(0x0102030405060708n, enc('uint64', order)), order).toEqual(words[order]);
    }
  });

  it('a 64-bit value just past 2^53 is refused, not rounded; below it every unit is exact', () => {
    const above = encodeRaw(2n ** 53n + 1n, enc('uint64', 'ABCD'));
    expect(() => decodeNumber(above, enc('uint64', 'ABCD'))).toThrow(/beyond ±2\^53/);
    expect(decodeNumber(encodeRaw(2n ** 53n - 1n, enc('uint64', 'ABCD')), enc('uint64', 'ABCD'))).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeNumber([0xffff, 0xffff, 0xffff, 0xfffe], { type: 'int64', wordOrder: 'highFirst', scale: 1 })).toBe(-2);
    expect(decodeNumber([0x0000, 0x0000, 0x0000, 0x3039], { type: 'uint64', wordOrder: 'highFirst', scale: 10 })).toBe(123_450);
  });

  it('float64 1.0 (0x3FF0000000000000) and float32 230.4 (0x43666666) in each order', () => {
    const one: Record<keyof typeof ORDERS, number[]> = { ABCD: [0x3ff0, 0, 0, 0], CDAB: [0, 0, 0, 0x3ff0], BADC: [0xf03f, 0, 0, 0], DCBA: [0, 0, 0, 0xf03f] };
    const v230: Record<keyof typeof ORDERS, number[]> = { ABCD: [0x4366, 0x6666], CDAB: [0x6666, 0x4366], BADC: [0x6643, 0x6666], DCBA: [0x6666, 0x6643] };
    for (const order of Object.keys(ORDERS) as Array<keyof typeof ORDERS>) {
      expect(decodeNumber(one[order], enc('float64', order)), order).toBe(1);
      expect(encodeNumber(1, enc('float64', order)), order).toEqual(one[order]);
      expect(decodeNumber(v230[order], enc('float32', order)), order).toBe(230.4);
      expect(encodeNumber(230.4, enc('float32', order)), order).toEqual(v230[order]);
    }
  });

  it('scale and offset: engineering = raw × scale + offset', () => {
    expect(decodeNumber([0xfe70], { type: 'int16', wordOrder: 'highFirst', scale: 0.1, offset: 40 })).toBe(0); // -400 × 0.1 + 40
    expect(encodeNumber(0, { type: 'int16', wordOrder: 'highFirst', scale: 0.1, offset: 40 })).toEqual([0xfe70]);
  });

  it('round-trips every type and order', () => {
    for (const type of ['uint16', 'int16', 'uint32', 'int32', 'float32', 'uint64', 'int64', 'float64'] as const) {
      for (const order of Object.keys(ORDERS) as Array<keyof typeof ORDERS>) {
        const e = { type, ...ORDERS[order], scale: 0.1 };
        expect(decodeNumber(encodeNumber(123.4, e), e), `${type} ${order}`).toBeCloseTo(123.4, 4);
      }
    }
  });
});

describe('PDU requests and responses (MB AP §6, examples from the spec)', () => {
  it('builds read and write requests', () => {
    expect(readRequest(FunctionCode.READ_HOLDING_REGISTERS, 0x6b, 3)).toEqual(hex('03 00 6B 00 03'));
    expect(writeSingleCoilRequest(0xac, true)).toEqual(hex('05 00 AC FF 00'));
    expect(writeSingleCoilRequest(0xac, false)).toEqual(hex('05 00 AC 00 00'));
    expect(writeSingleRegisterRequest(0x01, 3)).toEqual(hex('06 00 01 00 03'));
  });

  it('unpacks coils LSB first (§6.1: 19 coils from 20 → CD 6B 05)', () => {
    const r = parseResponse(hex('01 00 13 00 13'), hex('01 03 CD 6B 05'));
    expect(r.kind).toBe('bits');
    if (r.kind !== 'bits') return;
    expect(r.bits.slice(0, 8)).toEqual([true, false, true, true, false, false, true, true]); // 0xCD
    expect(r.bits).toHaveLength(19);
  });

  it('reads registers (§6.3: 022B 0000 0064) and write echoes (§6.5, §6.6)', () => {
    expect(parseResponse(hex('03 00 6B 00 03'), hex('03 06 02 2B 00 00 00 64'))).toEqual({ kind: 'registers', words: [555, 0, 100] });
    expect(parseResponse(hex('05 00 AC FF 00'), hex('05 00 AC FF 00'))).toEqual({ kind: 'echo', address: 0xac, value: 0xff00 });
    expect(parseResponse(hex('06 00 01 00 03'), hex('06 00 01 00 03'))).toEqual({ kind: 'echo', address: 1, value: 3 });
  });

  it('recognises exception responses (§7) and rejects answers that do not fit the request', () => {
    expect(parseResponse(hex('01 04 A1 00 01'), hex('81 02'))).toEqual({ kind: 'exception', code: 2 });
    expect(parseResponse(hex('03 00 6B 00 03'), hex('03 04 02 2B 00 00')).kind).toBe('malformed'); // 2 registers for 3
    expect(parseResponse(hex('03 00 6B 00 03'), hex('04 06 02 2B 00 00 00 64')).kind).toBe('malformed');
    expect(parseResponse(hex('06 00 01 00 03'), hex('06 00 02 00 03')).kind).toBe('malformed'); // other address
  });
});

describe('exception responses → WireResult', () => {
  it('illegal function and illegal data address are profile errors', () => {
    expect(exceptionVerdict(ExceptionCode.ILLEGAL_FUNCTION, 0x03)).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/^profile error: .*function 0x03/) });
    expect(exceptionVerdict(ExceptionCode.ILLEGAL_DATA_ADDRESS, 0x04, 99)).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/^profile error: .*address 99/) });
  });

  it('server device busy asks to retry later', () => {
    expect(exceptionVerdict(ExceptionCode.SERVER_DEVICE_BUSY, 0x05)).toEqual({ outcome: 'nack', detail: 'device busy, retry later' });
  });

  it('other exceptions are nacks naming the exception and its code', () => {
    expect(exceptionVerdict(ExceptionCode.SERVER_DEVICE_FAILURE, 0x06).detail).toBe('device answered exception 0x04 (server device failure) to function 0x06');
    expect(exceptionVerdict(ExceptionCode.GATEWAY_TARGET_FAILED_TO_RESPOND, 0x03).detail).toMatch(/0x0b \(gateway target device failed to respond\)/);
    expect(exceptionVerdict(0x42, 0x03).detail).toMatch(/0x42 \(unknown exception\)/);
  });
});

describe('MBAP framing (TCP/IP Implementation Guide §3.1.3)', () => {
  it('encodes the header and cuts a stream back into ADUs, whatever the chunking', () => {
    const a = encodeMbap(1, 0x11, hex('03 00 6B 00 03'));
    expect(a).toEqual(hex('00 01 00 00 00 06 11 03 00 6B 00 03'));
    const b = encodeMbap(2, 0x11, hex('03 06 02 2B 00 00 00 64'));
    const stream = Buffer.concat([a, b]);
    const reader = new MbapReader();
    const out = [...reader.push(stream.subarray(0, 5)).adus, ...reader.push(stream.subarray(5, 14)).adus, ...reader.push(stream.subarray(14)).adus];
    expect(out.map((x) => [x.transactionId, x.unitId, x.pdu.toString('hex')])).toEqual([
      [1, 0x11, '03006b0003'],
      [2, 0x11, '0306022b00000064'],
    ]);
  });

  it('reports a stream that is not Modbus TCP', () => {
    expect(new MbapReader().push(hex('00 01 00 07 00 06 11 03 00 6B 00 03')).error).toMatch(/protocol 7/);
  });
});

describe('firmware profile register maps', () => {
  it('the shipped breaker and meter profiles load', () => {
    expect(breaker.modbus.relayCommand).toEqual({ kind: 'coil', address: 0, closedWhen: 'on' });
    expect(meter.relay.remoteReconnect).toBe('arms');
    expect(registerMapProblem(breaker.modbus, 'closes')).toBeNull();
    expect(registerMapProblem(meter.modbus, 'arms')).toBeNull();
  });

  it('reading plans: the breaker needs its aux contact and one merged input-register read; the meter one read', () => {
    expect(readingPlan(breaker.modbus).reads.map((r) => r.pdu.toString('hex'))).toEqual(['0200000001', '0400000004']);
    expect(readingPlan(meter.modbus).reads.map((r) => r.pdu.toString('hex'))).toEqual(['0301010005']);
  });

  it('decodes a meter reading: armed status, word-swapped float voltage and energy', () => {
    const plan = readingPlan(meter.modbus);
    const words = [2, ...encodeNumber(231.5, meter.modbus.voltageV!), ...encodeNumber(987_654, meter.modbus.energyWh!)];
    expect(plan.decode([{ kind: 'registers', words }])).toEqual({ relay: 'armed', voltageV: 231.5, energyWh: 987_654 });
    expect(plan.decode([{ kind: 'registers', words: [7, 0, 0, 0, 0] }])).toMatchObject({ problem: expect.stringMatching(/value 7/) });
  });

  it('relay commands and what their echo claims', () => {
    const pdus = (p: ModbusFirmwareProfile, a: 'disconnect' | 'reconnect') => commandSteps(p.modbus, a).map(stepPdu);
    expect(pdus(breaker, 'disconnect')).toEqual([hex('05 00 00 00 00')]);
    expect(pdus(breaker, 'reconnect')).toEqual([hex('05 00 00 FF 00')]);
    expect(pdus(meter, 'reconnect')).toEqual([hex('06 01 00 00 01')]);
    expect(claimFromEcho(breaker.modbus, 'closes', 'reconnect', 0xff00)).toBe('connected');
    expect(claimFromEcho(meter.modbus, 'arms', 'reconnect', 1)).toBe('armed');
    // Firmware echoing the other action's value claims that state (a relay that did not move).
    expect(claimFromEcho(meter.modbus, 'arms', 'reconnect', 0)).toBe('disconnected');
    expect(claimFromEcho(meter.modbus, 'arms', 'reconnect', 9)).toBeUndefined();
  });

  it('rejects unknown fields, duplicate state values, and an "arms" profile that cannot read armed', () => {
    expect(ModbusRegisterMapSchema.safeParse({ ...breaker.modbus, extra: 1 }).success).toBe(false);
    const dup = { ...meter.modbus, relayState: { kind: 'holdingRegister', address: 1, values: { connected: 1, disconnected: 1 } } };
    expect(ModbusRegisterMapSchema.safeParse(dup).success).toBe(false);
    expect(FirmwareProfileSchema.safeParse({ ...breaker, modbus: { ...breaker.modbus, relayCommand: { kind: 'coil', address: 70000 } } }).success).toBe(false);
    expect(registerMapProblem(breaker.modbus, 'arms')).toMatch(/armed/);
  });
});
