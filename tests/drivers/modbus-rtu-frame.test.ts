import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  bitsPerCharacter,
  crc16,
  decodeRtuFrame,
  encodeRtuFrame,
  interFrameSilenceMs,
  requestFrameLength,
  responseFrameLength,
} from '../../drivers/modbus/rtu-frame.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('CRC-16/MODBUS (Serial Line V1.02 §6.2.2)', () => {
  it('matches the spec appendix example: 02 07 → CRC 0x1241, sent 41 12', () => {
    expect(crc16(hex('02 07'))).toBe(0x1241);
    expect(encodeRtuFrame(0x02, hex('07'))).toEqual(hex('02 07 41 12'));
  });

  it('frames the MB AP §6.1-style read-coils request (37 coils from 0x13) for unit 0x11: 11 01 00 13 00 25 0E 84', () => {
    expect(encodeRtuFrame(0x11, hex('01 00 13 00 25'))).toEqual(hex('11 01 00 13 00 25 0E 84'));
    // The same PDU for unit 1 has another CRC: the unit id is covered by it.
    expect(encodeRtuFrame(0x01, hex('01 00 13 00 25'))).toEqual(hex('01 01 00 13 00 25 0C 14'));
  });

  it('frames the well-known "read 10 holding registers from 0 at unit 1": 01 03 00 00 00 0A C5 CD', () => {
    expect(encodeRtuFrame(0x01, hex('03 00 00 00 0A'))).toEqual(hex('01 03 00 00 00 0A C5 CD'));
  });

  it('agrees with modbus-serial’s CRC on random frames (an independent implementation)', () => {
    const require = createRequire(import.meta.url);
    const theirs = require('modbus-serial/utils/crc16') as (b: Buffer) => number;
    for (let n = 1; n < 200; n += 7) {
      const b = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n * 11) & 0xff));
      expect(crc16(b)).toBe(theirs(b));
    }
  });
});

describe('RTU frame decoding', () => {
  it('returns unit id and PDU of a frame whose CRC checks', () => {
    const r = decodeRtuFrame(hex('11 01 00 13 00 25 0E 84'));
    expect(r).toEqual({ ok: true, unitId: 0x11, pdu: hex('01 00 13 00 25') });
  });

  it('rejects any single corrupted byte, the CRC bytes included, and frames too short to hold a CRC', () => {
    const good = hex('11 03 06 AE 41 56 52 43 40 49 AD');
    expect(decodeRtuFrame(good).ok).toBe(true);
    for (let i = 0; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad[i]! ^= 0x5a;
      expect(decodeRtuFrame(bad)).toEqual({ ok: false, reason: 'crc' });
    }
    expect(decodeRtuFrame(hex('01 81 02'))).toEqual({ ok: false, reason: 'short' });
  });
});

describe('frame length from the function code (length-delimited framing)', () => {
  it('sizes read responses from their byte count, write echoes at 8, exceptions at 5', () => {
    expect(responseFrameLength(hex('01'), 0x01)).toBeNull();
    expect(responseFrameLength(hex('01 01'), 0x01)).toBeNull(); // byte count not yet in
    expect(responseFrameLength(hex('01 01 03'), 0x01)).toBe(8); // 01 01 03 CD 6B 05 crc crc
    expect(responseFrameLength(hex('11 03 06'), 0x03)).toBe(11);
    expect(responseFrameLength(hex('11 05'), 0x05)).toBe(8);
    expect(responseFrameLength(hex('11 06'), 0x06)).toBe(8);
    expect(responseFrameLength(hex('11 83'), 0x03)).toBe(5); // exception
    expect(responseFrameLength(hex('11 04'), 0x03)).toBe('mismatch'); // answers another function
    expect(responseFrameLength(hex('FF FE'), 0x03)).toBe('mismatch');
  });

  it('sizes requests on the server side', () => {
    expect(requestFrameLength(hex('01'))).toBeNull();
    expect(requestFrameLength(hex('01 03'))).toBe(8);
    expect(requestFrameLength(hex('01 05'))).toBe(8);
    expect(requestFrameLength(hex('01 10 00 01 00 02'))).toBeNull();
    expect(requestFrameLength(hex('01 10 00 01 00 02 04'))).toBe(13);
    expect(requestFrameLength(hex('01 2B'))).toBe('unknown');
  });
});

describe('line timing (Serial Line §2.5.1)', () => {
  it('counts start, data, parity and stop bits per character', () => {
    expect(bitsPerCharacter({ dataBits: 8, parity: 'even', stopBits: 1 })).toBe(11);
    expect(bitsPerCharacter({ dataBits: 8, parity: 'none', stopBits: 2 })).toBe(11);
    expect(bitsPerCharacter({ dataBits: 8, parity: 'none', stopBits: 1 })).toBe(10);
  });

  it('t3.5 is 3.5 character times up to 19,200 baud and a fixed 1.75 ms above', () => {
    expect(interFrameSilenceMs(9600, 11)).toBeCloseTo(4.0104, 3);
    expect(interFrameSilenceMs(9600, 10)).toBeCloseTo(3.6458, 3);
    expect(interFrameSilenceMs(19_200, 11)).toBeCloseTo(2.0052, 3);
    expect(interFrameSilenceMs(38_400, 11)).toBe(1.75);
    expect(interFrameSilenceMs(115_200, 10)).toBe(1.75);
  });
});
