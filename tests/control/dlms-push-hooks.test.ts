import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ControlState } from '../../drivers/dlms/cosem/disconnect-control.js';
import type { MeterKeys, PushSender } from '../../drivers/dlms/index.js';
import { disconnectPushBody, encodeDataNotification } from '../../drivers/dlms/push-notification.js';
import { encodeGeneralCiphering } from '../../drivers/dlms/security/ciphered-apdu.js';
import { protect } from '../../drivers/dlms/security/suite0-cipher.js';
import type { SecurityControl } from '../../drivers/dlms/security/security-control.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { reportSource } from '../../src/control/status-reports.js';
import { dlmsPushHooks, type PushKeyring } from '../../src/gateway/dlms-push.js';
import type { MeterView } from '../../src/store/store.js';
import { dlmsTestProfiles } from '../drivers/dlms/fixture.js';

/**
 * The gateway's push hooks (src/gateway/dlms-push.ts) without sockets: which sender is which meter, and which
 * ciphered notifications are taken. The e2e test (tests/e2e/dlms-push.test.ts) runs them through the gateway.
 */

const logger = pino({ level: 'silent' });
const { closes, all } = dlmsTestProfiles();
const hls = all.find((p) => p.dlms.security === 'hls-gmac')!;
const profiles = new Map<string, FirmwareProfile>(all.map((p) => [p.id, p]));
const AE: SecurityControl = { suite: 0, authenticated: true, encrypted: true, broadcastKey: false, compressed: false };

const keysOf = (n: number, keySetId = `ks_${n}`): MeterKeys & { serverSystemTitle: Buffer } => ({
  keySetId,
  encryptionKey: Buffer.alloc(16, n),
  authenticationKey: Buffer.alloc(16, n + 50),
  serverSystemTitle: Buffer.from(`4D4D4D00000000${n.toString(16).padStart(2, '0')}`, 'hex'),
});

function keyring(byMeter: Record<string, MeterKeys & { serverSystemTitle: Buffer }>): PushKeyring {
  return {
    async keysForSystemTitle(title) {
      const hit = Object.entries(byMeter).find(([, k]) => k.serverSystemTitle.equals(title));
      return hit ? { meterId: hit[0], keys: hit[1] } : undefined;
    },
    async keysFor(meterId) {
      return byMeter[meterId];
    },
  };
}

const meter = (meterId: string, profileId: string, link: string, address: string | null): MeterView =>
  ({ meterId, profileId, link, region: 'r', address, accountId: null, observed: null, desiredRelay: null, desiredOrderId: null, createdAt: 0, updatedAt: 0, flags: {} }) as unknown as MeterView;

function cipher(keys: MeterKeys & { serverSystemTitle: Buffer }, ic: number, sc: SecurityControl = AE): Uint8Array {
  const plain = encodeDataNotification({ longInvokeId: 1, body: disconnectPushBody(Buffer.from('X'), ControlState.Connected) });
  return encodeGeneralCiphering('global', keys.serverSystemTitle, protect({ ...keys, securityControl: sc, systemTitle: keys.serverSystemTitle, invocationCounter: ic, plaintext: plain }));
}

describe('DLMS push hooks of the gateway', () => {
  const k1 = keysOf(1);
  const k2 = keysOf(2);
  const meters: Record<string, MeterView> = {
    'HLS-1': meter('HLS-1', hls.id, 'dc', '21'),
    'HLS-2': meter('HLS-2', hls.id, 'dc', '22'),
    'LLS-DC': meter('LLS-DC', closes.id, 'dc', '23'),
    'LLS-DIRECT': meter('LLS-DIRECT', closes.id, 'gprs', '10.9.1.4:4059/5'),
    'LLS-SERIAL': meter('LLS-SERIAL', closes.id, 'rs485', '17'),
    'MQTT-1': meter('MQTT-1', 'acme-em340-fw2.4', 'dc', '24'),
  };
  const hooks = () =>
    dlmsPushHooks({
      keyring: keyring({ 'HLS-1': k1, 'HLS-2': k2 }),
      store: { getMeter: async (id) => meters[id] },
      links: { tcp: { dc: { kind: 'wrapper', host: '10.4.0.17', connectTimeoutMs: 5000, reconnectMs: 2000 }, gprs: { kind: 'wrapper', connectTimeoutMs: 5000, reconnectMs: 2000 } } },
      profiles,
      logger,
    });

  it('a ciphered push is deciphered with the keys its system title names, and its sender is that meter', async () => {
    const h = hooks();
    const plain = await h.decipher(k1.serverSystemTitle, cipher(k1, 10));
    expect(plain).toBeInstanceOf(Uint8Array);
    expect((plain as Uint8Array)[0]).toBe(0x0f);
    expect(await h.meterFor({ systemTitle: k1.serverSystemTitle, wPort: 99, peerAddress: '192.0.2.1' })).toBe('HLS-1');
  });

  it('the counter must grow per meter and key set: the same or a lower one is a replay; another meter has its own', async () => {
    const h = hooks();
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 10))).toBeInstanceOf(Uint8Array);
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 10))).toBe('replayed');
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 9))).toBe('replayed');
    expect(await h.decipher(k2.serverSystemTitle, cipher(k2, 3))).toBeInstanceOf(Uint8Array);
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 11))).toBeInstanceOf(Uint8Array);
    // A refused notification does not move the counter: a bad tag at 50 leaves 12 acceptable.
    expect(await h.decipher(k1.serverSystemTitle, cipher({ ...k1, authenticationKey: randomBytes(16) }, 50))).toBe('bad-tag');
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 12))).toBeInstanceOf(Uint8Array);
  });

  it('an unknown system title, another meter’s title, an altered APDU, and encryption without authentication are refused', async () => {
    const h = hooks();
    const stranger = keysOf(9);
    expect(await h.decipher(stranger.serverSystemTitle, cipher(stranger, 1))).toBe('unknown-system-title');
    // Meter 2's keys under meter 1's title: the tag does not verify.
    expect(await h.decipher(k1.serverSystemTitle, cipher({ ...k2, serverSystemTitle: k1.serverSystemTitle }, 1))).toBe('bad-tag');
    const altered = cipher(k1, 2);
    altered[altered.length - 14]! ^= 0x01;
    expect(await h.decipher(k1.serverSystemTitle, altered)).toBe('bad-tag');
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 3, { ...AE, authenticated: false }))).toBe('bad-tag');
    expect(await h.decipher(k1.serverSystemTitle, cipher(k1, 4))).toBeInstanceOf(Uint8Array);
  });

  it('a plain push is taken only from a keyless registered DLMS meter at its place on a wrapper link', async () => {
    const h = hooks();
    const from = (name: string, wPort: number, peerAddress: string): PushSender => ({ logicalDeviceName: Buffer.from(name), wPort, peerAddress });
    expect(await h.meterFor(from('LLS-DC', 23, '10.4.0.17'))).toBe('LLS-DC');
    expect(await h.meterFor(from('LLS-DC', 24, '10.4.0.17'))).toBeUndefined(); // another logical device
    expect(await h.meterFor(from('LLS-DC', 23, '10.4.0.99'))).toBeUndefined(); // not from the concentrator
    expect(await h.meterFor(from('LLS-DIRECT', 5, '10.9.1.4'))).toBe('LLS-DIRECT');
    expect(await h.meterFor(from('LLS-DIRECT', 5, '10.9.1.5'))).toBeUndefined();
    expect(await h.meterFor(from('LLS-SERIAL', 17, '10.4.0.17'))).toBeUndefined(); // a serial meter does not push over TCP
    expect(await h.meterFor(from('MQTT-1', 24, '10.4.0.17'))).toBeUndefined(); // not a DLMS meter
    expect(await h.meterFor(from('HLS-1', 21, '10.4.0.17'))).toBeUndefined(); // has keys: must cipher
    expect(await h.meterFor(from('NOBODY', 23, '10.4.0.17'))).toBeUndefined();
    expect(await h.meterFor({ wPort: 23, peerAddress: '10.4.0.17' })).toBeUndefined(); // no device name
  });

  it('a status report is observed with source push only when the DLMS driver says it was pushed', () => {
    expect(reportSource('dlms', JSON.stringify({ source: 'push', service: 'data-notification' }))).toBe('push');
    expect(reportSource('mqtt', JSON.stringify({ source: 'push' }))).toBe('status'); // a meter's own payload decides nothing
    expect(reportSource('mqtt', '{"relay":"connected"}')).toBe('status');
    expect(reportSource('dlms', 'not json')).toBe('status');
  });
});
