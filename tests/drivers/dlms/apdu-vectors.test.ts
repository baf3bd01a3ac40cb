import { describe, expect, it } from 'vitest';
import { decodeAare, decodeAarq, encodeAare, encodeAarq, encodeRlrq, AssociationResult, CLIENT_CONFORMANCE } from '../../../drivers/dlms/acse-apdu.js';
import { data, decodeData, encodeData } from '../../../drivers/dlms/axdr.js';
import { DISCONNECT_CONTROL, METHOD_PARAMETER, relayFromControlState, remoteReconnectOutcome, ControlState } from '../../../drivers/dlms/cosem/disconnect-control.js';
import { encodeScalerUnit, readScalerUnit, scaledValue, Unit } from '../../../drivers/dlms/cosem/register.js';
import { decodeDateTime, encodeDateTime } from '../../../drivers/dlms/cosem/clock.js';
import { decodeFrame, encodeFrame, isFrame } from '../../../drivers/dlms/hdlc-frame.js';
import { LLC_REQUEST, LLC_RESPONSE, stripLlc, withLlc } from '../../../drivers/dlms/llc.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, AccessResult, describeResult } from '../../../drivers/dlms/xdlms-apdu.js';

/**
 * APDU vectors (IEC 62056-5-3): the lowest-security AARQ and the AARE are the standard's well-known
 * examples; the LLS AARQ and its AARE frames are a public meter capture (client 1, server 1, password
 * "xRwPbExF"); the Disconnect control GET and ACTION vectors are worked out from the APDU structure.
 */
const bytes = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');

describe('AARQ / AARE', () => {
  it('AARQ at lowest security (LN referencing, no ciphering): the standard example', () => {
    const aarq = encodeAarq({ mechanism: 'lowest', conformance: CLIENT_CONFORMANCE, maxPduSize: 0xffff });
    expect(hex(aarq)).toBe('60 1D A1 09 06 07 60 85 74 05 08 01 01 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F FF FF');
  });

  it('AARQ with a low-level-security password, in its I-frame with the LLC header: the published capture byte for byte', () => {
    const aarq = encodeAarq({ mechanism: 'low', password: Buffer.from('xRwPbExF', 'latin1'), conformance: CLIENT_CONFORMANCE, maxPduSize: 0x0100 });
    expect(hex(aarq)).toBe(
      '60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 01 AC 0A 80 08 78 52 77 50 62 45 78 46 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 01 00',
    );
    const frame = encodeFrame({ direction: 'toServer', server: { upper: 1 }, clientSap: 1, control: { kind: 'I', ns: 0, nr: 0, pf: true }, segmented: false, information: withLlc(LLC_REQUEST, aarq) });
    expect(hex(frame)).toBe(
      '7E A0 44 03 03 10 65 94 E6 E6 00 60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 01 AC 0A 80 08 78 52 77 50 62 45 78 46 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 01 00 AF DF 7E',
    );
    const back = decodeAarq(aarq);
    expect(back).toMatchObject({ applicationContext: 1, mechanism: 'low', initiate: { conformance: CLIENT_CONFORMANCE, maxPduSize: 256 } });
    expect(Buffer.from(back.password!).toString()).toBe('xRwPbExF');
  });

  it('its AARE (accepted, conformance 00 18 1D, server PDU 384) decodes, and re-encodes to the same frame', () => {
    const frame = decodeFrame(bytes('7E A0 37 03 03 30 EF CA E6 E7 00 61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 18 1D 01 80 00 07 A1 DC 7E'), 'toClient');
    expect(isFrame(frame)).toBe(true);
    if (!isFrame(frame)) return;
    const apdu = stripLlc(LLC_RESPONSE, frame.information)!;
    const aare = decodeAare(apdu);
    expect(aare).toEqual({ result: AssociationResult.accepted, diagnostic: 0, diagnosticSource: 'user', initiate: { conformance: 0x00181d, maxPduSize: 0x0180, dlmsVersion: 6 } });
    expect(hex(encodeAare(aare))).toBe(hex(apdu));
  });

  it('an AARE rejecting a wrong password: rejected-permanent (1), acse-service-user authentication-failure (13)', () => {
    const rejected = encodeAare({ result: AssociationResult.rejectedPermanent, diagnostic: 13, diagnosticSource: 'user' });
    expect(hex(rejected)).toBe('61 17 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 01 A3 05 A1 03 02 01 0D');
    expect(decodeAare(rejected)).toEqual({ result: 1, diagnostic: 13, diagnosticSource: 'user' });
  });

  it('RLRQ with reason normal', () => {
    expect(hex(encodeRlrq())).toBe('62 03 80 01 00');
  });
});

describe('GET, SET and ACTION on Disconnect control (class 70, 0-0:96.3.10.255)', () => {
  it('GET-Request-Normal of control_state (attribute 3) and its GET-Response-Normal enum(2)', () => {
    const req = encodeRequest({ kind: 'get', invokeId: 1, attribute: DISCONNECT_CONTROL.controlState });
    // C0 get-request, 01 normal, C1 invoke-id 1 high priority confirmed, 0046 class 70, 000060030AFF, 03, 00 no access selection
    expect(hex(req)).toBe('C0 01 C1 00 46 00 00 60 03 0A FF 03 00');
    expect(decodeRequest(req)).toEqual({ kind: 'get', invokeId: 1, attribute: { classId: 70, logicalName: [0, 0, 96, 3, 10, 255], attribute: 3 } });
    const res = bytes('C4 01 C1 00 16 02'); // C4 get-response, normal, invoke-id 1, 00 data, 16 enum, 02 ready_for_reconnection
    expect(hex(encodeResponse({ kind: 'get', invokeId: 1, result: { data: data.enum(ControlState.ReadyForReconnection) } }))).toBe(hex(res));
    const decoded = decodeResponse(res);
    expect(decoded).toEqual({ kind: 'get', invokeId: 1, result: { data: { type: 'enum', value: 2 } } });
    expect(relayFromControlState(ControlState.ReadyForReconnection)).toBe('armed');
  });

  it('a GET answered with a Data-Access-Result: object-undefined (4)', () => {
    expect(decodeResponse(bytes('C4 01 C1 01 04'))).toEqual({ kind: 'get', invokeId: 1, result: { error: AccessResult.objectUndefined } });
    expect(describeResult(4)).toMatch(/^object-undefined/);
    expect(describeResult(3)).toMatch(/access denied/);
  });

  it('ACTION-Request remote_disconnect (method 1, integer(0)) and its ACTION-Response success', () => {
    const req = encodeRequest({ kind: 'action', invokeId: 2, method: DISCONNECT_CONTROL.remoteDisconnect, parameter: METHOD_PARAMETER });
    // C3 action-request, 01 normal, C2 invoke-id 2, class 70, LN, 01 method, 01 parameters present, 0F 00 integer(0)
    expect(hex(req)).toBe('C3 01 C2 00 46 00 00 60 03 0A FF 01 01 0F 00');
    expect(decodeRequest(req)).toMatchObject({ kind: 'action', invokeId: 2, method: { classId: 70, method: 1 }, parameter: { type: 'integer', value: 0 } });
    const ok = encodeResponse({ kind: 'action', invokeId: 2, result: AccessResult.success });
    expect(hex(ok)).toBe('C7 01 C2 00 00'); // C7 action-response, normal, invoke-id 2, success, no return parameters
    expect(decodeResponse(ok)).toEqual({ kind: 'action', invokeId: 2, result: 0 });
    expect(decodeResponse(bytes('C7 01 C2 02 00'))).toEqual({ kind: 'action', invokeId: 2, result: AccessResult.temporaryFailure });
  });

  it('remote_reconnect is method 2; the control mode decides transition a (connected) or d (armed)', () => {
    expect(hex(encodeRequest({ kind: 'action', invokeId: 3, method: DISCONNECT_CONTROL.remoteReconnect, parameter: METHOD_PARAMETER }))).toBe('C3 01 C3 00 46 00 00 60 03 0A FF 02 01 0F 00');
    expect([1, 2, 3, 4, 5, 6].map((m) => remoteReconnectOutcome(m as 1))).toEqual(['armed', 'connected', 'armed', 'connected', 'armed', 'armed']);
    expect(remoteReconnectOutcome(0)).toBeUndefined();
  });

  it('SET-Request-Normal and SET-Response, GET-Request-Next and a data block', () => {
    const set = encodeRequest({ kind: 'set', invokeId: 4, attribute: DISCONNECT_CONTROL.controlMode, value: data.enum(1) });
    expect(hex(set)).toBe('C1 01 C4 00 46 00 00 60 03 0A FF 04 00 16 01');
    expect(decodeResponse(bytes('C5 01 C4 03'))).toEqual({ kind: 'set', invokeId: 4, result: AccessResult.readWriteDenied });
    expect(hex(encodeRequest({ kind: 'get-next', invokeId: 5, block: 1 }))).toBe('C0 02 C5 00 00 00 01');
    const block = encodeResponse({ kind: 'get-block', invokeId: 5, lastBlock: true, block: 2, result: { raw: bytes('0A 0B') } });
    expect(hex(block)).toBe('C4 02 C5 01 00 00 00 02 00 02 0A 0B');
    expect(decodeResponse(block)).toEqual({ kind: 'get-block', invokeId: 5, lastBlock: true, block: 2, result: { raw: bytes('0A 0B') } });
  });
});

describe('A-XDR data and the register / clock accessors', () => {
  it('encodes and decodes the types the objects need', () => {
    const cases: Array<[ReturnType<typeof data.boolean>, string]> = [
      [data.boolean(true), '03 FF'],
      [data.integer(-1), '0F FF'],
      [data.long(-2), '10 FF FE'],
      [data.unsigned(200), '11 C8'],
      [data.longUnsigned(2304), '12 09 00'],
      [data.doubleLong(-5), '05 FF FF FF FB'],
      [data.doubleLongUnsigned(123456), '06 00 01 E2 40'],
      [data.enum(30), '16 1E'],
      [data.octetString(bytes('00 00 60 03 0A FF')), '09 06 00 00 60 03 0A FF'],
      [data.visibleString('E570'), '0A 04 45 35 37 30'],
      [data.structure(data.integer(-1), data.enum(35)), '02 02 0F FF 16 23'],
      [data.array(data.unsigned(1), data.unsigned(2)), '01 02 11 01 11 02'],
    ];
    for (const [d, h] of cases) {
      expect(hex(encodeData(d))).toBe(h);
      expect(decodeData(bytes(h))).toEqual(d);
    }
    expect(hex(encodeData(data.octetString(new Uint8Array(200)))).slice(0, 8)).toBe('09 81 C8');
  });

  it('scaler_unit {integer -1, enum V} turns 2304 into 230.4 V; a wrong unit is reported', () => {
    const su = readScalerUnit(encodeScalerUnit({ scaler: -1, unit: Unit.V }));
    expect(su).toEqual({ scaler: -1, unit: 35 });
    if (typeof su === 'string') return;
    expect(scaledValue(data.longUnsigned(2304), su, Unit.V)).toBe(230.4);
    expect(scaledValue(data.longUnsigned(2304), su, Unit.Wh)).toMatch(/unit 35/);
  });

  it('the clock date-time is 12 bytes and round-trips', () => {
    const t = Date.UTC(2025, 10, 25, 14, 30, 0, 0);
    const dt = encodeDateTime(t);
    expect(hex(dt)).toBe('07 E9 0B 19 02 0E 1E 00 00 00 00 00'); // 2025-11-25, Tuesday (2), 14:30:00.00, deviation 0, status 0
    expect(decodeDateTime(dt)).toBe(t);
  });
});
