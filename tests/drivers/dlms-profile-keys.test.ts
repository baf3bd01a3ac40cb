import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createDlmsDriver } from '../../drivers/dlms/index.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile, FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsProfileSchema } from '../../src/domain/profiles/dlms-profile.js';
import { MasterKey } from '../../src/keys/key-envelope.js';
import { importKeyFile } from '../../src/keys/key-import.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { dlmsAddress } from './dlms/fixture.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';

/**
 * Profiles name the keys their meters need (`dlms.keys`: GUEK, GAK, KEK): the schema requires them for HLS-GMAC and
 * ciphering and refuses them otherwise; the driver refuses to associate (auth_failed, no traffic) when the meter's key
 * set lacks one; the key import refuses a registered meter's row that lacks one.
 */

const logger = pino({ level: 'silent' });
const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
const shipped = [...loadFirmwareProfiles(dir).values()].filter((p): p is DlmsFirmwareProfile => p.protocol === 'dlms');
const idis = shipped.find((p) => p.id === 'idis-hls-gmac-mode6')!;
/** The same meter family where the gateway renews keys: KEK needed too. */
const idisRenew: DlmsFirmwareProfile = { ...idis, id: 'idis-hls-gmac-mode6-kek', timeouts: { commandMs: 1000, readMs: 1000 }, dlms: { ...idis.dlms, keys: ['GUEK', 'GAK', 'KEK'] } };

describe('DLMS profile keys: schema', () => {
  const base = { clientSap: 1, baudRate: 9600, controlMode: 1, hdlc: {} };
  it('the shipped HLS profiles name GUEK and GAK; the LLS ones name none', () => {
    expect(shipped.find((p) => p.id === 'idis-hls-gmac-mode6')!.dlms.keys).toEqual(['GUEK', 'GAK']);
    expect(shipped.find((p) => p.id === 'dsmr5-hls-gmac-mode1')!.dlms.keys).toEqual(['GUEK', 'GAK']);
    for (const p of shipped.filter((x) => x.dlms.security !== 'hls-gmac')) expect(p.dlms.keys).toBeUndefined();
    expect(idis.quirks.join(' ')).toMatch(/TCP wrapper .* port 4059.*dlms\.tcp link of kind wrapper/);
  });
  it('accepts GUEK+GAK (+KEK) for hls-gmac, and for low with ciphering', () => {
    expect(DlmsProfileSchema.parse({ ...base, security: 'hls-gmac', keys: ['GUEK', 'GAK'] }).keys).toEqual(['GUEK', 'GAK']);
    expect(DlmsProfileSchema.safeParse({ ...base, security: 'hls-gmac', ciphering: 'authenticated-encrypted', keys: ['GUEK', 'GAK', 'KEK'] }).success).toBe(true);
    expect(DlmsProfileSchema.safeParse({ ...base, security: 'low', passwordEnv: 'METERLINE_X', ciphering: 'authenticated', keys: ['GAK', 'GUEK'] }).success).toBe(true);
  });
  it.each([
    [{ security: 'hls-gmac' }, /name the keys its key set must hold, e\.g\. "keys": \["GUEK", "GAK"\]/],
    [{ security: 'low', passwordEnv: 'METERLINE_X', ciphering: 'authenticated' }, /name the keys its key set must hold/],
    [{ security: 'lowest', keys: ['GUEK', 'GAK'] }, /'lowest' or 'low' without ciphering uses no meter keys: remove keys/],
    [{ security: 'low', passwordEnv: 'METERLINE_X', keys: ['GUEK', 'GAK'] }, /uses no meter keys: remove keys/],
    [{ security: 'hls-gmac', keys: ['GUEK', 'KEK'] }, /keys must include "GUEK" and "GAK"/],
    [{ security: 'hls-gmac', keys: ['GUEK', 'GAK', 'GAK'] }, /each key once/],
    [{ security: 'hls-gmac', keys: ['GUEK', 'GAK', 'DK'] }, /Invalid enum value|Invalid option/],
  ])('refuses %j with a clear message', (extra, message) => {
    const r = DlmsProfileSchema.safeParse({ ...base, ...extra });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message).join('; ')).toMatch(message);
  });
});

describe('DLMS profile keys: the driver', () => {
  const keys = { encryptionKey: Buffer.alloc(16, 0x31), authenticationKey: Buffer.alloc(16, 0x32), masterKey: Buffer.alloc(16, 0x33), systemTitle: Buffer.from('4D544C0000000101', 'hex') };
  const server = new DlmsTcpServer({ mode: 'wrapper', port: 0, meters: [{ meterId: 'PK-1', physicalAddress: 41, logicalAddress: 41, controlMode: 6, keys }], logger });
  afterAll(() => server.stop());

  it('refuses to associate when the key set lacks a key the profile names (auth_failed naming it, nothing on the wire); with it, switches', async () => {
    await server.start();
    const keyring = new MemoryKeyring();
    keyring.set('PK-1', { keySetId: 'pk1-ks1', encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey });
    const driver = createDlmsDriver({ links: { tcp: { dc: { kind: 'wrapper', host: '127.0.0.1', port: server.port } } }, profiles: [idisRenew], logger, keyring });
    await driver.start();
    try {
      const meter = dlmsAddress('PK-1', idisRenew, 'dc', '41');
      const refused = await driver.readRelay(meter, { timeoutMs: 1000, correlationId: 'pk-1' });
      expect(refused.outcome).toBe('auth_failed');
      expect(refused.outcome !== 'ok' && refused.detail).toMatch(/profile idis-hls-gmac-mode6-kek needs the key KEK \(master key\), but its key set pk1-ks1 has none; import its key file with the KEK column/);
      expect(refused.outcome !== 'ok' && refused.detail).not.toMatch(/3131|3232/);
      const sim = server.simMeter('PK-1');
      expect(sim.counters.associations + sim.counters.refused + sim.counters.hlsFailures).toBe(0);
      expect(sim.seenCounters).toEqual([]);
      expect(keyring.handedOut).toEqual([]);

      keyring.set('PK-1', { keySetId: 'pk1-ks2', encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey, masterKey: keys.masterKey });
      const ack = await driver.operateRelay(meter, 'disconnect', { timeoutMs: 1000, correlationId: 'pk-2' });
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('disconnected');
      expect(sim.counters.associations).toBeGreaterThan(0);
    } finally {
      await driver.stop();
    }
  });
});

describe('DLMS profile keys: the key import', () => {
  const stores: SqliteStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
  });
  const hex = (b: number) => b.toString(16).padStart(2, '0').repeat(16);

  it('refuses a registered meter\'s row lacking a key its profile needs (row and field named, nothing imported); unknown meters as before', async () => {
    const store = new SqliteStore(join(mkdtempSync(join(tmpdir(), 'ml-profile-keys-')), 'gw.db'));
    stores.push(store);
    await store.migrate();
    await store.upsertMeters(
      [
        { meterId: 'M-KEK', profileId: idisRenew.id, link: 'dc', region: 'north', address: '41' },
        { meterId: 'M-IDIS', profileId: idis.id, link: 'dc', region: 'north', address: '42' },
      ],
      1,
    );
    const profiles = new Map<string, FirmwareProfile>([[idisRenew.id, idisRenew], [idis.id, idis]]);
    const master = MasterKey.random();
    const check = { store, profiles };
    const noKek = `meter id,system title,GUEK,GAK,KEK\nM-IDIS,4D544C0000000002,${hex(1)},${hex(2)},\nM-KEK,4D544C0000000001,${hex(3)},${hex(4)},\nM-NEW,4D544C0000000003,${hex(5)},${hex(6)},\n`;
    const err = await importKeyFile(store, master, { text: noKek, format: 'csv', replace: false, actor: 'admin', now: 2 }, {}, check).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_KEY_FILE_INVALID', details: { errors: [{ row: 2, field: 'masterKey' }] } });
    expect((err as Error).message).toMatch(/First: row 2, masterKey: missing: meter M-KEK is registered with profile idis-hls-gmac-mode6-kek, which needs KEK \(master key\)/);
    expect((err as Error).message).not.toMatch(/0303|0404/);
    expect(await store.meterKeySets('M-IDIS')).toEqual([]);
    expect(await store.meterKeySets('M-NEW')).toEqual([]);

    const withKek = noKek.replace(`${hex(4)},\n`, `${hex(4)},${hex(7)}\n`);
    const ok = await importKeyFile(store, master, { text: withKek, format: 'csv', replace: false, actor: 'admin', now: 3 }, {}, check);
    expect(ok).toMatchObject({ imported: 3, created: 3 });
  });
});
