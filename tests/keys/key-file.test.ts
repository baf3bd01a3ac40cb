import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseKeyFile, transportKeyFromEnv, unwrapKey } from '../../src/keys/key-file.js';

/** Manufacturers' key files: CSV and JSON, plain and RFC 3394-wrapped keys, and bad rows named without their values. */
const EK = '000102030405060708090A0B0C0D0E0F';
const AK = 'D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF';
const KEK = '00112233445566778899AABBCCDDEEFF';
const ST = '4D4D4D0000BC614E';
const TRANSPORT = Buffer.from('000102030405060708090A0B0C0D0E0F', 'hex');
const wrap = (keyHex: string, kek = TRANSPORT) => {
  const c = createCipheriv(kek.length === 32 ? 'id-aes256-wrap' : 'id-aes128-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  return Buffer.concat([c.update(Buffer.from(keyHex, 'hex')), c.final()]).toString('hex').toUpperCase();
};

describe('RFC 3394 key unwrap (node:crypto)', () => {
  it('unwraps the RFC\'s vectors 4.1 (128-bit KEK) and 4.3 (256-bit KEK) to the key data 00112233…FF, and refuses a wrong KEK', () => {
    expect(unwrapKey(Buffer.from('1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5', 'hex'), TRANSPORT)!.toString('hex').toUpperCase()).toBe(KEK);
    const kek256 = Buffer.from('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F', 'hex');
    expect(unwrapKey(Buffer.from('64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7', 'hex'), kek256)!.toString('hex').toUpperCase()).toBe(KEK);
    expect(unwrapKey(Buffer.from('1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5', 'hex'), Buffer.alloc(16, 7))).toBeUndefined();
  });
});

describe('parseKeyFile', () => {
  it('reads a CSV with the manufacturer\'s column names (any case, spaces or underscores), KEK optional', () => {
    const csv = `Meter ID,System_Title,GUEK,GAK,KEK\nM-1,${ST},${EK},${AK},${KEK}\nM-2,${ST},${AK},${EK},\n`;
    const rows = parseKeyFile(csv, 'csv');
    expect(rows.map((r) => [r.row, r.meterId, r.keys.encryptionKey.toString('hex').toUpperCase(), r.keys.masterKey?.toString('hex').toUpperCase()])).toEqual([
      [1, 'M-1', EK, KEK],
      [2, 'M-2', AK, undefined],
    ]);
    expect(rows[0]!.keys.serverSystemTitle!.toString('hex').toUpperCase()).toBe(ST);
  });

  it('reads JSON (an array of objects) with wrapped keys under the transport key', () => {
    const json = JSON.stringify([{ meterId: 'M-1', systemTitle: ST, guek: wrap(EK), gak: wrap(AK), kek: wrap(KEK) }]);
    const [row] = parseKeyFile(json, 'json', TRANSPORT);
    expect(row!.keys.encryptionKey.toString('hex').toUpperCase()).toBe(EK);
    expect(row!.keys.authenticationKey.toString('hex').toUpperCase()).toBe(AK);
    expect(row!.keys.masterKey!.toString('hex').toUpperCase()).toBe(KEK);
  });

  it('one bad row refuses the file with E_KEY_FILE_INVALID naming the row and field, and never a value from the file', () => {
    const secret = 'CAFEBABECAFEBABECAFEBABECAFEBABE';
    const cases: [string, string | undefined, number, string][] = [
      [`meter id,system title,GUEK,GAK\nM-1,${ST},${EK},${AK}\nM-2,${ST},${secret.slice(0, 30)},${secret}\n`, undefined, 2, 'encryptionKey'],
      [`meter id,system title,GUEK,GAK\nM-1,${ST},${EK},${AK}\nM-1,${ST},${secret},${AK}\n`, undefined, 2, 'meterId'],
      [`meter id,system title,GUEK,GAK\nM-1,4D4D,${secret},${AK}\n`, undefined, 1, 'systemTitle'],
      [`meter id,system title,GUEK\nM-1,${ST},${secret}\n`, undefined, 1, 'authenticationKey'],
      [`meter id,system title,GUEK,GAK,PIN\nM-1,${ST},${secret},${AK},1234\n`, undefined, 1, 'PIN'],
      // Wrapped under another transport key: does not unwrap. Plain keys where wrapped ones are expected: refused.
      [`meter id,system title,GUEK,GAK\nM-1,${ST},${wrap(secret, Buffer.alloc(16, 9))},${wrap(AK)}\n`, 'wrapped', 1, 'encryptionKey'],
      [`meter id,system title,GUEK,GAK\nM-1,${ST},${secret},${wrap(AK)}\n`, 'wrapped', 1, 'encryptionKey'],
      [`meter id,system title,GUEK,GAK\nM-1,${ST},${wrap(secret)},${AK}\n`, undefined, 1, 'encryptionKey'],
    ];
    for (const [csv, wrapped, row, field] of cases) {
      let err: any;
      try {
        parseKeyFile(csv, 'csv', wrapped ? TRANSPORT : undefined);
      } catch (e) {
        err = e;
      }
      expect(err, csv).toMatchObject({ code: 'E_KEY_FILE_INVALID', status: 400 });
      expect(err.message, csv).toContain(`row ${row}, ${field}`);
      expect(err.details.errors[0], csv).toMatchObject({ row, field });
      const said = `${err.message} ${JSON.stringify(err.details)}`.toUpperCase();
      expect(said).not.toContain(secret);
      expect(said).not.toContain(secret.slice(0, 16));
    }
  });

  it('a file that is not CSV or JSON at all is refused without quoting it', () => {
    const secret = 'CAFEBABECAFEBABECAFEBABECAFEBABE';
    expect(() => parseKeyFile(`[{"meterId": "M-1", "guek": "${secret}"`, 'json')).toThrow(expect.objectContaining({ code: 'E_KEY_FILE_INVALID', message: expect.not.stringContaining('CAFE') }));
    expect(() => parseKeyFile(`meter id,GUEK\nM-1,"${secret}"x,\n`, 'csv')).toThrow(expect.objectContaining({ code: 'E_KEY_FILE_INVALID', message: expect.not.stringContaining('CAFE') }));
    expect(() => parseKeyFile('meter id,GUEK\n', 'csv')).toThrow(expect.objectContaining({ code: 'E_KEY_FILE_INVALID', message: expect.stringContaining('no rows') }));
  });
});

describe('transport keys', () => {
  it('come from the gateway\'s environment by a METERLINE_TRANSPORT_KEY name only; a missing one says how to configure it', () => {
    expect(transportKeyFromEnv('METERLINE_TRANSPORT_KEY_ACME', { METERLINE_TRANSPORT_KEY_ACME: TRANSPORT.toString('hex') })).toEqual(TRANSPORT);
    expect(() => transportKeyFromEnv('METERLINE_KEY_MASTER', { METERLINE_KEY_MASTER: 'a'.repeat(64) })).toThrow(expect.objectContaining({ code: 'E_TRANSPORT_KEY_MISSING' }));
    expect(() => transportKeyFromEnv('METERLINE_TRANSPORT_KEY_X', {})).toThrow(expect.objectContaining({ code: 'E_TRANSPORT_KEY_MISSING', message: expect.stringContaining('METERLINE_TRANSPORT_KEY_X_FILE') }));
  });
});
