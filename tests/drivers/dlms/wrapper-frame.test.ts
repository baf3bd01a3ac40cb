import { describe, expect, it } from 'vitest';
import { decodeWrapperFrame, encodeWrapperFrame, WrapperFrameReader, WRAPPER_HEADER_BYTES } from '../../../drivers/dlms/wrapper-frame.js';

const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * The Green Book's AARQ of the public client with the lowest security (a 31-byte APDU), sent by the public
 * client (wPort 0x0010) to the management logical device (wPort 0x0001): IEC 62056-47 §5.3 / Green Book 8
 * §7.3.3.2 give the header as version 0x0001, source wPort, destination wPort, length, each 16 bits big-endian.
 */
const AARQ = h('601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0');
const AARQ_WRAPPED = h('0001 0010 0001 001F') ;

describe('TCP wrapper frame (IEC 62056-47)', () => {
  it('encodes the 8-byte header before the APDU, byte for byte', () => {
    expect(AARQ.length).toBe(0x1f);
    const bytes = encodeWrapperFrame({ source: 0x10, destination: 0x01, apdu: AARQ });
    expect(toHex(bytes.subarray(0, WRAPPER_HEADER_BYTES))).toBe(toHex(AARQ_WRAPPED));
    expect(toHex(bytes.subarray(WRAPPER_HEADER_BYTES))).toBe(toHex(AARQ));
  });

  it('decodes an answer from the management logical device to the public client (an RLRE, 5 bytes)', () => {
    const f = decodeWrapperFrame(h('0001 0001 0010 0005 6303800100'));
    expect(f).toMatchObject({ source: 0x01, destination: 0x10 });
    expect(toHex(f.apdu)).toBe('6303800100');
  });

  it('decodes what it encodes, including wPorts above 255', () => {
    const f = decodeWrapperFrame(encodeWrapperFrame({ source: 0x0102, destination: 0xfffe, apdu: AARQ }));
    expect(f.source).toBe(0x0102);
    expect(f.destination).toBe(0xfffe);
    expect(toHex(f.apdu)).toBe(toHex(AARQ));
  });

  it('refuses a frame whose length field disagrees with the bytes, or whose version is not 1', () => {
    const good = encodeWrapperFrame({ source: 1, destination: 16, apdu: AARQ });
    expect(() => decodeWrapperFrame(good.subarray(0, good.length - 1))).toThrow(/length field says 31/);
    const v2 = good.slice();
    v2[1] = 2;
    expect(() => decodeWrapperFrame(v2)).toThrow(/version 2/);
    expect(() => encodeWrapperFrame({ source: 70_000, destination: 1, apdu: AARQ })).toThrow(/out of range/);
  });

  it('the reader reassembles frames split and joined across TCP chunks', () => {
    const a = encodeWrapperFrame({ source: 1, destination: 16, apdu: AARQ });
    const b = encodeWrapperFrame({ source: 1, destination: 16, apdu: h('C401C100') });
    const stream = new Uint8Array([...a, ...b]);
    const reader = new WrapperFrameReader();
    const frames: string[] = [];
    // byte by byte: header and body arrive in pieces
    for (let i = 0; i < 10; i++) for (const item of reader.push(stream.subarray(i, i + 1))) if (item.kind === 'frame') frames.push(toHex(item.frame.apdu));
    expect(frames).toEqual([]);
    expect(reader.pending).toBe(10);
    // the rest in one chunk: the end of one frame and all of the next
    for (const item of reader.push(stream.subarray(10))) if (item.kind === 'frame') frames.push(toHex(item.frame.apdu));
    expect(frames).toEqual([toHex(AARQ), 'c401c100']);
    expect(reader.pending).toBe(0);
  });

  it('a bad version is fatal: the reader says so once and holds nothing more', () => {
    const reader = new WrapperFrameReader();
    const items = reader.push(h('0002 0001 0010 0004 C401C100'));
    expect(items).toEqual([{ kind: 'fatal', reason: 'bad-version', detail: 'wrapper version 0x0002, expected 0x0001' }]);
    expect(reader.push(encodeWrapperFrame({ source: 1, destination: 16, apdu: AARQ }))).toEqual([]);
    expect(reader.pending).toBe(0);
  });

  it('a length above the limit is fatal as soon as the header is in (the body is never buffered)', () => {
    const reader = new WrapperFrameReader({ maxApduBytes: 100 });
    const ok = reader.push(encodeWrapperFrame({ source: 1, destination: 16, apdu: new Uint8Array(100) }));
    expect(ok.map((i) => i.kind)).toEqual(['frame']);
    const items = reader.push(h('0001 0001 0010 0065'));
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: 'fatal', reason: 'oversize' });
    expect(reader.pending).toBe(0);
  });
});
