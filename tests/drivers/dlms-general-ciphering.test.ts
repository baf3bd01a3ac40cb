import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { fileURLToPath } from 'node:url';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import type { RequestOptions } from '../../drivers/driver.js';
import { CosemClient } from '../../drivers/dlms/cosem-client.js';
import { OBIS } from '../../drivers/dlms/cosem/obis.js';
import { LLC_RESPONSE, stripLlc } from '../../drivers/dlms/llc.js';
import { CipheringChannel } from '../../drivers/dlms/security/ciphering-channel.js';
import { DlmsWireFailure } from '../../drivers/dlms/wire-failure.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsProfileSchema } from '../../src/domain/profiles/dlms-profile.js';
import { DlmsBusSimulator, simulatedDlmsMeter } from '../../simulators/dlms-bus.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { dlmsAddress } from './dlms/fixture.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';

/**
 * general-glo-ciphering (0xDB) and general-ded-ciphering (0xDC) from the client (Green Book §9.2.7.2.4): a profile with
 * cipheredApdu 'general' switches meters over a real pty with every service APDU in the general form carrying the
 * system title, the meter answering in kind; a meter that does not grant general-protection, and a system title that
 * is not the association's (either way), are refused with clear outcomes.
 */

const T = 1500;
const LINK = 'rs485-gglo';
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
let seq = 0;
const req = (timeoutMs = T): RequestOptions => {
  const orderId = `dlms-gglo-${++seq}`;
  return { correlationId: `${orderId}:1:cmd`, orderId, timeoutMs, attempt: 1 };
};

function generalProfiles(): { idis: DlmsFirmwareProfile; dsmr: DlmsFirmwareProfile } {
  const dir = fileURLToPath(new URL('../../firmware-profiles', import.meta.url));
  const all = [...loadFirmwareProfiles(dir).values()].filter((p): p is DlmsFirmwareProfile => p.protocol === 'dlms');
  const general = (p: DlmsFirmwareProfile, id: string): DlmsFirmwareProfile => ({
    ...p,
    id,
    timeouts: { commandMs: T, readMs: T },
    dlms: DlmsProfileSchema.parse({ ...p.dlms, cipheredApdu: 'general', hdlc: { ...p.dlms.hdlc, responseTimeoutMs: 150 } }),
  });
  return { idis: general(all.find((p) => p.id === 'idis-hls-gmac-mode6')!, 'idis-general-glo'), dsmr: general(all.find((p) => p.id === 'dsmr5-hls-gmac-mode1')!, 'dsmr5-general-ded') };
}

const keysOf = (n: number): SimMeterKeys => ({
  encryptionKey: Buffer.alloc(16, 0x20 + n),
  authenticationKey: Buffer.alloc(16, 0xe0 + n),
  systemTitle: Buffer.from(`4747${n.toString(16).padStart(2, '0')}0000BC614E`.slice(0, 16), 'hex'),
});
const KEY_HEX = [1, 2, 3].flatMap((n) => [keysOf(n).encryptionKey.toString('hex'), keysOf(n).authenticationKey.toString('hex')]);
const apdusOf = (evidence: string | undefined) => (JSON.parse(evidence ?? '{}') as { apdus: string[] }).apdus;

describe("DLMS profile cipheredApdu 'general' over a real pty", () => {
  let pty: PtyPair;
  let bus: DlmsBusSimulator;
  let driver: DlmsDriver;
  const keyring = new MemoryKeyring();
  const { idis, dsmr } = generalProfiles();
  const gloMeter = dlmsAddress('GG-A31', idis, LINK, '31');
  const dedMeter = dlmsAddress('GG-D32', dsmr, LINK, '32');
  const oldMeter = dlmsAddress('GG-O33', idis, LINK, '33');

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new DlmsBusSimulator({
      path: pty.devicePath,
      logger,
      meters: [
        { meterId: 'GG-A31', physicalAddress: 31, controlMode: 6, keys: keysOf(1) },
        { meterId: 'GG-D32', physicalAddress: 32, controlMode: 1, keys: keysOf(2) },
        // A meter that speaks only the service-specific glo-/ded- APDUs.
        { meterId: 'GG-O33', physicalAddress: 33, controlMode: 6, keys: keysOf(3), generalProtection: false },
      ],
    });
    await bus.start();
    for (const [id, n] of [['GG-A31', 1], ['GG-D32', 2], ['GG-O33', 3]] as const) {
      const k = keysOf(n);
      keyring.set(id, { keySetId: `${id}-ks1`, encryptionKey: k.encryptionKey, authenticationKey: k.authenticationKey });
    }
    driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: [idis, dsmr], logger, keyring });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  it('global key: disconnect and reconnect go as general-glo-ciphering (0xDB) both ways, the relay moves', async () => {
    const m = bus.busMeter('GG-A31');
    m.cosem.wireTags.length = 0;
    const off = await driver.operateRelay(gloMeter, 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(m.meter.relay).toBe('disconnected');
    const on = await driver.operateRelay(gloMeter, 'reconnect', req());
    expect(on.outcome === 'ok' && on.value).toMatchObject({ claimedRelay: 'armed', remoteReconnect: 'arms' });
    expect(m.meter.relay).toBe('armed');
    const apdus = apdusOf(on.outcome === 'ok' ? on.evidence : undefined);
    // The AARQ keeps its glo-initiate-request; every service request after passes 3/4 is 0xDB with our system title.
    const client = '4d544c0000000001';
    expect(apdus.some((a) => a.startsWith(`>db08${client}`))).toBe(true);
    expect(apdus.some((a) => a.startsWith(`<db08${keysOf(1).systemTitle.toString('hex')}`))).toBe(true);
    expect(apdus.filter((a) => /^>(c[89a-f]|d[0-7])/.test(a))).toEqual([]);
    for (const k of KEY_HEX) expect((on.outcome === 'ok' ? on.evidence! : '').toLowerCase()).not.toContain(k);
    // The simulator's own record of what crossed the wire.
    expect(m.cosem.wireTags).toContain('>db');
    expect(m.cosem.wireTags).toContain('<db');
    expect(m.cosem.wireTags.filter((t) => /^[<>](c[89a-f]|d[0-7])$/.test(t))).toEqual([]);
    expect(m.cosem.counters.hlsFailures).toBe(0);
  });

  it('dedicated key: the service APDUs go as general-ded-ciphering (0xDC) and the switch works', async () => {
    const m = bus.busMeter('GG-D32');
    m.cosem.wireTags.length = 0;
    const off = await driver.operateRelay(dedMeter, 'disconnect', req());
    expect(off.outcome).toBe('ok');
    expect(m.meter.relay).toBe('disconnected');
    const apdus = apdusOf(off.outcome === 'ok' ? off.evidence : undefined);
    expect(apdus.some((a) => a.startsWith('>dc08'))).toBe(true);
    expect(apdus.some((a) => a.startsWith('<dc08'))).toBe(true);
    expect(m.cosem.wireTags).toContain('>dc');
    expect(m.cosem.wireTags.filter((t) => t === '>db' || t === '>d3')).toEqual([]);
    const read = await driver.readRelay(dedMeter, req());
    expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
  });

  it('a meter that does not grant general-protection: nack naming the profile setting, no service APDU sent, relay unchanged', async () => {
    const m = bus.busMeter('GG-O33');
    const relay = m.meter.relay;
    m.cosem.wireTags.length = 0;
    const res = await driver.operateRelay(oldMeter, 'disconnect', req());
    expect(res.outcome).toBe('nack');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/did not grant general-protection.*cipheredApdu 'general'.*service-specific/);
    expect(m.meter.relay).toBe(relay);
    expect(m.cosem.wireTags.filter((t) => t.startsWith('>') && t !== '>60' && t !== '>62')).toEqual([]);
  });
});

describe('general ciphering: system titles checked on both sides (client channel against the simulated meter)', () => {
  const keys = keysOf(7);
  const CLIENT_ST = Buffer.from('4d544c0000000009', 'hex');
  const OTHER_ST = Buffer.from('4d544c00000000ff', 'hex');

  /** The client's secure channel straight onto a simulated meter, with a hook that may rewrite bytes either way. */
  function rig(tamper: { request?: (a: Uint8Array) => Uint8Array; answer?: (a: Uint8Array) => Uint8Array }) {
    const { cosem } = simulatedDlmsMeter({ meterId: 'GG-X', physicalAddress: 40, controlMode: 6, keys }, () => Date.now());
    const keyring = new MemoryKeyring();
    const meterKeys = { keySetId: 'GG-X-ks1', encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey };
    keyring.set('GG-X', meterKeys);
    const inner = {
      async request(apdu: Uint8Array) {
        const out = cosem.answer(tamper.request ? tamper.request(apdu) : apdu, Date.now(), 1);
        if (!out) throw new Error('meter silent');
        const body = stripLlc(LLC_RESPONSE, out.info)!;
        return tamper.answer ? tamper.answer(body) : body;
      },
    };
    const secure = new CipheringChannel(inner, { meterId: 'GG-X', where: 'GG-X@test', keys: meterKeys, keyring, clientSystemTitle: CLIENT_ST, mechanism: 'hls-gmac', policy: 'authenticated-encrypted', dedicatedKey: false, cipheredApdu: 'general' });
    const client = new CosemClient(secure, 'GG-X@test');
    return { cosem, secure, client };
  }
  const retitle = (a: Uint8Array, title: Buffer) => {
    if (a[0] !== 0xdb) return a;
    const b = Buffer.from(a);
    title.copy(b, 2);
    return b;
  };
  const controlState = { classId: 70, logicalName: OBIS.disconnectControl, attribute: 3, name: 'control_state' };

  it('untouched: a GET goes as 0xDB and comes back deciphered', async () => {
    const { client, secure } = rig({});
    await client.associate({ mechanism: 'hls-gmac', maxPduSize: 1024, secure });
    expect((await client.get(controlState)).type).toBe('enum');
    expect(secure.wire.filter((w) => w.startsWith('>db')).length).toBeGreaterThan(0);
  });

  it("an answer carrying another system title than the AARE's responding-AP-title: auth_failed naming both titles", async () => {
    let armed = false;
    const { client, secure } = rig({ answer: (a) => (armed ? retitle(a, OTHER_ST) : a) });
    await client.associate({ mechanism: 'hls-gmac', maxPduSize: 1024, secure });
    armed = true;
    const e = await client.get(controlState).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DlmsWireFailure);
    expect((e as DlmsWireFailure).outcome).toBe('auth_failed');
    expect((e as DlmsWireFailure).detail).toContain(`system title ${OTHER_ST.toString('hex')}, not the meter's responding-AP-title ${keys.systemTitle.toString('hex')}`);
  });

  it("a request carrying another system title than the association's calling-AP-title: the meter answers deciphering-error, auth_failed", async () => {
    let armed = false;
    const { client, secure, cosem } = rig({ request: (a) => (armed ? retitle(a, OTHER_ST) : a) });
    await client.associate({ mechanism: 'hls-gmac', maxPduSize: 1024, secure });
    armed = true;
    const before = cosem.seenCounters.length;
    const e = await client.get(controlState).catch((x: unknown) => x);
    expect((e as DlmsWireFailure).outcome).toBe('auth_failed');
    expect((e as DlmsWireFailure).detail).toMatch(/could not decipher our request/);
    expect(cosem.seenCounters.length).toBe(before); // refused before its counter was even looked at
  });

  it('an answer in the service-specific form (glo-get-response 0xCC) to a general request is garbled', async () => {
    // DB ‖ 08 ‖ title ‖ len ‖ content  →  CC ‖ len ‖ content: the same protected content, service-specific framing.
    let armed = false;
    const { client, secure } = rig({ answer: (a) => (armed && a[0] === 0xdb ? Uint8Array.from([0xcc, ...a.subarray(10)]) : a) });
    await client.associate({ mechanism: 'hls-gmac', maxPduSize: 1024, secure });
    armed = true;
    const e = await client.get(controlState).catch((x: unknown) => x);
    expect((e as DlmsWireFailure).outcome).toBe('garbled');
    expect((e as DlmsWireFailure).detail).toMatch(/answer 0xcc to a ciphered request is not the global ciphered response 0xdb/);
  });
});

describe("DLMS profile schema: cipheredApdu", () => {
  const base = { clientSap: 1, baudRate: 9600, controlMode: 1, hdlc: {}, security: 'hls-gmac', keys: ['GUEK', 'GAK'] };
  it("defaults to 'service-specific' and takes 'general' with ciphering", () => {
    expect(DlmsProfileSchema.parse(base).cipheredApdu).toBe('service-specific');
    expect(DlmsProfileSchema.parse({ ...base, ciphering: 'authenticated', cipheredApdu: 'general' }).cipheredApdu).toBe('general');
  });
  it.each([
    [{ cipheredApdu: 'general' }, /cipheredApdu 'general' \(general-glo\/ded-ciphering\) needs ciphering other than 'none'/],
    [{ ciphering: 'authenticated', cipheredApdu: 'general-ciphering' }, /expected one of "service-specific"\|"general"/],
  ])('rejects %j with a clear message', (extra, message) => {
    const r = DlmsProfileSchema.safeParse({ ...base, ...extra });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message).join('; ')).toMatch(message);
  });
});
