import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { fileURLToPath } from 'node:url';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import type { RequestOptions } from '../../drivers/driver.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsProfileSchema } from '../../src/domain/profiles/dlms-profile.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { dlmsAddress } from './dlms/fixture.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';

/**
 * HLS-GMAC (mechanism 5) with security suite 0 ciphering, end to end over a real pty: the DLMS driver against
 * simulated meters on one HDLC bus that hold per-meter keys, check invocation counters and keep a public client.
 */

const T = 1500;
const LINK = 'rs485-sec';
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
let seq = 0;
const req = (timeoutMs = T): RequestOptions => {
  const orderId = `dlms-sec-${++seq}`;
  return { correlationId: `${orderId}:1:cmd`, orderId, timeoutMs, attempt: 1 };
};

function testProfiles(): { idis: DlmsFirmwareProfile; idisCloses: DlmsFirmwareProfile; dsmr: DlmsFirmwareProfile } {
  const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
  const all = [...loadFirmwareProfiles(dir).values()].filter((p): p is DlmsFirmwareProfile => p.protocol === 'dlms');
  const fast = (p: DlmsFirmwareProfile): DlmsFirmwareProfile => ({ ...p, timeouts: { commandMs: T, readMs: T }, dlms: { ...p.dlms, hdlc: { ...p.dlms.hdlc, responseTimeoutMs: 150 } } });
  const idis = fast(all.find((p) => p.id === 'idis-hls-gmac-mode6')!);
  const dsmr = fast(all.find((p) => p.id === 'dsmr5-hls-gmac-mode1')!);
  // The same meter family configured in control mode 2 (remote_reconnect closes).
  const idisCloses: DlmsFirmwareProfile = { ...idis, id: 'idis-hls-gmac-mode2', dlms: { ...idis.dlms, controlMode: 2 }, relay: { ...idis.relay, remoteReconnect: 'closes' } };
  return { idis, idisCloses, dsmr };
}

const keysOf = (n: number): SimMeterKeys => ({
  encryptionKey: Buffer.alloc(16, 0x10 + n),
  authenticationKey: Buffer.alloc(16, 0xd0 + n),
  systemTitle: Buffer.from(`5349${n.toString(16).padStart(2, '0')}0000BC614E`.slice(0, 16), 'hex'),
});
const KEY_HEX = [1, 2, 3].flatMap((n) => [keysOf(n).encryptionKey.toString('hex'), keysOf(n).authenticationKey.toString('hex')]);

describe('DLMS HLS-GMAC + authenticated-and-encrypted APDUs over a real pty', () => {
  let pty: PtyPair;
  let bus: DlmsBusSimulator;
  let driver: DlmsDriver;
  const keyring = new MemoryKeyring();
  const { idis, idisCloses, dsmr } = testProfiles();
  const armsMeter = dlmsAddress('SEC-A21', idis, LINK, '21');
  const closesMeter = dlmsAddress('SEC-C22', idisCloses, LINK, '22');
  const dedicatedMeter = dlmsAddress('SEC-D23', dsmr, LINK, '23');
  const keylessMeter = dlmsAddress('SEC-N24', idis, LINK, '24');

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new DlmsBusSimulator({
      path: pty.devicePath,
      logger,
      meters: [
        { meterId: 'SEC-A21', physicalAddress: 21, controlMode: 6, keys: keysOf(1) },
        { meterId: 'SEC-C22', physicalAddress: 22, controlMode: 2, keys: keysOf(2) },
        { meterId: 'SEC-D23', physicalAddress: 23, controlMode: 1, keys: keysOf(3) },
        { meterId: 'SEC-N24', physicalAddress: 24, controlMode: 6, keys: keysOf(4) },
      ],
    });
    await bus.start();
    for (const [id, n] of [['SEC-A21', 1], ['SEC-C22', 2], ['SEC-D23', 3]] as const) {
      const k = keysOf(n);
      keyring.set(id, { keySetId: `${id}-ks1`, encryptionKey: k.encryptionKey, authenticationKey: k.authenticationKey });
    }
    driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: [idis, idisCloses, dsmr], logger, keyring });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  const noKeysIn = (text: string | undefined) => {
    for (const k of KEY_HEX) expect((text ?? '').toLowerCase()).not.toContain(k);
  };

  it('control mode 6 (arms): disconnect, then remote_reconnect arms the relay, every service APDU ciphered', async () => {
    const m = bus.busMeter('SEC-A21');
    const off = await driver.operateRelay(armsMeter, 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(off.outcome === 'ok' && off.value.claimedRelay).toBe('disconnected');
    expect(m.meter.relay).toBe('disconnected');
    const on = await driver.operateRelay(armsMeter, 'reconnect', req());
    expect(on.outcome).toBe('ok');
    expect(on.outcome === 'ok' && on.value).toMatchObject({ claimedRelay: 'armed', remoteReconnect: 'arms' });
    expect(m.meter.relay).toBe('armed');
    // Evidence: what went over the wire, ciphered (glo-action-request 0xCB, glo-get-request 0xC8), and no key bytes.
    const evidence = JSON.parse(on.outcome === 'ok' ? on.evidence! : '{}') as { apdus: string[]; keySetId: string };
    expect(evidence.keySetId).toBe('SEC-A21-ks1');
    expect(evidence.apdus.some((a) => a.startsWith('>cb'))).toBe(true);
    expect(evidence.apdus.some((a) => a.startsWith('>c8'))).toBe(true);
    expect(evidence.apdus.filter((a) => a.startsWith('>c0') || a.startsWith('>c3'))).toEqual([]);
    noKeysIn(on.outcome === 'ok' ? on.evidence : '');
    expect(m.cosem.counters.hlsFailures).toBe(0);
  });

  it('control mode 2 (closes): disconnect and reconnect close the relay again', async () => {
    const m = bus.busMeter('SEC-C22');
    expect((await driver.operateRelay(closesMeter, 'disconnect', req())).outcome).toBe('ok');
    expect(m.meter.relay).toBe('disconnected');
    const on = await driver.operateRelay(closesMeter, 'reconnect', req());
    expect(on.outcome === 'ok' && on.value).toMatchObject({ claimedRelay: 'connected', remoteReconnect: 'closes' });
    expect(m.meter.relay).toBe('connected');
    const read = await driver.readRelay(closesMeter, req());
    expect(read.outcome === 'ok' && read.value.relay).toBe('connected');
  });

  it('DSMR-style profile with a dedicated key: the service APDUs go as ded-* (0xD0/0xD3) and the switch works', async () => {
    const off = await driver.operateRelay(dedicatedMeter, 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(bus.meter('SEC-D23').relay).toBe('disconnected');
    const apdus = (JSON.parse(off.outcome === 'ok' ? off.evidence! : '{}') as { apdus: string[] }).apdus;
    expect(apdus.some((a) => a.startsWith('>d3'))).toBe(true);
    expect(apdus.some((a) => a.startsWith('<d7'))).toBe(true);
  });

  it('a meter with no keys imported: auth_failed naming the meter, and no wire traffic at all', async () => {
    const m = bus.busMeter('SEC-N24');
    const before = { ...m.cosem.counters };
    const failures = driver.counters.authFailures;
    const res = await driver.operateRelay(keylessMeter, 'disconnect', req());
    expect(res.outcome).toBe('auth_failed');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/no keys imported for meter SEC-N24/);
    expect(m.cosem.counters).toEqual(before);
    expect(m.link.connected).toBe(false);
    expect(driver.counters.authFailures).toBe(failures + 1);
  });

  it('a meter holding other keys: auth_failed after one AARQ, no retry and no resync inside the conversation', async () => {
    const m = bus.busMeter('SEC-A21');
    m.cosem.faults.wrongKey = true;
    try {
      const before = { ...m.cosem.counters };
      const relay = m.meter.relay;
      const failures = driver.counters.authFailures;
      const resyncs = driver.counters.counterResyncs;
      const res = await driver.operateRelay(armsMeter, 'disconnect', req());
      expect(res.outcome).toBe('auth_failed');
      expect(res.outcome !== 'ok' && res.detail).toMatch(/could not decipher our glo-initiate-request.*SEC-A21-ks1/);
      noKeysIn(res.outcome !== 'ok' ? `${res.detail} ${res.evidence}` : '');
      expect(res.outcome !== 'ok' && res.evidence).toMatch(/^>60/); // the AARQ as sent
      expect(m.cosem.counters.refused - before.refused).toBe(1);
      expect(m.cosem.counters.associations).toBe(before.associations);
      expect(m.cosem.counters.publicAssociations).toBe(before.publicAssociations);
      expect(driver.counters.counterResyncs).toBe(resyncs);
      expect(driver.counters.authFailures).toBe(failures + 1);
      expect(m.meter.relay).toBe(relay);
    } finally {
      m.cosem.faults.wrongKey = false;
    }
  });

  it('a meter whose counter ran ahead: one resync through the public client, then the switch succeeds', async () => {
    const m = bus.busMeter('SEC-C22');
    const before = { ...m.cosem.counters };
    const resyncs = driver.counters.counterResyncs;
    m.cosem.faults.counterAhead = 5000;
    const ahead = m.cosem.lastClientCounter + 5000;
    const res = await driver.operateRelay(closesMeter, 'disconnect', req());
    expect(res.outcome).toBe('ok');
    expect(m.meter.relay).toBe('disconnected');
    expect(m.cosem.counters.rejectedCounters - before.rejectedCounters).toBe(1);
    expect(m.cosem.counters.publicAssociations - before.publicAssociations).toBe(1);
    expect(driver.counters.counterResyncs - resyncs).toBe(1);
    expect(keyring.raises.at(-1)).toEqual({ meterId: 'SEC-C22', keySetId: 'SEC-C22-ks1', atLeast: ahead + 1 });
    expect(m.cosem.lastClientCounter).toBeGreaterThan(ahead);
    // Back on track: the next conversation needs no resync.
    expect((await driver.operateRelay(closesMeter, 'reconnect', req())).outcome).toBe('ok');
    expect(driver.counters.counterResyncs - resyncs).toBe(1);
  });

  it("the simulators' record: no invocation counter value was ever sent twice to a meter", () => {
    for (const id of ['SEC-A21', 'SEC-C22', 'SEC-D23']) {
      const seen = bus.busMeter(id).cosem.seenCounters;
      expect(seen.length).toBeGreaterThan(5);
      expect(new Set(seen).size).toBe(seen.length);
    }
  });

  it('the public client reads the frame counter and the disconnect control state, nothing else', async () => {
    const m = bus.busMeter('SEC-A21').cosem;
    const { decodeAare, encodeAarq, CLIENT_CONFORMANCE } = await import('../../drivers/dlms/acse-apdu.js');
    const { decodeResponse, encodeRequest } = await import('../../drivers/dlms/xdlms-apdu.js');
    const { FRAME_COUNTER_OBIS } = await import('../../simulators/dlms-meter.js');
    const { OBIS } = await import('../../drivers/dlms/cosem/obis.js');
    const { stripLlc, LLC_RESPONSE } = await import('../../drivers/dlms/llc.js');
    m.resetLink();
    const ask = (apdu: Uint8Array) => stripLlc(LLC_RESPONSE, m.answer(apdu, Date.now(), 16)!.info)!;
    expect(decodeAare(ask(encodeAarq({ mechanism: 'lowest', conformance: CLIENT_CONFORMANCE, maxPduSize: 1024 }))).result).toBe(0);
    const fc = decodeResponse(ask(encodeRequest({ kind: 'get', invokeId: 1, attribute: { classId: 1, logicalName: FRAME_COUNTER_OBIS, attribute: 2 } })));
    expect(fc).toMatchObject({ kind: 'get', result: { data: { type: 'double-long-unsigned', value: m.lastClientCounter } } });
    const state = decodeResponse(ask(encodeRequest({ kind: 'get', invokeId: 2, attribute: { classId: 70, logicalName: OBIS.disconnectControl, attribute: 3 } })));
    expect(state.kind === 'get' && 'data' in state.result).toBe(true);
    const act = decodeResponse(ask(encodeRequest({ kind: 'action', invokeId: 3, method: { classId: 70, logicalName: OBIS.disconnectControl, method: 1 }, parameter: { type: 'integer', value: 0 } })));
    expect(act).toMatchObject({ kind: 'action', result: 3 /* read-write-denied */ });
    const clock = decodeResponse(ask(encodeRequest({ kind: 'get', invokeId: 4, attribute: { classId: 8, logicalName: OBIS.clock, attribute: 2 } })));
    expect(clock).toMatchObject({ kind: 'get', result: { error: 3 } });
    m.resetLink();
  });
});

describe('DLMS profile schema: security combinations', () => {
  const base = { clientSap: 1, baudRate: 9600, controlMode: 1, hdlc: {} };
  it('accepts hls-gmac with or without ciphering, and defaults the frame counter and public client', () => {
    const p = DlmsProfileSchema.parse({ ...base, security: 'hls-gmac', keys: ['GUEK', 'GAK'] });
    expect(p).toMatchObject({ ciphering: 'none', dedicatedKey: false, frameCounterObis: '0-0:43.1.0.255', publicClientSap: 16 });
    expect(DlmsProfileSchema.safeParse({ ...base, security: 'hls-gmac', ciphering: 'authenticated-encrypted', dedicatedKey: true, keys: ['GUEK', 'GAK', 'KEK'] }).success).toBe(true);
  });
  it.each([
    [{ security: 'hls-gmac', passwordEnv: 'METERLINE_X' }, /not a password: remove passwordEnv/],
    [{ security: 'lowest', ciphering: 'authenticated' }, /ciphering needs the meter's keys/],
    [{ security: 'hls-gmac', ciphering: 'authenticated', dedicatedKey: true }, /dedicatedKey needs ciphering 'encrypted'/],
    [{ security: 'hls-gmac', publicClientSap: 1 }, /public client SAP must differ/],
    [{ security: 'hls-gmac', encryptionKey: '000102' }, /Unrecognized key/i],
  ])('rejects %j with a clear message', (extra, message) => {
    const r = DlmsProfileSchema.safeParse({ ...base, ...extra });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message).join('; ')).toMatch(message);
  });
});
