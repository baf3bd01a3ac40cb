import { describe, expect, it } from 'vitest';
import { gcmDecrypt, gcmEncrypt, protect, unprotect, DecipherError, TAG_LENGTH } from '../../../drivers/dlms/security/suite0-cipher.js';
import { decodeSecurityControl, encodeSecurityControl, securityControlFor } from '../../../drivers/dlms/security/security-control.js';
import { hlsGmacResponse, verifyHlsGmac } from '../../../drivers/dlms/security/hls-gmac.js';
import { unwrapKey, wrapKey, KeyWrapError } from '../../../drivers/dlms/security/key-wrap.js';
import { CIPHERED_TAG, cipheredTagFor, decodeCipheredApdu, encodeCipheredApdu, encodeGeneralCiphering, plainTagOf } from '../../../drivers/dlms/security/ciphered-apdu.js';
import { decodeResponse, encodeResponse, ServiceError, StateError } from '../../../drivers/dlms/xdlms-apdu.js';

const h = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const hx = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

// DLMS UA Green Book security suite 0 worked examples (Table 40, Table 43 and the glo-initiate example).
const SYSTEM_TITLE = h('4D4D4D0000BC614E');
const KEYS = { encryptionKey: h('000102030405060708090A0B0C0D0E0F'), authenticationKey: h('D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF') };
const IC = 0x01234567;
/** GET-Request-Normal, clock (class 8, 0-0:1.0.0.255) attribute 2. */
const GET_CLOCK = h('C0010000080000010000FF0200');

describe('security control byte (Green Book §9.2.7.2.3)', () => {
  it('encodes suite id, A, E, key set and compression bits', () => {
    expect(encodeSecurityControl(securityControlFor('authenticated')!)).toBe(0x10);
    expect(encodeSecurityControl(securityControlFor('encrypted')!)).toBe(0x20);
    expect(encodeSecurityControl(securityControlFor('authenticated-encrypted')!)).toBe(0x30);
    expect(securityControlFor('none')).toBeUndefined();
    expect(decodeSecurityControl(0xf1)).toEqual({ suite: 1, authenticated: true, encrypted: true, broadcastKey: true, compressed: true });
  });
});

describe('suite 0 ciphering: Green Book glo-get-request example (Table 40)', () => {
  const cases = [
    { policy: 'authenticated' as const, apdu: 'C81E1001234567C0010000080000010000FF020006725D910F9221D263877516' },
    { policy: 'encrypted' as const, apdu: 'C8122001234567411312FF935A47566827C467BC' },
    { policy: 'authenticated-encrypted' as const, apdu: 'C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B' },
  ];
  for (const c of cases) {
    it(`${c.policy}: byte-exact glo-get-request, and back`, () => {
      const content = protect({ ...KEYS, securityControl: securityControlFor(c.policy)!, systemTitle: SYSTEM_TITLE, invocationCounter: IC, plaintext: GET_CLOCK });
      const apdu = encodeCipheredApdu(cipheredTagFor(0xc0, 'global')!, content);
      expect(hx(apdu)).toBe(c.apdu);
      const parsed = decodeCipheredApdu(h(c.apdu));
      expect(parsed.tag).toBe(CIPHERED_TAG.gloGetRequest);
      const back = unprotect(parsed.content, SYSTEM_TITLE, KEYS);
      expect(hx(back.plaintext)).toBe(hx(GET_CLOCK));
      expect(back.invocationCounter).toBe(IC);
    });
  }

  it('a flipped bit in the ciphertext, the tag or the header fails the tag check', () => {
    const good = h(cases[2]!.apdu);
    for (const at of [8, good.length - 1, 3 /* IC */]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      expect(() => unprotect(decodeCipheredApdu(bad).content, SYSTEM_TITLE, KEYS)).toThrow(DecipherError);
    }
    const otherAk = { ...KEYS, authenticationKey: h('D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDE') };
    expect(() => unprotect(decodeCipheredApdu(good).content, SYSTEM_TITLE, otherAk)).toThrow(DecipherError);
    expect(() => unprotect(decodeCipheredApdu(good).content, h('4D4D4D0000BC614F'), KEYS)).toThrow(DecipherError);
  });

  it('the error message never carries key bytes', () => {
    try {
      unprotect(decodeCipheredApdu(h(cases[2]!.apdu.slice(0, -2) + '00')).content, SYSTEM_TITLE, KEYS);
      expect.unreachable();
    } catch (e) {
      const text = `${(e as Error).message}`.toUpperCase();
      expect(text).not.toContain('000102030405060708090A0B0C0D0E0F');
      expect(text).not.toContain('D0D1D2D3');
    }
  });
});

describe('general-glo-ciphering (0xDB): the Green Book glo-get-request example under the general header', () => {
  // No general-glo-ciphering example with these keys is published to check against; the protected content is the
  // same SC ‖ IC ‖ ciphertext ‖ tag as the glo-get-request example (the system title goes into the IV, not the AAD),
  // so the APDU is DB ‖ 08 ‖ system title ‖ 1E ‖ that content.
  const content = '3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B';
  const expected = `DB08${hx(SYSTEM_TITLE)}1E${content}`;
  it('ciphers to DB 08 4D4D4D0000BC614E 1E 30 01234567 …, and decodes back to the system title and GET', () => {
    const c = protect({ ...KEYS, securityControl: securityControlFor('authenticated-encrypted')!, systemTitle: SYSTEM_TITLE, invocationCounter: IC, plaintext: GET_CLOCK });
    expect(hx(encodeGeneralCiphering('global', SYSTEM_TITLE, c))).toBe(expected);
    expect(expected).toBe('DB084D4D4D0000BC614E1E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B');
    const parsed = decodeCipheredApdu(h(expected));
    expect(parsed.tag).toBe(CIPHERED_TAG.generalGloCiphering);
    expect(hx(parsed.systemTitle!)).toBe(hx(SYSTEM_TITLE));
    expect(hx(unprotect(parsed.content, parsed.systemTitle!, KEYS).plaintext)).toBe(hx(GET_CLOCK));
  });
  it('general-ded-ciphering is the same with tag 0xDC; a title of the wrong length is refused both ways', () => {
    const c = protect({ ...KEYS, securityControl: securityControlFor('authenticated-encrypted')!, systemTitle: SYSTEM_TITLE, invocationCounter: IC, plaintext: GET_CLOCK });
    expect(hx(encodeGeneralCiphering('dedicated', SYSTEM_TITLE, c))).toBe(`DC${expected.slice(2)}`);
    expect(() => encodeGeneralCiphering('global', SYSTEM_TITLE.subarray(0, 7), c)).toThrow(RangeError);
    expect(() => decodeCipheredApdu(h(`DB07${hx(SYSTEM_TITLE.subarray(0, 7))}1E${content}`))).toThrow(/system-title of 7 bytes/);
  });
  it('deciphered under another system title (the IV) it fails the tag check', () => {
    expect(() => unprotect(decodeCipheredApdu(h(expected)).content, h('4D4D4D0000BC614F'), KEYS)).toThrow(DecipherError);
  });
});

describe('suite 0: Green Book glo-initiate-request example (dedicated key 00112233…FF in the InitiateRequest)', () => {
  const initiateRequest = h('01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0');
  const expected = '21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855';
  it('ciphers to the published glo-initiate-request and deciphers back', () => {
    const content = protect({ ...KEYS, securityControl: securityControlFor('authenticated-encrypted')!, systemTitle: SYSTEM_TITLE, invocationCounter: IC, plaintext: initiateRequest });
    expect(hx(encodeCipheredApdu(CIPHERED_TAG.gloInitiateRequest, content))).toBe(expected);
    expect(hx(unprotect(decodeCipheredApdu(h(expected)).content, SYSTEM_TITLE, KEYS).plaintext)).toBe(hx(initiateRequest));
  });
});

describe('HLS-GMAC, authentication mechanism 5 (Green Book Table 43)', () => {
  const CLIENT_ST = h('4D4D4D0000000001');
  const CTOS = Buffer.from('K56iVagY', 'latin1');
  const STOC = Buffer.from('P6wRJ21F', 'latin1');
  it('pass 3: the client answers StoC with f(StoC) = 10 00000001 1A52FE7DD3E72748973C1E28', () => {
    expect(hx(CTOS)).toBe('4B35366956616759');
    expect(hx(hlsGmacResponse(KEYS, CLIENT_ST, 1, STOC))).toBe('10000000011A52FE7DD3E72748973C1E28');
  });
  it('pass 4: the server answers CtoS with f(CtoS) = 10 01234567 FE1466AFB3DBCD4F9389E2B7', () => {
    expect(hx(hlsGmacResponse(KEYS, SYSTEM_TITLE, IC, CTOS))).toBe('1001234567FE1466AFB3DBCD4F9389E2B7');
  });
  it('verifies a right answer and refuses a wrong key, system title or challenge', () => {
    const f = h('1001234567FE1466AFB3DBCD4F9389E2B7');
    expect(verifyHlsGmac(KEYS, SYSTEM_TITLE, CTOS, f)).toBe(IC);
    expect(verifyHlsGmac({ ...KEYS, encryptionKey: h('000102030405060708090A0B0C0D0E0E') }, SYSTEM_TITLE, CTOS, f)).toBeUndefined();
    expect(verifyHlsGmac(KEYS, CLIENT_ST, CTOS, f)).toBeUndefined();
    expect(verifyHlsGmac(KEYS, SYSTEM_TITLE, STOC, f)).toBeUndefined();
    expect(verifyHlsGmac(KEYS, SYSTEM_TITLE, CTOS, f.subarray(0, 10))).toBeUndefined();
  });
});

describe('AES-GCM-128 itself: NIST SP 800-38D / gcmEncryptExtIV128 vectors, tags truncated to 96 bits', () => {
  // The GCM specification's test cases 2–4 (also in NIST's gcmEncryptExtIV128.rsp), tag length 96 = first 12 bytes.
  const vectors = [
    { key: '00000000000000000000000000000000', iv: '000000000000000000000000', aad: '', pt: '', ct: '', tag: '58e2fccefa7e3061367f1d57a4e7455a' },
    { key: '00000000000000000000000000000000', iv: '000000000000000000000000', aad: '', pt: '00000000000000000000000000000000', ct: '0388dace60b6a392f328c2b971b2fe78', tag: 'ab6e47d42cec13bdf53a67b21257bddf' },
    {
      key: 'feffe9928665731c6d6a8f9467308308',
      iv: 'cafebabefacedbaddecaf888',
      aad: '',
      pt: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255',
      ct: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985',
      tag: '4d5c2af327cd64a62cf35abd2ba6fab4',
    },
    {
      key: 'feffe9928665731c6d6a8f9467308308',
      iv: 'cafebabefacedbaddecaf888',
      aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
      pt: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      ct: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
      tag: '5bc94fbc3221a5db94fae95ae7121a47',
    },
  ];
  vectors.forEach((v, i) => {
    it(`vector ${i + 1}: ciphertext and 96-bit tag, and decryption checks the tag`, () => {
      const out = gcmEncrypt(h(v.key), h(v.iv), h(v.aad), h(v.pt), TAG_LENGTH);
      expect(out.ciphertext.toString('hex')).toBe(v.ct);
      expect(out.tag.toString('hex')).toBe(v.tag.slice(0, 24));
      expect(gcmDecrypt(h(v.key), h(v.iv), h(v.aad), h(v.ct), h(v.tag.slice(0, 24))).toString('hex')).toBe(v.pt);
      const badTag = h(v.tag.slice(0, 24));
      badTag[0]! ^= 0x80;
      expect(() => gcmDecrypt(h(v.key), h(v.iv), h(v.aad), h(v.ct), badTag)).toThrow(DecipherError);
    });
  });
});

describe('AES key wrap (RFC 3394 §4.1: 128 bits of key data with a 128-bit KEK)', () => {
  const kek = h('000102030405060708090A0B0C0D0E0F');
  const keyData = h('00112233445566778899AABBCCDDEEFF');
  it('wraps to 1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5 and unwraps back', () => {
    const wrapped = wrapKey(kek, keyData);
    expect(hx(wrapped)).toBe('1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5');
    expect(hx(unwrapKey(kek, wrapped))).toBe(hx(keyData));
  });
  it('a wrapped key under another KEK fails the integrity check', () => {
    expect(() => unwrapKey(h('000102030405060708090A0B0C0D0E0E'), h('1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5'))).toThrow(KeyWrapError);
  });
});

describe('ciphered APDU codecs (IEC 62056-5-3 xDLMS-APDU tags)', () => {
  it('maps plain tags to glo-/ded- tags and back', () => {
    expect([0xc0, 0xc1, 0xc3, 0xc4, 0xc5, 0xc7].map((t) => cipheredTagFor(t, 'global'))).toEqual([0xc8, 0xc9, 0xcb, 0xcc, 0xcd, 0xcf]);
    expect([0xc0, 0xc1, 0xc3, 0xc4, 0xc5, 0xc7].map((t) => cipheredTagFor(t, 'dedicated'))).toEqual([0xd0, 0xd1, 0xd3, 0xd4, 0xd5, 0xd7]);
    expect(cipheredTagFor(0x01, 'global')).toBe(0x21);
    expect(cipheredTagFor(0x08, 'global')).toBe(0x28);
    expect(plainTagOf(0xd7)).toEqual({ plainTag: 0xc7, key: 'dedicated' });
    expect(plainTagOf(0xc0)).toBeUndefined();
  });
  it('general-glo-ciphering carries the system title in the APDU', () => {
    const content = h('3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B');
    const apdu = encodeGeneralCiphering('global', SYSTEM_TITLE, content);
    expect(hx(apdu)).toBe('DB084D4D4D0000BC614E1E' + hx(content));
    const back = decodeCipheredApdu(apdu);
    expect(hx(back.systemTitle!)).toBe('4D4D4D0000BC614E');
    expect(hx(unprotect(back.content, back.systemTitle!, KEYS).plaintext)).toBe(hx(GET_CLOCK));
    expect(encodeGeneralCiphering('dedicated', SYSTEM_TITLE, content)[0]).toBe(0xdc);
  });
  it('exception-response invocation-counter-error carries the counter the meter expects; deciphering-error has none', () => {
    const apdu = encodeResponse({ kind: 'exception', stateError: StateError.serviceNotAllowed, serviceError: ServiceError.invocationCounterError, invocationCounter: 0x01234568 });
    expect(hx(apdu)).toBe('D8010601234568');
    expect(decodeResponse(apdu)).toEqual({ kind: 'exception', stateError: 1, serviceError: 6, invocationCounter: 0x01234568 });
    expect(hx(encodeResponse({ kind: 'exception', stateError: 1, serviceError: ServiceError.decipheringError }))).toBe('D80105');
  });
  it('a truncated ciphered APDU is refused with a clear error', () => {
    expect(() => decodeCipheredApdu(h('C81E3001234567'))).toThrow(/claims 30 bytes/);
  });
});

describe('AARQ / AARE for HLS-GMAC with ciphering (IEC 62056-5-3 §8, Green Book §9.4.2)', () => {
  it('AARQ: context 3, calling-AP-title, mechanism 5, CtoS and the glo-initiate-request; decoded back on the server side', async () => {
    const { encodeAarq, decodeAarq, CLIENT_CONFORMANCE } = await import('../../../drivers/dlms/acse-apdu.js');
    const glo = h('21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855');
    const aarq = encodeAarq({ applicationContext: 3, mechanism: 'hls-gmac', challenge: Buffer.from('K56iVagY', 'latin1'), callingApTitle: SYSTEM_TITLE, conformance: CLIENT_CONFORMANCE, maxPduSize: 0x4b0, userInformation: glo });
    expect(hx(aarq)).toBe(
      '6066A109060760857405080103A60A04084D4D4D0000BC614E8A0207808B0760857405080205AC0A80084B35366956616759BE34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855',
    );
    const back = decodeAarq(aarq);
    expect(back).toMatchObject({ applicationContext: 3, mechanism: 'hls-gmac' });
    expect(hx(back.callingApTitle!)).toBe('4D4D4D0000BC614E');
    expect(hx(back.challenge!)).toBe('4B35366956616759');
    expect(hx(back.userInformation)).toBe(hx(glo));
  });
  it('AARE: accepted with authentication-required (14), responding-AP-title, mechanism 5, StoC, glo-initiate-response', async () => {
    const { encodeAare, decodeAare } = await import('../../../drivers/dlms/acse-apdu.js');
    const info = h('281F3001234568' + '00'.repeat(14) + '00'.repeat(12));
    const aare = encodeAare({ applicationContext: 3, result: 0, diagnostic: 14, diagnosticSource: 'user', respondingApTitle: SYSTEM_TITLE, mechanism: 'hls-gmac', challenge: Buffer.from('P6wRJ21F', 'latin1'), userInformation: info });
    const text = hx(aare);
    expect(text.startsWith('61')).toBe(true);
    for (const field of ['A109060760857405080103', 'A305A10302010E', 'A40A04084D4D4D0000BC614E', '88020780', '890760857405080205', 'AA0A8008503677524A323146', 'BE2304212' + '81F3001234568']) expect(text).toContain(field);
    const back = decodeAare(aare);
    expect(back).toMatchObject({ applicationContext: 3, result: 0, diagnostic: 14, mechanism: 'hls-gmac' });
    expect(hx(back.respondingApTitle!)).toBe('4D4D4D0000BC614E');
    expect(Buffer.from(back.challenge!).toString('latin1')).toBe('P6wRJ21F');
    expect(hx(back.userInformation!)).toBe(hx(info));
    expect(hx(encodeAare(back))).toBe(hx(aare));
  });
});
