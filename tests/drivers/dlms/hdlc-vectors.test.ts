import { describe, expect, it } from 'vitest';
import { crc16x25 } from '../../../drivers/dlms/hdlc-crc.js';
import { decodeFrame, encodeFrame, isFrame, type HdlcFrame } from '../../../drivers/dlms/hdlc-frame.js';
import { HdlcFrameReader } from '../../../drivers/dlms/hdlc-frame-reader.js';
import { decodeParameters, encodeParameters } from '../../../drivers/dlms/hdlc-parameters.js';
import { encodeServerAddress, parseServerAddress } from '../../../drivers/dlms/hdlc-address.js';
import { LLC_RESPONSE, stripLlc } from '../../../drivers/dlms/llc.js';
import { decodeResponse } from '../../../drivers/dlms/xdlms-apdu.js';

/**
 * Byte vectors for the HDLC layer (IEC 62056-46 §6.4). Where a published capture exists it is the reference
 * (`7E A0 07 03 21 93 0F 01 7E` is the classic SNRM of the standard's examples; the others are a public
 * capture of a meter session, server 1 / client 1); every other vector is worked out from the clause.
 */
const bytes = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');
const frame = (f: Partial<HdlcFrame> & Pick<HdlcFrame, 'control'>): HdlcFrame => ({ direction: 'toServer', server: { upper: 1 }, clientSap: 1, segmented: false, information: new Uint8Array(0), ...f });

describe('CRC-16/X.25 (HCS/FCS)', () => {
  it('has the catalogue check value 0x906E for "123456789"', () => {
    expect(crc16x25(Buffer.from('123456789'))).toBe(0x906e);
  });
});

describe('HDLC frames', () => {
  it('SNRM, public client 16 to server 1, no information field: 7E A0 07 03 21 93 0F 01 7E', () => {
    const snrm = encodeFrame(frame({ clientSap: 16, control: { kind: 'SNRM', pf: true } }));
    expect(hex(snrm)).toBe('7E A0 07 03 21 93 0F 01 7E');
  });

  it('SNRM from client 1 and DISC from client 32 match the published captures', () => {
    expect(hex(encodeFrame(frame({ control: { kind: 'SNRM', pf: true } })))).toBe('7E A0 07 03 03 93 8C 11 7E');
    expect(hex(encodeFrame(frame({ clientSap: 32, control: { kind: 'DISC', pf: true } })))).toBe('7E A0 07 03 41 53 56 A2 7E');
  });

  it('UA with the negotiated parameters (128 bytes, window 1): format, HCS and FCS byte for byte', () => {
    const params = encodeParameters({ maxInfoTx: 128, maxInfoRx: 128, windowTx: 1, windowRx: 1 });
    expect(hex(params)).toBe('81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01');
    const ua = encodeFrame(frame({ direction: 'toClient', control: { kind: 'UA', pf: true }, information: params }));
    expect(hex(ua)).toBe('7E A0 1E 03 03 73 40 CC 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E');
  });

  it('decodes an SNRM whose parameters use two-byte lengths (published capture)', () => {
    const f = decodeFrame(bytes('7E A0 20 03 03 93 FE C9 81 80 14 05 02 00 80 06 02 00 80 07 04 00 00 00 01 08 04 00 00 00 01 CE 6A 7E'), 'toServer');
    expect(isFrame(f)).toBe(true);
    if (!isFrame(f)) return;
    expect(f.control).toEqual({ kind: 'SNRM', pf: true });
    expect(f.server).toEqual({ upper: 1 });
    expect(f.clientSap).toBe(1);
    expect(decodeParameters(f.information)).toEqual({ maxInfoTx: 128, maxInfoRx: 128, windowTx: 1, windowRx: 1 });
  });

  it('RR and I-frame control fields carry N(R), N(S) and P/F (0x31 = RR nr=1 P; 0x32 = I ns=1 nr=1 P)', () => {
    expect(hex(encodeFrame(frame({ control: { kind: 'RR', nr: 1, pf: true } })))).toBe('7E A0 07 03 03 31 94 97 7E');
    const get = decodeFrame(bytes('7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 98 7E'), 'toServer');
    expect(isFrame(get) && get.control).toEqual({ kind: 'I', ns: 1, nr: 1, pf: true });
  });

  it('server addresses: 1 byte (upper only), 2 bytes (upper/lower ≤ 127), 4 bytes (a 4-byte address from a capture)', () => {
    expect(hex(encodeServerAddress({ upper: 1 }))).toBe('03');
    expect(hex(encodeServerAddress(parseServerAddress('17', 1)))).toBe('02 23');
    expect(hex(encodeServerAddress(parseServerAddress('1/5185', 1)))).toBe('00 02 50 83');
    const f = decodeFrame(bytes('7E A0 21 03 00 02 50 83 73 67 53 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E'), 'toClient');
    expect(isFrame(f) && f.server).toEqual({ upper: 1, lower: 5185 });
    expect(isFrame(f) && f.control.kind).toBe('UA');
  });

  it('a frame with a bad FCS is rejected, and one with a bad HCS too', () => {
    const good = bytes('7E A0 1E 03 03 73 40 CC 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E');
    const badFcs = good.slice();
    badFcs[badFcs.length - 2] = badFcs[badFcs.length - 2]! ^ 0x01;
    expect(decodeFrame(badFcs, 'toClient')).toEqual({ error: 'fcs' });
    const badHcs = good.slice();
    badHcs[6] = badHcs[6]! ^ 0x01; // HCS byte; the FCS is recomputed so only the HCS is wrong
    const c = crc16x25(badHcs, 1, badHcs.length - 3);
    badHcs[badHcs.length - 3] = c & 0xff;
    badHcs[badHcs.length - 2] = c >> 8;
    expect(decodeFrame(badHcs, 'toClient')).toEqual({ error: 'hcs' });
  });

  it('the reader cuts frames out of a stream split anywhere, and reports noise', () => {
    const a = bytes('7E A0 07 03 03 31 94 97 7E');
    const b = bytes('7E A0 07 03 03 51 92 F4 7E');
    const stream = Buffer.concat([Buffer.from([0xff, 0x00]), a, b]);
    const reader = new HdlcFrameReader();
    const items = [...reader.push(stream.subarray(0, 5)), ...reader.push(stream.subarray(5, 13)), ...reader.push(stream.subarray(13))];
    expect(items.map((i) => `${i.kind}:${hex(i.bytes)}`)).toEqual(['noise:FF 00', `frame:${hex(a)}`, `frame:${hex(b)}`]);
  });

  it('a GET response segmented across two HDLC frames (segmentation bit in the format field) reassembles to GET-Response-With-Datablock', () => {
    // Published capture: a profile-generic buffer answered in a data block that spans two I-frames.
    const seg1 = decodeFrame(
      bytes(`7E A8 89 03 03 32 03 7C E6 E7 00 C4 02 8E 00 00 00 00 01 00 81 E3 01 19 02 02 09 0C 07 E4 04 0E 02 09 1E 00 FF 00 B4 00 15 00 00 00 00 00 00 31 D2 02 02 09 0C 07 E4 04 0E 02 0A 00 00 FF 00 B4 00 15 00 00 00 00 00 00 31 EE 02 02 09 0C 07 E4 04 0E 02 0A 1E 00 FF 00 B4 00 15 00 00 00 00 00 00 32 07 02 02 09 0C 07 E4 04 0E 02 0B 00 00 FF 00 B4 00 15 00 00 00 00 00 00 32 22 02 02 09 0C 07 E4 04 0E 02 0B 1E 00 97 20 7E`),
      'toClient',
    );
    const seg2 = decodeFrame(
      bytes(`7E A0 7A 03 03 34 F3 11 FF 00 B4 00 15 00 00 00 00 00 00 32 39 02 02 09 0C 07 E4 04 0E 02 0C 00 00 FF 00 B4 00 15 00 00 00 00 00 00 32 45 02 02 09 0C 07 E4 04 0E 02 0C 1E 00 FF 00 B4 00 15 00 00 00 00 00 00 32 5A 02 02 09 0C 07 E4 04 0E 02 0D 00 00 FF 00 B4 00 15 00 00 00 00 00 00 32 74 02 02 09 0C 07 E4 04 0E 02 0D 1E 00 FF 00 B4 00 15 00 00 00 00 00 00 32 87 87 51 7E`),
      'toClient',
    );
    expect(isFrame(seg1) && isFrame(seg2)).toBe(true);
    if (!isFrame(seg1) || !isFrame(seg2)) return;
    expect(seg1.segmented).toBe(true); // format byte A8: type 3 with the S bit
    expect(seg1.control).toEqual({ kind: 'I', ns: 1, nr: 1, pf: true });
    expect(seg2.segmented).toBe(false);
    expect(seg2.control).toEqual({ kind: 'I', ns: 2, nr: 1, pf: true });
    const first = stripLlc(LLC_RESPONSE, seg1.information)!;
    // C4 02 8E: GET-Response-With-Datablock, invoke-id 14; last-block FALSE; block 1; raw-data of 0x1E3 bytes follows.
    expect(hex(first.subarray(0, 12))).toBe('C4 02 8E 00 00 00 00 01 00 81 E3 01');
  });

  it('a GET response split into two I-frames with the segmentation bit reassembles byte for byte', () => {
    const clock = bytes('09 0C 07 E9 0B 19 02 0E 1E 00 00 00 00 00');
    const apdu = bytes('C4 01 C1 00').length + clock.length; // GET-Response-Normal, invoke-id 1, data
    const info = Buffer.concat([LLC_RESPONSE, bytes('C4 01 C1 00'), clock]);
    expect(info.length).toBe(3 + apdu);
    const server = { upper: 1, lower: 17 };
    const f1 = encodeFrame({ direction: 'toClient', server, clientSap: 1, control: { kind: 'I', ns: 0, nr: 1, pf: true }, segmented: true, information: info.subarray(0, 10) });
    const f2 = encodeFrame({ direction: 'toClient', server, clientSap: 1, control: { kind: 'I', ns: 1, nr: 1, pf: true }, segmented: false, information: info.subarray(10) });
    // Length = format 2 + client address 1 + server address 2 + control 1 + HCS 2 + information + FCS 2:
    // A8 14 (S bit, 20 = 10 info bytes), then A0 15 (last segment, 21 = 11 info bytes). Control 30 = I ns0 nr1 F; 32 = I ns1 nr1 F.
    expect(hex(f1.subarray(0, 7))).toBe('7E A8 14 03 02 23 30');
    expect(hex(f2.subarray(0, 7))).toBe('7E A0 15 03 02 23 32');
    const reader = new HdlcFrameReader();
    const got = reader.push(Buffer.concat([f1, f2])).map((i) => decodeFrame(i.bytes, 'toClient'));
    const frames = got.filter(isFrame);
    expect(frames.map((f) => f.segmented)).toEqual([true, false]);
    const res = decodeResponse(stripLlc(LLC_RESPONSE, Buffer.concat(frames.map((f) => f.information)))!);
    expect(res.kind === 'get' && 'data' in res.result && res.result.data.type === 'octet-string' && hex(res.result.data.value)).toBe(hex(clock.subarray(2)));
  });
});
