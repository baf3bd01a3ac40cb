import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import type { MeterDriver } from '../../drivers/driver.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile, FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { MasterKey, keySetIdFor, sealKeySet, type MeterKeyMaterial } from '../../src/keys/key-envelope.js';
import { renewMeterKeys, type KeyRenewalDeps } from '../../src/keys/key-renewal.js';
import { StoreKeyring } from '../../src/keys/store-keyring.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';

/**
 * The renewal flow (src/keys/key-renewal.ts) with the real DLMS driver over a pty, the StoreKeyring on SQLite and
 * simulated meters: the cases the API test cannot set up cheaply: the transfer's answer lost after the meter took the
 * keys (202 pending, then the next association reaches the meter with the pending keys and confirms them), and a
 * pending set left by an earlier renewal that is settled first.
 */

const T = 1200;
const LINK = 'rs485-renewal';
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });

function idis(): DlmsFirmwareProfile {
  const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
  const p = [...loadFirmwareProfiles(dir).values()].find((x): x is DlmsFirmwareProfile => x.id === 'idis-hls-gmac-mode6')!;
  return { ...p, timeouts: { commandMs: T, readMs: T }, dlms: { ...p.dlms, hdlc: { ...p.dlms.hdlc, responseTimeoutMs: 150 } } };
}

const sim = (n: number): SimMeterKeys & { masterKey: Buffer } => ({ encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey: randomBytes(16), systemTitle: Buffer.from(`4D4D4D000000AA${n.toString(16).padStart(2, '0')}`, 'hex') });

describe('renewMeterKeys: the driver over a pty, the keyring on SQLite', () => {
  let pty: PtyPair;
  let bus: DlmsBusSimulator;
  let driver: DlmsDriver;
  let store: SqliteStore;
  let keyring: StoreKeyring;
  let deps: KeyRenewalDeps;
  const profile = idis();
  const meters = { 'RW-51': sim(1), 'RW-52': sim(2) };
  const req = () => ({ timeoutMs: T, correlationId: `t:${Date.now()}` });

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new DlmsBusSimulator({ path: pty.devicePath, logger, meters: Object.entries(meters).map(([meterId, keys], i) => ({ meterId, physicalAddress: 51 + i, controlMode: 6 as const, keys })) });
    await bus.start();
    store = new SqliteStore(join(mkdtempSync(join(tmpdir(), 'ml-renewal-')), 'gw.db'));
    await store.migrate();
    const master = MasterKey.random();
    keyring = new StoreKeyring({ store, master, cacheMs: 0 });
    await store.upsertMeters(Object.keys(meters).map((meterId, i) => ({ meterId, profileId: profile.id, link: LINK, region: 'test', address: String(51 + i) })), 1);
    for (const [meterId, k] of Object.entries(meters)) {
      const material: MeterKeyMaterial = { encryptionKey: k.encryptionKey, authenticationKey: k.authenticationKey, masterKey: k.masterKey };
      const id = keySetIdFor(master, meterId, material);
      await store.putMeterKeySets([{ meterId, keySetId: id, sealed: sealKeySet(master, meterId, id, material) }], { replace: false }, 'admin', 2);
    }
    driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 1 } } }, profiles: [profile], logger, keyring });
    await driver.start();
    deps = { store, keyring, drivers: new Map<string, MeterDriver>([['dlms', driver]]), profiles: new Map<string, FirmwareProfile>([[profile.id, profile]]), now: () => Date.now(), logger };
  }, 20_000);

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await store?.close();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  const states = async (meterId: string) => Object.fromEntries((await store.meterKeySets(meterId)).map((s) => [s.keySetId, s.state]));

  it('the answer to the transfer is lost after the meter took the keys: pending (old keys no longer work), then the next read reaches it with the pending keys and confirms them', async () => {
    const m = bus.busMeter('RW-51');
    const old = (await keyring.keysFor('RW-51'))!.keySetId;
    m.cosem.faults.loseKeyTransferAnswer = true;
    const r = await renewMeterKeys(deps, 'RW-51', 'admin-test');
    expect(r).toMatchObject({ meterId: 'RW-51', state: 'pending', previousKeySetId: old });
    expect(r.detail).toMatch(/did not come back \(timeout\).*current keys no longer associate/);
    expect(m.cosem.counters.keyTransfers).toBe(1);
    expect(await states('RW-51')).toEqual({ [old]: 'current', [r.keySetId]: 'pending' });

    const read = await driver.readRelay({ meterId: 'RW-51', profile, link: LINK, address: '51' }, req());
    expect(read.outcome).toBe('ok');
    expect(JSON.parse(read.outcome === 'ok' ? read.evidence! : '{}')).toMatchObject({ keySetId: r.keySetId });
    expect(await states('RW-51')).toEqual({ [old]: 'retired', [r.keySetId]: 'current' });
  });

  it('a pending set left by an earlier renewal that the meter never took is dropped first, then the renewal goes through', async () => {
    const m = bus.busMeter('RW-52');
    const old = (await keyring.keysFor('RW-52'))!;
    const stale = await keyring.stagePendingKeys('RW-52', { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey: old.masterKey! });
    const r = await renewMeterKeys(deps, 'RW-52', 'admin-test');
    expect(r).toMatchObject({ state: 'current', previousKeySetId: old.keySetId, settled: { keySetId: stale, result: 'dropped' } });
    expect(await states('RW-52')).toEqual({ [old.keySetId]: 'retired', [stale]: 'retired', [r.keySetId]: 'current' });
    expect(m.cosem.keys!.encryptionKey.equals((await keyring.keysFor('RW-52'))!.encryptionKey)).toBe(true);
  });

  it('a second renewal of the same meter while one runs: 409 E_KEY_RENEWAL_IN_PROGRESS, and the first completes', async () => {
    const first = renewMeterKeys(deps, 'RW-52', 'admin-test');
    await expect(renewMeterKeys(deps, 'RW-52', 'admin-test')).rejects.toMatchObject({ code: 'E_KEY_RENEWAL_IN_PROGRESS' });
    expect(await first).toMatchObject({ state: 'current' });
    expect(bus.busMeter('RW-52').cosem.keys!.encryptionKey.equals((await keyring.keysFor('RW-52'))!.encryptionKey)).toBe(true);
  });

  it('refused before the wire: an unknown meter, a meter whose profile has no HLS keys', async () => {
    await expect(renewMeterKeys(deps, 'NOPE', 'admin-test')).rejects.toMatchObject({ code: 'E_METER_NOT_FOUND' });
    const lls = { ...profile, id: 'lls-only', dlms: { ...profile.dlms, security: 'low' as const, ciphering: 'none' as const } };
    await store.upsertMeters([{ meterId: 'RW-LLS', profileId: lls.id, link: LINK, region: 'test', address: '59' }], 3);
    await expect(renewMeterKeys({ ...deps, profiles: new Map<string, FirmwareProfile>([[profile.id, profile], [lls.id, lls]]) }, 'RW-LLS', 'admin-test')).rejects.toMatchObject({ code: 'E_KEY_RENEWAL_UNSUPPORTED' });
  });
});
