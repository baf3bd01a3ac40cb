import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createDlmsDriver, type DlmsDriver, type MeterKeys } from '../../drivers/dlms/index.js';
import type { RequestOptions } from '../../drivers/driver.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { dlmsAddress } from './dlms/fixture.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';

/**
 * Renewing a meter's keys (issue 15 item 3) over a real pty: global_key_transfer on the Security setup object
 * (class 64 method 2) with the new keys wrapped (RFC 3394) under the meter's KEK, proved by a fresh association
 * with the new keys; a meter that refuses keeps its keys and still switches; a meter that took keys whose proof
 * got lost is reached with the pending keys instead of being locked out.
 */

const T = 1500;
const LINK = 'rs485-renew';
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
let seq = 0;
const req = (): RequestOptions => {
  const orderId = `renew-${++seq}`;
  return { correlationId: `${orderId}:1:cmd`, orderId, timeoutMs: T, attempt: 1 };
};

function idisProfile(): DlmsFirmwareProfile {
  const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
  const p = [...loadFirmwareProfiles(dir).values()].find((x): x is DlmsFirmwareProfile => x.id === 'idis-hls-gmac-mode6')!;
  return { ...p, timeouts: { commandMs: T, readMs: T }, dlms: { ...p.dlms, hdlc: { ...p.dlms.hdlc, responseTimeoutMs: 150 } } };
}

const simKeys = (n: number): SimMeterKeys => ({
  encryptionKey: Buffer.alloc(16, 0x20 + n),
  authenticationKey: Buffer.alloc(16, 0xe0 + n),
  masterKey: Buffer.alloc(16, 0x90 + n),
  systemTitle: Buffer.from(`4D4D4D00000000${n.toString(16).padStart(2, '0')}`, 'hex'),
});
const gatewayKeys = (id: string, k: SimMeterKeys, keySetId: string): MeterKeys => ({ keySetId, encryptionKey: k.encryptionKey, authenticationKey: k.authenticationKey, masterKey: k.masterKey! });
const freshKeys = (keySetId: string, masterKey: Buffer): MeterKeys => ({ keySetId, encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey });

describe('DLMS key renewal with global_key_transfer over a real pty', () => {
  let pty: PtyPair;
  let bus: DlmsBusSimulator;
  let driver: DlmsDriver;
  const keyring = new MemoryKeyring();
  const idis = idisProfile();
  const meters = ['RN-31', 'RN-32', 'RN-33', 'RN-34', 'RN-35'];
  const address = (id: string) => dlmsAddress(id, idis, LINK, id.slice(3));
  const allKeyHex: string[] = [];
  const noKeysIn = (text: string | undefined) => {
    for (const k of allKeyHex) expect((text ?? '').toLowerCase()).not.toContain(k);
  };
  const remember = (k: MeterKeys) => allKeyHex.push(k.encryptionKey.toString('hex'), k.authenticationKey.toString('hex'), ...(k.masterKey ? [k.masterKey.toString('hex')] : []));

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new DlmsBusSimulator({ path: pty.devicePath, logger, meters: meters.map((id, i) => ({ meterId: id, physicalAddress: 31 + i, controlMode: 6 as const, keys: simKeys(i + 1) })) });
    await bus.start();
    meters.forEach((id, i) => {
      const k = gatewayKeys(id, simKeys(i + 1), `${id}-ks1`);
      remember(k);
      keyring.set(id, k);
    });
    driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: [idis], logger, keyring });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  it('renewal: the meter takes the new keys, a fresh association proves them, later associations use them and the old keys are refused', async () => {
    const m = bus.busMeter('RN-31');
    const old = (await keyring.keysFor('RN-31'))!;
    const next = freshKeys('RN-31-ks2', old.masterKey!);
    remember(next);
    keyring.stage('RN-31', next);
    const r = await driver.transferKeys(address('RN-31'), next, req());
    expect(r.transfer.outcome).toBe('ok');
    expect(r.proof?.outcome).toBe('ok');
    expect(m.cosem.counters.keyTransfers).toBe(1);
    expect(m.cosem.keys!.encryptionKey.equals(next.encryptionKey)).toBe(true);
    expect(m.cosem.keys!.authenticationKey.equals(next.authenticationKey)).toBe(true);
    // The transfer went ciphered (glo-action-request 0xCB) and names key set ids only.
    const ev = JSON.parse(r.transfer.outcome === 'ok' ? r.transfer.evidence! : '{}') as { apdus: string[]; fromKeySetId: string; toKeySetId: string; keySetId: string };
    expect(ev).toMatchObject({ fromKeySetId: 'RN-31-ks1', toKeySetId: 'RN-31-ks2', keySetId: 'RN-31-ks1' });
    expect(ev.apdus.some((a) => a.startsWith('>cb'))).toBe(true);
    noKeysIn(r.transfer.outcome === 'ok' ? r.transfer.evidence : '');
    noKeysIn(r.proof?.outcome === 'ok' ? r.proof.evidence : '');
    expect(JSON.parse(r.proof?.outcome === 'ok' ? r.proof.evidence! : '{}')).toMatchObject({ keySetId: 'RN-31-ks2' });

    // The caller confirms: the next association (a switch) uses the new keys.
    await keyring.confirmPendingKeys('RN-31', 'RN-31-ks2');
    const off = await driver.operateRelay(address('RN-31'), 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(JSON.parse(off.outcome === 'ok' ? off.evidence! : '{}')).toMatchObject({ keySetId: 'RN-31-ks2' });
    expect(m.meter.relay).toBe('disconnected');
    // The old keys no longer open the meter.
    const refused = await driver.proveKeys(address('RN-31'), old, req());
    expect(refused.outcome).toBe('auth_failed');
    noKeysIn(refused.outcome !== 'ok' ? `${refused.detail} ${refused.evidence ?? ''}` : '');
  });

  it('a meter that refuses the transfer keeps its old keys; nothing is proved and the gateway still switches it', async () => {
    const m = bus.busMeter('RN-32');
    const old = (await keyring.keysFor('RN-32'))!;
    m.cosem.faults.refuseKeyTransfer = true;
    try {
      const next = freshKeys('RN-32-ks2', old.masterKey!);
      const r = await driver.transferKeys(address('RN-32'), next, req());
      expect(r.transfer.outcome).toBe('nack');
      expect(r.transfer.outcome !== 'ok' && r.transfer.detail).toMatch(/global_key_transfer.*other-reason/);
      expect(r.proof).toBeUndefined();
      expect(m.cosem.counters.keyTransfersRefused).toBe(1);
      expect(m.cosem.keys!.encryptionKey.equals(old.encryptionKey)).toBe(true);
    } finally {
      m.cosem.faults.refuseKeyTransfer = false;
    }
    const off = await driver.operateRelay(address('RN-32'), 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(m.meter.relay).toBe('disconnected');
  });

  it('a wrap under the wrong KEK is refused by the meter (other-reason) and it keeps its keys', async () => {
    const m = bus.busMeter('RN-33');
    const old = (await keyring.keysFor('RN-33'))!;
    keyring.set('RN-33', { ...old, masterKey: Buffer.alloc(16, 0x01) });
    try {
      const r = await driver.transferKeys(address('RN-33'), freshKeys('RN-33-ks2', old.masterKey!), req());
      expect(r.transfer.outcome).toBe('nack');
      expect(r.proof).toBeUndefined();
      expect(m.cosem.counters).toMatchObject({ keyTransfers: 0, keyTransfersRefused: 1 });
      expect(m.cosem.keys!.authenticationKey.equals(old.authenticationKey)).toBe(true);
    } finally {
      keyring.set('RN-33', old);
    }
    expect((await driver.readRelay(address('RN-33'), req())).outcome).toBe('ok');
  });

  it('the meter took the keys but the proof never came back: the next association is refused the old keys, tries the pending ones and confirms them', async () => {
    const m = bus.busMeter('RN-34');
    const old = (await keyring.keysFor('RN-34'))!;
    const next = freshKeys('RN-34-ks2', old.masterKey!);
    keyring.stage('RN-34', next);
    const r = await driver.transferKeys(address('RN-34'), next, req());
    expect(r.transfer.outcome).toBe('ok');
    // As if the gateway died before confirming: current is still the old set, the new one pending.
    expect((await keyring.keysFor('RN-34'))!.keySetId).toBe('RN-34-ks1');
    const read = await driver.readRelay(address('RN-34'), req());
    expect(read.outcome).toBe('ok');
    expect(JSON.parse(read.outcome === 'ok' ? read.evidence! : '{}')).toMatchObject({ keySetId: 'RN-34-ks2' });
    expect(keyring.confirmed).toContainEqual({ meterId: 'RN-34', keySetId: 'RN-34-ks2' });
    expect((await keyring.keysFor('RN-34'))!.keySetId).toBe('RN-34-ks2');
    expect(m.cosem.keys!.encryptionKey.equals(next.encryptionKey)).toBe(true);
  });

  it('a key set without a master key (KEK): auth_failed saying so, the meter keeps its keys', async () => {
    const m = bus.busMeter('RN-35');
    const old = (await keyring.keysFor('RN-35'))!;
    const { masterKey: _omit, ...noKek } = old;
    keyring.set('RN-35', noKek);
    try {
      const r = await driver.transferKeys(address('RN-35'), freshKeys('RN-35-ks2', Buffer.alloc(16, 1)), req());
      expect(r.transfer.outcome).toBe('auth_failed');
      expect(r.transfer.outcome !== 'ok' && r.transfer.detail).toMatch(/RN-35.*no master key \(KEK\)/);
      expect(m.cosem.counters.keyTransfers).toBe(0);
    } finally {
      keyring.set('RN-35', old);
    }
  });
});
