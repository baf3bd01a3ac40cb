import { afterEach, describe, expect, it } from 'vitest';
import { Socket } from 'node:net';
import { pino } from 'pino';
import { createDlmsDriver, type DlmsDriver, type DlmsPushHooks, type PushDecipher } from '../../drivers/dlms/index.js';
import type { RelayReading } from '../../drivers/driver.js';
import { ControlState } from '../../drivers/dlms/cosem/disconnect-control.js';
import { decodeNotification, disconnectPushBody, disconnectStateOf, encodeControlStateEvent, encodeDataNotification } from '../../drivers/dlms/push-notification.js';
import { encodeWrapperFrame } from '../../drivers/dlms/wrapper-frame.js';
import { DlmsPushListener } from '../../drivers/dlms/push-listener.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { dlmsTestProfiles, passwordEnv, TEST_PASSWORDS, waitFor } from './dlms/fixture.js';

/**
 * Push (issue 15 item 6): meters' Data-Notifications and Event-Notifications over the TCP wrapper become status
 * reports with source push; everything else is dropped and counted by reason. Real sockets on 127.0.0.1.
 */

const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
const { all, closes, arms } = dlmsTestProfiles(300);
const env = passwordEnv(closes, arms);
const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('push notification codec (IEC 62056-5-3 §9.3.10)', () => {
  it('Data-Notification with the documented push body, byte for byte', () => {
    const apdu = encodeDataNotification({ longInvokeId: 1, body: disconnectPushBody(Buffer.from('M1'), ControlState.Connected) });
    // tag, long-invoke-id-and-priority, date-time (empty), structure(3) { octet-string "M1", octet-string 0-0:96.3.10.255, enum 1 }
    expect(toHex(apdu)).toBe(toHex(h('0F 00000001 00 0203 09024D31 0906000060030AFF 1601')));
    const n = decodeNotification(apdu);
    expect(n).toMatchObject({ kind: 'data-notification', longInvokeId: 1 });
    expect(typeof n !== 'string' && disconnectStateOf(n)).toEqual({ controlState: ControlState.Connected, logicalDeviceName: h('4D31') });
  });

  it('Event-Notification-Request for control_state (class 70, attribute 3), byte for byte', () => {
    const apdu = encodeControlStateEvent(ControlState.ReadyForReconnection);
    expect(toHex(apdu)).toBe(toHex(h('C2 00 0046 0000 60030AFF 03 1602')));
    const n = decodeNotification(apdu);
    expect(typeof n !== 'string' && disconnectStateOf(n)).toEqual({ controlState: ControlState.ReadyForReconnection });
  });

  it('says why when a notification carries no disconnector state or does not decode', () => {
    const other = encodeDataNotification({ longInvokeId: 2, body: { type: 'structure', items: [{ type: 'long-unsigned', value: 7 }] } });
    const n = decodeNotification(other);
    expect(typeof n !== 'string' && disconnectStateOf(n)).toMatch(/no 0-0:96\.3\.10\.255 followed by a control_state/);
    expect(decodeNotification(h('C401C100'))).toMatch(/tag 0xc4 is not a Data-Notification/);
    expect(decodeNotification(h('0F000000'))).toMatch(/too short/);
  });
});

/** What a meter sends: a wrapper frame from its logical device to the push client. */
function pushFrame(apdu: Uint8Array, wPort = 17): Uint8Array {
  return encodeWrapperFrame({ source: wPort, destination: 1, apdu });
}

async function send(port: number, bytes: Uint8Array): Promise<Socket> {
  const s = new Socket();
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.connect({ host: '127.0.0.1', port }, resolve));
  s.write(bytes);
  return s;
}

const SYSTEM_TITLE = h('4D4D4D0000BC614E');
const CIPHERED_OK = 0x30;

/** A stand-in for the security layer: general-glo-ciphering whose "plaintext" is the content after a fake SC byte; SC 0x30 = the tag checks. */
const fakeDecipher: PushDecipher = (systemTitle, apdu) => {
  if (!systemTitle.equals(SYSTEM_TITLE)) return 'unknown-system-title';
  const content = apdu.subarray(2 + systemTitle.length);
  // content: length, SC, plain APDU (a real one is length, SC, IC, ciphertext, tag)
  if (content[1] !== CIPHERED_OK) return 'bad-tag';
  return content.subarray(2);
};

function generalGlo(systemTitle: Uint8Array, sc: number, plain: Uint8Array): Uint8Array {
  return Uint8Array.from([0xdb, systemTitle.length, ...systemTitle, plain.length + 1, sc, ...plain]);
}

describe('DLMS push listener', () => {
  let driver: DlmsDriver | undefined;
  let server: DlmsTcpServer | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await server?.stop();
    await driver?.stop();
    server = driver = undefined;
  });

  async function startDriver(push: Partial<{ maxConnections: number; maxFrameBytes: number }> = {}, hooks: DlmsPushHooks = {}): Promise<{ d: DlmsDriver; reports: Array<{ meterId: string; reading: RelayReading; evidence: string }> }> {
    const d = createDlmsDriver({ links: { push: { port: 0, host: '127.0.0.1', ...push } }, profiles: all, logger, env, push: hooks });
    const reports: Array<{ meterId: string; reading: RelayReading; evidence: string }> = [];
    d.onStatusReport((meterId, reading, evidence) => reports.push({ meterId, reading, evidence }));
    await d.start();
    driver = d;
    return { d, reports };
  }

  it('a button press on a simulated meter is a status report with source push within a second', async () => {
    const known = new Set(['PUSH-A18', 'PUSH-C17']);
    const { d, reports } = await startDriver({}, { meterFor: (s) => (s.logicalDeviceName && known.has(Buffer.from(s.logicalDeviceName).toString('latin1')) ? Buffer.from(s.logicalDeviceName).toString('latin1') : undefined) });
    server = new DlmsTcpServer({
      mode: 'wrapper',
      port: 0,
      logger,
      push: { host: '127.0.0.1', port: d.pushPort! },
      meters: [
        { meterId: 'PUSH-A18', physicalAddress: 18, logicalAddress: 18, controlMode: 1, password: TEST_PASSWORDS.arms, initialRelay: 'armed' },
        { meterId: 'PUSH-C17', physicalAddress: 17, logicalAddress: 17, controlMode: 2, password: TEST_PASSWORDS.closes },
      ],
    });
    await server.start();
    const pressed = Date.now();
    expect(server.meter('PUSH-A18').pressButton()).toBe(true);
    await waitFor(() => reports.length === 1, 1000);
    expect(Date.now() - pressed).toBeLessThan(1000);
    expect(reports[0]!.meterId).toBe('PUSH-A18');
    expect(reports[0]!.reading.relay).toBe('connected');
    expect(JSON.parse(reports[0]!.evidence)).toMatchObject({ source: 'push', service: 'data-notification', wPort: 18, logicalDeviceName: 'PUSH-A18', controlState: 1, relay: 'connected', ciphered: false });
    // A local trip is pushed too.
    expect(server.meter('PUSH-C17').trip()).toBe(true);
    await waitFor(() => reports.length === 2, 1000);
    expect(reports[1]).toMatchObject({ meterId: 'PUSH-C17', reading: { relay: 'disconnected' } });
    expect(d.counters.pushDelivered).toBe(2);
    expect(server.counters.pushesSent).toBe(2);
  });

  it('an Event-Notification-Request for control_state is delivered too, the meter known by wPort and peer', async () => {
    const { d, reports } = await startDriver({}, { meterFor: (s) => (s.wPort === 21 && s.peerAddress === '127.0.0.1' ? 'EV-21' : undefined) });
    sockets.push(await send(d.pushPort!, pushFrame(encodeControlStateEvent(ControlState.Disconnected), 21)));
    await waitFor(() => reports.length === 1, 1000);
    expect(reports[0]).toMatchObject({ meterId: 'EV-21', reading: { relay: 'disconnected' } });
    expect(JSON.parse(reports[0]!.evidence)).toMatchObject({ source: 'push', service: 'event-notification' });
  });

  it('ciphered pushes go through the decipher hook: unknown system title and bad tag are dropped and counted, a good one delivered', async () => {
    const { d, reports } = await startDriver({}, { decipher: fakeDecipher, meterFor: (s) => (s.systemTitle?.equals(SYSTEM_TITLE) ? 'GLO-1' : undefined) });
    const plain = encodeDataNotification({ longInvokeId: 9, body: disconnectPushBody(Buffer.from('GLO-1'), ControlState.Disconnected) });
    const s = await send(d.pushPort!, pushFrame(generalGlo(h('4D4D4D0000000001'), CIPHERED_OK, plain)));
    sockets.push(s);
    s.write(pushFrame(generalGlo(SYSTEM_TITLE, 0x31, plain)));
    s.write(pushFrame(generalGlo(SYSTEM_TITLE, CIPHERED_OK, plain)));
    await waitFor(() => reports.length === 1, 1000);
    expect(d.counters.pushDropped['unknown-system-title']).toBe(1);
    expect(d.counters.pushDropped['bad-tag']).toBe(1);
    expect(reports[0]).toMatchObject({ meterId: 'GLO-1', reading: { relay: 'disconnected' } });
    expect(JSON.parse(reports[0]!.evidence)).toMatchObject({ source: 'push', ciphered: true, systemTitle: '4d4d4d0000bc614e' });
  });

  it('a ciphered push with no decipher hook, a push from an unknown meter, and a push without a disconnector state are dropped and counted', async () => {
    const { d, reports } = await startDriver({}, { meterFor: () => undefined });
    const plain = encodeDataNotification({ longInvokeId: 1, body: disconnectPushBody(Buffer.from('NOBODY'), ControlState.Connected) });
    const s = await send(d.pushPort!, pushFrame(generalGlo(SYSTEM_TITLE, CIPHERED_OK, plain)));
    sockets.push(s);
    s.write(pushFrame(plain));
    s.write(pushFrame(encodeDataNotification({ longInvokeId: 2, body: { type: 'long-unsigned', value: 1 } })));
    s.write(pushFrame(h('C401C100')));
    await waitFor(() => Object.values(d.counters.pushDropped).reduce((a, b) => a + b, 0) === 4, 1000);
    expect(d.counters.pushDropped).toMatchObject({ 'ciphered-without-decipher': 1, 'unknown-meter': 1, 'no-relay-state': 1, 'not-a-notification': 1 });
    expect(reports).toEqual([]);
  });

  it('an oversize frame or a bad wrapper version drops the connection and is counted', async () => {
    const { d, reports } = await startDriver({ maxFrameBytes: 256 });
    const big = await send(d.pushPort!, h('0001 0011 0001 0400'));
    sockets.push(big);
    await new Promise<void>((resolve) => big.once('close', () => resolve()));
    expect(d.counters.pushDropped.oversize).toBe(1);
    const bad = await send(d.pushPort!, h('0002 0011 0001 0002 0F00'));
    sockets.push(bad);
    await new Promise<void>((resolve) => bad.once('close', () => resolve()));
    expect(d.counters.pushDropped['bad-version']).toBe(1);
    expect(reports).toEqual([]);
  });

  it('a connection idle longer than idleTimeoutMs is closed and counted', async () => {
    const listener = new DlmsPushListener({ config: { port: 0, host: '127.0.0.1', maxConnections: 4, maxFrameBytes: 256, idleTimeoutMs: 100 }, logger, onState: () => undefined });
    await listener.start();
    try {
      const s = await send(listener.port, new Uint8Array(0));
      sockets.push(s);
      const started = Date.now();
      await new Promise<void>((resolve) => s.once('close', () => resolve()));
      expect(Date.now() - started).toBeGreaterThanOrEqual(90);
      expect(listener.counters.idleClosed).toBe(1);
      await waitFor(() => listener.openConnections === 0, 1000);
    } finally {
      await listener.stop();
    }
  });

  it('connections beyond maxConnections are refused and counted', async () => {
    const { d } = await startDriver({ maxConnections: 2 });
    for (let i = 0; i < 2; i++) sockets.push(await send(d.pushPort!, new Uint8Array(0)));
    const third = await send(d.pushPort!, new Uint8Array(0));
    sockets.push(third);
    await new Promise<void>((resolve) => third.once('close', () => resolve()));
    expect(d.counters.pushDropped['connection-limit']).toBe(1);
  });
});
