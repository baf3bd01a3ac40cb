import { describe, expect, it } from 'vitest';
import { data, encodeData } from '../../../drivers/dlms/axdr.js';
import { globalKeyTransferMethod, globalKeyTransferParameter, readGlobalKeyTransfer } from '../../../drivers/dlms/cosem/security-setup.js';
import { parseObis } from '../../../drivers/dlms/cosem/obis.js';
import { encodeRequest } from '../../../drivers/dlms/xdlms-apdu.js';

/**
 * Security setup (class 64) global_key_transfer, byte for byte: the parameter is array of structure {key_id enum,
 * key_wrapped octet-string}; each key wrapped by RFC 3394 (its §4.1 vector: KEK 000102…0F, key 0011…FF).
 */
const KEK = Buffer.from('000102030405060708090A0B0C0D0E0F', 'hex');
const KEY = Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex');
const WRAPPED = '1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5'; // RFC 3394 §4.1

describe('global_key_transfer (class 64 method 2)', () => {
  it('encodes the GUEK (key_id 0) and the GAK (key_id 2), each RFC 3394-wrapped under the KEK', () => {
    const p = globalKeyTransferParameter(KEK, { encryptionKey: KEY, authenticationKey: KEY });
    expect(Buffer.from(encodeData(p)).toString('hex')).toBe(`0102` + `0202` + `1600` + `0918${WRAPPED}` + `0202` + `1602` + `0918${WRAPPED}`);
  });

  it('the ACTION-Request-Normal addresses class 64, 0-0:43.0.0.255, method 2', () => {
    const apdu = encodeRequest({ kind: 'action', invokeId: 1, method: globalKeyTransferMethod(parseObis('0-0:43.0.0.255')), parameter: data.array() });
    // c3 01 | invoke-id-and-priority c1 (high priority, confirmed, id 1) | class 0040 | 00002b0000ff | method 02 | parameter present 01 | array of 0
    expect(Buffer.from(apdu).toString('hex')).toBe('c301c1' + '0040' + '00002b0000ff' + '02' + '01' + '0100');
  });

  it('the meter side unwraps what the gateway wrapped; a wrong KEK or a wrong shape is refused without key bytes', () => {
    const enc = Buffer.alloc(16, 0x11);
    const auth = Buffer.alloc(16, 0x22);
    const p = globalKeyTransferParameter(KEK, { encryptionKey: enc, authenticationKey: auth });
    const got = readGlobalKeyTransfer(KEK, p);
    expect(got instanceof Map && [...got.entries()]).toEqual([[0, enc], [2, auth]]);
    expect(readGlobalKeyTransfer(Buffer.alloc(16, 0x01), p)).toEqual({ error: 'wrap' });
    expect(readGlobalKeyTransfer(KEK, data.array())).toEqual({ error: 'type' });
    expect(readGlobalKeyTransfer(KEK, data.array(data.structure(data.unsigned(0), data.octetString(Buffer.from(WRAPPED, 'hex')))))).toEqual({ error: 'type' });
    expect(readGlobalKeyTransfer(KEK, data.octetString(KEY))).toEqual({ error: 'type' });
  });
});
