import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlMode } from '../../drivers/dlms/cosem/disconnect-control.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsBusSimulator, type BusMeterSpec } from '../../simulators/dlms-bus.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { writeFastProfiles } from '../harness/test-profiles.js';

/**
 * Issue 15, acceptance 1–2: the gateway switches simulated meters with HLS-GMAC (mechanism 5) and authenticated and
 * encrypted APDUs (security suite 0), as an operator runs it: the key master in the gateway's environment, the
 * manufacturer's key file imported through POST /v1/meter-keys/import (CSV), meters registered over the API,
 * disconnect then reconnect through the API, on an HDLC bus over a real pty AND on a TCP wrapper link (IEC 62056-47)
 * to a simulated concentrator. Every control mode that arms on remote_reconnect (1, 3, 5, 6) and one that closes (2).
 * A meter holding other keys ends after one attempt as auth_failed (a `credentials` work order, counted per link),
 * as does one with no keys imported; an unreachable meter is retried as before. Neither the orders, the work orders
 * nor the gateway's debug log hold a key; after a restart the invocation counters carry on from the store.
 */

const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
/** Everything the gateway logs, at debug (the driver logs each conversation's evidence there), to search for keys. */
const gatewayLog: string[] = [];
const gatewayLogger = pino({ level: 'debug' }, { write: (line: string) => void gatewayLog.push(line) });
const PTY_LINK = 'rs485-sec';
const TCP_LINK = 'dc-sec';
const MASTER = randomBytes(32).toString('hex');

/** Each profile's test copy: generous timeouts (a loaded 2-core machine), quick backoff, the relay operates at once. */
function testProfile(p: DlmsFirmwareProfile, change: Partial<DlmsFirmwareProfile> = {}): DlmsFirmwareProfile {
  return {
    ...p,
    timeouts: { commandMs: 5000, readMs: 5000 },
    relay: { ...p.relay, operateTimeMs: 20 },
    retry: { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200 },
    ...change,
    dlms: { ...p.dlms, hdlc: { ...p.dlms.hdlc, responseTimeoutMs: 300 }, ...change.dlms },
  };
}

/**
 * The shipped HLS-GMAC profiles and the same IDIS family configured in control modes 2, 3 and 5; and the mode-6
 * profile with short timeouts for the meters that never answer (a timeout costs the command's and the read-back's
 * deadline per attempt; these keep the file quick without shortening anything a meter that answers relies on).
 */
const SILENT_PROFILE = 'idis-hls-gmac-mode6-short';
function writeHlsProfiles(dir: string): Record<ControlMode, string> {
  const shipped = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles'));
  const idis = shipped.get('idis-hls-gmac-mode6') as DlmsFirmwareProfile;
  const dsmr = shipped.get('dsmr5-hls-gmac-mode1') as DlmsFirmwareProfile;
  const variant = (mode: ControlMode, remoteReconnect: 'arms' | 'closes'): DlmsFirmwareProfile =>
    testProfile(idis, { id: `idis-hls-gmac-mode${mode}`, dlms: { ...idis.dlms, controlMode: mode }, relay: { ...idis.relay, remoteReconnect } });
  const short = testProfile(idis, { id: SILENT_PROFILE, timeouts: { commandMs: 1500, readMs: 1500 } });
  const profiles = [testProfile(dsmr), variant(2, 'closes'), variant(3, 'arms'), variant(5, 'arms'), testProfile(idis), short];
  for (const p of profiles) writeFileSync(join(dir, `${p.id}.json`), JSON.stringify(p, null, 2));
  return { 0: '', 1: dsmr.id, 2: 'idis-hls-gmac-mode2', 3: 'idis-hls-gmac-mode3', 4: '', 5: 'idis-hls-gmac-mode5', 6: idis.id };
}

interface SecMeter {
  meterId: string;
  link: string;
  /** The meter's address as registered: its HDLC physical address on the pty, its wPort on the wrapper link. */
  address: number;
  mode: ControlMode;
  keys: SimMeterKeys;
}

let serial = 0;
function secMeter(link: string, prefix: string, address: number, mode: ControlMode, suffix = ''): SecMeter {
  const n = ++serial;
  return {
    meterId: `SEC-${prefix}${mode}${suffix}`,
    link,
    address,
    mode,
    keys: {
      encryptionKey: randomBytes(16),
      authenticationKey: randomBytes(16),
      systemTitle: Buffer.from(`4D4C${n.toString(16).padStart(4, '0')}0000BC61`, 'hex'),
    },
  };
}

const MODES: ControlMode[] = [1, 3, 5, 6, 2];
const arms = (mode: ControlMode) => mode !== 2 && mode !== 4;
const ptyMeters = MODES.map((mode, i) => secMeter(PTY_LINK, 'H', 41 + i, mode));
const tcpMeters = MODES.map((mode, i) => secMeter(TCP_LINK, 'W', 51 + i, mode));
const ptyWrongKey = secMeter(PTY_LINK, 'H', 48, 6, '-WRONGKEY');
const tcpWrongKey = secMeter(TCP_LINK, 'W', 58, 6, '-WRONGKEY');
const ptyOffline = secMeter(PTY_LINK, 'H', 49, 6, '-OFFLINE');
const tcpOffline = secMeter(TCP_LINK, 'W', 59, 6, '-OFFLINE');
/** Registered with an HLS profile, but its row was left out of the key file. */
const ptyNoKeys = secMeter(PTY_LINK, 'H', 50, 6, '-NOKEYS');
const IMPORTED = [...ptyMeters, ...tcpMeters, ptyWrongKey, tcpWrongKey, ptyOffline, tcpOffline];
const ALL = [...IMPORTED, ptyNoKeys];
const KEY_HEX = ALL.flatMap((m) => [m.keys.encryptionKey.toString('hex'), m.keys.authenticationKey.toString('hex')]);

const spec = (m: SecMeter): BusMeterSpec => ({
  meterId: m.meterId,
  physicalAddress: m.address,
  ...(m.link === TCP_LINK ? { logicalAddress: m.address } : {}),
  controlMode: m.mode,
  keys: m.keys,
  initialRelay: 'connected',
});

let pty: PtyPair;
let bus: DlmsBusSimulator;
let dc: DlmsTcpServer;
let f: GatewayFixture;
const keySetIds = new Map<string, string>();
let n = 0;
const k = () => ({ 'idempotency-key': `dlms-sec-e2e-${++n}` });

/** The simulated meter model, wherever it sits. */
const simOf = (m: SecMeter) => (m.link === PTY_LINK ? bus.busMeter(m.meterId) : { meter: dc.meter(m.meterId), cosem: dc.simMeter(m.meterId) });

beforeAll(async () => {
  pty = await startPtyPair();
  bus = new DlmsBusSimulator({ path: pty.devicePath, logger, meters: [...ptyMeters, ptyWrongKey, ptyOffline, ptyNoKeys].map(spec) });
  await bus.start();
  dc = new DlmsTcpServer({ mode: 'wrapper', port: 0, logger, meters: [...tcpMeters, tcpWrongKey, tcpOffline].map(spec) });
  await dc.start();

  const { dir: profilesDir } = writeFastProfiles();
  const profileFor = writeHlsProfiles(profilesDir);
  f = await startGatewayFixture(
    [{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }],
    {
      profilesDir,
      dlms: {
        ports: { [PTY_LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } },
        tcp: { [TCP_LINK]: { kind: 'wrapper', host: '127.0.0.1', port: dc.port, maxConnections: 2, connectTimeoutMs: 2000, reconnectMs: 100 } },
        // The password (LLS) profiles ship beside the HLS ones and need theirs to start; no meter here uses them.
        passwords: { 'kam-omnipower-dlms-mode1': { value: 'kam-secret-1' }, 'lgz-e570-dlms-mode2': { value: 'lgz-secret-2' } },
      },
    },
    { env: { METERLINE_KEY_MASTER: MASTER }, logger: gatewayLogger },
  );

  // The manufacturer's key file, as delivered: meter id, system title, GUEK, GAK. The wrong-key meters' rows hold
  // the keys the gateway will use; their simulators are switched to other keys below.
  const csv = ['meter id,system title,GUEK,GAK', ...IMPORTED.map((m) => [m.meterId, m.keys.systemTitle.toString('hex').toUpperCase(), m.keys.encryptionKey.toString('hex'), m.keys.authenticationKey.toString('hex')].join(','))].join('\n') + '\n';
  const imported = await f.http('POST', '/v1/meter-keys/import', { key: f.adminKey, headers: k(), body: { format: 'csv', content: csv } });
  expect(imported.status, JSON.stringify(imported.body)).toBe(200);
  expect(imported.body).toMatchObject({ imported: IMPORTED.length, created: IMPORTED.length });
  for (const ks of imported.body.keySets) keySetIds.set(ks.meterId, ks.keySetId);
  for (const hex of KEY_HEX) expect(JSON.stringify(imported.body).toLowerCase()).not.toContain(hex);

  for (const m of ALL) {
    const profileId = m === ptyOffline || m === tcpOffline ? SILENT_PROFILE : profileFor[m.mode];
    const res = await f.http('PUT', `/v1/meters/${m.meterId}`, { body: { profileId, link: m.link, region: 'north', address: String(m.address) } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
  for (const m of [ptyWrongKey, tcpWrongKey]) simOf(m).cosem.faults.wrongKey = true;
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await dc?.stop();
  await bus?.stop();
  if (pty) {
    await pty.stop();
    removePtyDir(pty);
  }
});

const disconnect = (meterId: string) => f.http('POST', `/v1/meters/${meterId}/disconnect`, { headers: k(), body: { reason: 'customer_request', reference: `REQ-${meterId}` } });
const reconnect = (meterId: string) => f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: k(), body: { reason: 'payment' } });

/** Every APDU the gateway sent in a conversation (evidence lines start ">" for sent, "<" for received). */
function sentApdus(evidence: string | null): string[] {
  const parsed = JSON.parse(evidence ?? '{}') as { apdus?: string[] };
  return (parsed.apdus ?? []).filter((a) => a.startsWith('>'));
}

/** The order's JSON as an operator fetches it carries the key set id, never a key. */
function expectNoKeys(order: unknown): void {
  const text = JSON.stringify(order).toLowerCase();
  for (const hex of KEY_HEX) expect(text).not.toContain(hex);
}

/** A switch through the gateway: one attempt, verified by a read-back, every service APDU ciphered. */
function expectCipheredSwitch(m: SecMeter, order: any, relay: string): void {
  expect(order.state, JSON.stringify(order)).toBe(relay === 'armed' ? 'armed' : 'done');
  expect(order.result).toEqual({ relay, verified: true });
  const attempt = order.attempts.at(-1);
  expect(attempt.outcome).toBe('ok');
  expect(attempt.evidence.readBack).toContain('"controlState"');
  const command = JSON.parse(attempt.evidence.command) as { keySetId: string; controlMode: number; ciphering: string };
  // The meter's own control_mode, read in the association, is the one it was set up in.
  expect(command).toMatchObject({ keySetId: keySetIds.get(m.meterId), controlMode: m.mode, ciphering: 'authenticated-encrypted' });
  expect(JSON.parse(attempt.evidence.readBack)).toMatchObject({ keySetId: keySetIds.get(m.meterId), relay });
  const sent = sentApdus(attempt.evidence.command);
  // The ACTION went ciphered (glo-action-request 0xCB, or ded-action-request 0xD3 with a dedicated key); no plain
  // GET (0xC0), SET (0xC1) or ACTION (0xC3) request left the gateway.
  expect(sent.some((a) => a.startsWith('>cb') || a.startsWith('>d3')), sent.join(' ')).toBe(true);
  expect(sent.filter((a) => /^>c[013]/.test(a))).toEqual([]);
  expectNoKeys(order);
}

describe.each([
  { name: 'an HDLC bus on a pty', meters: ptyMeters },
  { name: 'a TCP wrapper link', meters: tcpMeters },
])('HLS-GMAC meters, authenticated and encrypted APDUs, through the API on $name', ({ meters }) => {
  const disconnectAll = async () => {
    const offs = await Promise.all(meters.map((m) => disconnect(m.meterId)));
    for (const res of offs) expect(res.status, JSON.stringify(res.body)).toBe(202);
    for (const [i, m] of meters.entries()) {
      const o = await f.waitForOrder(offs[i]!.body.id, undefined, 30_000);
      expectCipheredSwitch(m, o, 'disconnected');
      expect(simOf(m).meter.relay).toBe('disconnected');
    }
  };

  it('disconnect then reconnect in control modes 1, 3, 5, 6 (armed) and 2 (done, connected), read back', async () => {
    await disconnectAll();

    const ons = await Promise.all(meters.map((m) => reconnect(m.meterId)));
    for (const res of ons) expect(res.status, JSON.stringify(res.body)).toBe(202);
    for (const [i, m] of meters.entries()) {
      const o = await f.waitForOrder(ons[i]!.body.id, undefined, 30_000);
      expectCipheredSwitch(m, o, arms(m.mode) ? 'armed' : 'connected');
      expect(simOf(m).meter.relay).toBe(arms(m.mode) ? 'armed' : 'connected');
      expect(simOf(m).cosem.counters.hlsFailures).toBe(0);
    }
  }, 60_000);

  it('a second disconnect ends disconnected in every mode (from armed: transition c); no invocation counter value was sent twice', async () => {
    await disconnectAll();
    for (const m of meters) {
      const seen = simOf(m).cosem.seenCounters;
      expect(seen.length).toBeGreaterThan(6);
      expect(new Set(seen).size).toBe(seen.length);
    }
  }, 60_000);
});

describe('a meter that holds other keys, and one that does not answer', () => {
  const sample = async (series: string): Promise<number> => {
    const text = (await f.http('GET', '/metrics', { key: f.adminKey })).body as string;
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };

  it.each([
    { name: 'pty', m: ptyWrongKey },
    { name: 'TCP wrapper', m: tcpWrongKey },
  ])('wrong key ($name): one attempt, auth_failed, a credentials work order, counted once for the link', async ({ m }) => {
    const sim = simOf(m);
    const refusedBefore = sim.cosem.counters.refused;
    const res = await disconnect(m.meterId);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const o = await f.waitForOrder(res.body.id, undefined, 30_000);
    expect(o.state).toBe('failed');
    expect(o.attemptsUsed).toBe(1);
    expect(o.attempts.map((a: any) => a.outcome)).toEqual(['auth_failed']);
    // The evidence is the AARQ as sent and the meter's AARE (rejected); no read-back association was spent on a second refusal.
    expect(o.attempts[0].evidence.command).toMatch(/^>60[0-9a-f]+ <61[0-9a-f]+$/);
    expect(o.attempts[0].evidence.readBack).toBeNull();
    expect(o.stateReason).toMatch(/refused the gateway's credentials.*retrying with the same keys cannot succeed/);
    expect(o.stateReason).toContain(keySetIds.get(m.meterId));
    expectNoKeys(o);
    expect(sim.cosem.counters.refused - refusedBefore).toBe(1);
    expect(sim.meter.relay).toBe('connected');

    const wo = (await f.http('GET', '/v1/work-orders?status=open')).body.items.find((w: any) => w.orderId === o.id);
    expect(wo).toMatchObject({ kind: 'credentials', action: 'disconnect', meterId: m.meterId });
    expect(wo.reason).toMatch(/the disconnect was not done/);
    expectNoKeys(wo);
    expect(await sample(`meterline_auth_failures_total{protocol="dlms",link="${m.link}"}`)).toBe(1);

    // Well past the retry backoff (50–200 ms) and many control ticks: still one attempt, nothing more to the meter.
    await new Promise((r) => setTimeout(r, 800));
    expect((await f.http('GET', `/v1/orders/${o.id}`)).body.attemptsUsed).toBe(1);
    expect(sim.cosem.counters.refused - refusedBefore).toBe(1);
  }, 40_000);

  it('an unreachable HLS meter (pty, and behind a reachable concentrator) is retried as before (timeouts), then failed; no credentials work order, no auth failure counted', async () => {
    const meters = [ptyOffline, tcpOffline];
    const before = await Promise.all(meters.map((m) => sample(`meterline_auth_failures_total{protocol="dlms",link="${m.link}"}`)));
    for (const m of meters) simOf(m).meter.setFaults({ offlineUntil: Date.now() + 120_000 });
    const submitted = await Promise.all(meters.map((m) => disconnect(m.meterId)));
    for (const [i, m] of meters.entries()) {
      const o = await f.waitForOrder(submitted[i]!.body.id, undefined, 40_000);
      expect(o.state).toBe('failed');
      expect(o.attemptsUsed).toBe(3);
      expect(o.attempts.map((a: any) => a.outcome)).toEqual(['timeout', 'timeout', 'timeout']);
      expect(o.stateReason).toMatch(/^3 of 3 attempts used; last: timeout/);
      const wos = (await f.http('GET', '/v1/work-orders')).body.items.filter((w: any) => w.orderId === o.id);
      expect(wos.filter((w: any) => w.kind === 'credentials')).toEqual([]);
      expect(await sample(`meterline_auth_failures_total{protocol="dlms",link="${m.link}"}`)).toBe(before[i]);
      expect(simOf(m).meter.relay).toBe('connected');
      expect(simOf(m).cosem.counters.refused).toBe(0);
      expectNoKeys(o);
    }
  }, 60_000);
});

describe('a meter with no keys imported', () => {
  it('is an auth_failed too: one attempt, nothing on the wire, a credentials work order, counted for the link', async () => {
    const sim = simOf(ptyNoKeys);
    const before = { ...sim.cosem.counters };
    const res = await disconnect(ptyNoKeys.meterId);
    const o = await f.waitForOrder(res.body.id, undefined, 30_000);
    expect(o.state).toBe('failed');
    expect(o.attempts.map((a: any) => a.outcome)).toEqual(['auth_failed']);
    expect(o.attempts[0].detail).toMatch(/no keys imported for meter SEC-H6-NOKEYS/);
    expect(sim.cosem.counters).toEqual(before);
    expect(sim.meter.relay).toBe('connected');
    const wo = (await f.http('GET', '/v1/work-orders?status=open')).body.items.find((w: any) => w.orderId === o.id);
    expect(wo).toMatchObject({ kind: 'credentials', meterId: ptyNoKeys.meterId });
    const metrics = (await f.http('GET', '/metrics', { key: f.adminKey })).body as string;
    expect(metrics).toContain(`meterline_auth_failures_total{protocol="dlms",link="${PTY_LINK}"} 2`);
  }, 30_000);
});

describe('keys stay out of what a user sees', () => {
  it("the gateway's log (debug: every conversation) never holds a key (hex either case, base64); refusals name the key set id", () => {
    const log = gatewayLog.join('');
    expect(gatewayLog.length).toBeGreaterThan(50);
    // The refusals are logged naming the key set the meter did not accept, by id.
    for (const m of [ptyWrongKey, tcpWrongKey]) expect(log).toContain(keySetIds.get(m.meterId));
    for (const m of ALL) {
      for (const key of [m.keys.encryptionKey, m.keys.authenticationKey]) {
        for (const form of [key.toString('hex'), key.toString('hex').toUpperCase(), key.toString('base64'), key.toString('base64url')]) expect(log).not.toContain(form);
      }
    }
    expect(log).not.toContain(MASTER);
  });
});

describe('a gateway restart', () => {
  it('the invocation counters carry on from the store: the next switches need no resync and no counter value repeats', async () => {
    const meters = [ptyMeters[3]!, tcpMeters[0]!]; // mode 6 (global key) on the pty, mode 1 (dedicated key) on the wrapper
    const before = meters.map((m) => ({ ...simOf(m).cosem.counters, lastSeen: Math.max(...simOf(m).cosem.seenCounters) }));
    for (const m of meters) expect(simOf(m).meter.relay).toBe('disconnected');
    await f.restartGateway();
    const submitted = await Promise.all(meters.map((m) => reconnect(m.meterId)));
    for (const [i, m] of meters.entries()) {
      const o = await f.waitForOrder(submitted[i]!.body.id, undefined, 30_000);
      expectCipheredSwitch(m, o, 'armed');
      const sim = simOf(m).cosem;
      // The gateway's first counter after the restart was above every one it had sent: the meter refused none and
      // nobody had to read the frame counter through the public client.
      expect(sim.counters.rejectedCounters).toBe(before[i]!.rejectedCounters);
      expect(sim.counters.publicAssociations).toBe(before[i]!.publicAssociations);
      const after = sim.seenCounters.slice(sim.seenCounters.indexOf(before[i]!.lastSeen) + 1);
      expect(after.length).toBeGreaterThan(0);
      expect(Math.min(...after)).toBeGreaterThan(before[i]!.lastSeen);
      expect(new Set(sim.seenCounters).size).toBe(sim.seenCounters.length);
    }
  }, 60_000);
});
