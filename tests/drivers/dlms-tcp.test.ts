import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createDlmsDriver, type DlmsDriver, type DlmsLinksConfigInput } from '../../drivers/dlms/index.js';
import type { RequestOptions } from '../../drivers/driver.js';
import { parseWrapperEndpoint } from '../../drivers/dlms/dlms-links.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { describeDriverConformance, type DriverFixture } from './driver-conformance.js';
import { dlmsAddress, dlmsTestProfiles, passwordEnv, TEST_PASSWORDS, waitFor } from './dlms/fixture.js';
import type { BusMeterSpec } from '../../simulators/dlms-bus.js';

/**
 * The DLMS driver over TCP against the TCP simulator, on real sockets (127.0.0.1, ephemeral ports): the
 * wrapper to a concentrator-like endpoint (meters by wPort), the wrapper to direct meters (host:port per
 * meter), and HDLC over TCP (a terminal server). Each runs the driver conformance suite with a meter in a
 * control mode that closes (2) and one that arms (1).
 */

const T = 300;
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
const { closes, arms, all } = dlmsTestProfiles(T);
const env = passwordEnv(closes, arms);
let seq = 0;
function req(kind: 'cmd' | 'read' = 'read', timeoutMs = T): RequestOptions {
  const orderId = `dlms-tcp-${++seq}`;
  return { correlationId: `${orderId}:1:${kind}`, orderId, timeoutMs, attempt: 1 };
}

const METERS: BusMeterSpec[] = [
  { meterId: 'TCP-C17', physicalAddress: 17, logicalAddress: 17, controlMode: 2, password: TEST_PASSWORDS.closes },
  { meterId: 'TCP-A18', physicalAddress: 18, logicalAddress: 18, controlMode: 1, password: TEST_PASSWORDS.arms },
];

type TcpFixture = DriverFixture & { server: DlmsTcpServer; dlms: DlmsDriver };

async function tcpFixture(mode: 'wrapper' | 'direct' | 'hdlc', extra: { maxConnections?: number; meters?: BusMeterSpec[] } = {}): Promise<TcpFixture> {
  const server = new DlmsTcpServer({ mode: mode === 'hdlc' ? 'hdlc' : 'wrapper', port: 0, meters: extra.meters ?? METERS, logger });
  await server.start();
  const link = `tcp-${mode}`;
  const tcp: NonNullable<DlmsLinksConfigInput['tcp']> =
    mode === 'hdlc'
      ? { [link]: { kind: 'hdlc', host: '127.0.0.1', port: server.port, frameRetries: 2, connectTimeoutMs: 500, reconnectMs: 50 } }
      : mode === 'wrapper'
        ? { [link]: { kind: 'wrapper', host: '127.0.0.1', port: server.port, maxConnections: extra.maxConnections ?? 2, connectTimeoutMs: 500, reconnectMs: 50 } }
        : { [link]: { kind: 'wrapper', maxConnections: extra.maxConnections ?? 2, connectTimeoutMs: 500, reconnectMs: 50 } };
  const driver = createDlmsDriver({ links: { tcp }, profiles: all, logger, env });
  await driver.start();
  const address = (logical: number, physical: number) => (mode === "hdlc" ? `${logical}/${physical}` : mode === 'wrapper' ? `${logical}` : `127.0.0.1:${server.port}/${logical}`);
  return {
    driver,
    dlms: driver,
    server,
    closesMeter: dlmsAddress('TCP-C17', closes, link, address(17, 17)),
    armsMeter: dlmsAddress('TCP-A18', arms, link, address(18, 18)),
    sim: (id) => server.meter(id),
    timeoutMs: T,
    carriesIds: false,
    teardown: async () => {
      await driver.stop();
      await server.stop();
    },
  };
}

describeDriverConformance('DLMS over the TCP wrapper to one endpoint (meters by wPort)', () => tcpFixture('wrapper'));
describeDriverConformance('DLMS over the TCP wrapper to direct meters (host:port/logical device)', () => tcpFixture('direct'));
describeDriverConformance('DLMS/HDLC over TCP (terminal server)', () => tcpFixture('hdlc'));

describe('DLMS TCP links', () => {
  it('a wrapper link that drops: isLinkUp goes false, requests are link_error without touching a meter, and it comes back by itself', async () => {
    const fx = await tcpFixture('wrapper');
    try {
      const link = fx.closesMeter.link;
      expect(fx.dlms.isLinkUp(link)).toBe(true);
      expect((await fx.driver.readRelay(fx.closesMeter, req())).outcome).toBe('ok');
      const health = () => fx.dlms.linkHealth().find((l) => l.link === link)!;
      expect(health()).toMatchObject({ kind: 'dlms-tcp', state: 'up', lastError: null, counters: { reconnects: 0 } });
      await fx.server.suspend();
      await waitFor(() => !fx.dlms.isLinkUp(link), 2000);
      expect(health()).toMatchObject({ state: 'down', lastError: { message: expect.stringMatching(/TCP connection to 127\.0\.0\.1:\d+ lost|not open/) } });
      const received = fx.sim('TCP-C17').received.length;
      const down = await fx.driver.operateRelay(fx.closesMeter, 'disconnect', req('cmd'));
      expect(down.outcome).toBe('link_error');
      expect(down.outcome !== 'ok' && down.detail).toMatch(/not open/);
      expect(fx.sim('TCP-C17').received.length).toBe(received);
      // Still down while the endpoint is away (reconnect attempts fail every 50 ms).
      await new Promise((r) => setTimeout(r, 200));
      expect(fx.dlms.isLinkUp(link)).toBe(false);
      await fx.server.resume();
      await waitFor(() => fx.dlms.isLinkUp(link), 2000);
      expect(health()).toMatchObject({ state: 'up', counters: { reconnects: 1 } });
      const back = await fx.driver.operateRelay(fx.closesMeter, 'disconnect', req('cmd'));
      expect(back.outcome).toBe('ok');
      expect(fx.sim('TCP-C17').relay).toBe('disconnected');
    } finally {
      await fx.teardown();
    }
  });

  it('an HDLC-over-TCP link that drops comes back the same way', async () => {
    const fx = await tcpFixture('hdlc');
    try {
      const link = fx.closesMeter.link;
      expect((await fx.driver.readRelay(fx.closesMeter, req())).outcome).toBe('ok');
      await fx.server.suspend();
      await waitFor(() => !fx.dlms.isLinkUp(link), 2000);
      expect((await fx.driver.readRelay(fx.closesMeter, req())).outcome).toBe('link_error');
      await fx.server.resume();
      await waitFor(() => fx.dlms.isLinkUp(link), 2000);
      expect((await fx.driver.readRelay(fx.closesMeter, req())).outcome).toBe('ok');
    } finally {
      await fx.teardown();
    }
  });

  it('a connection dropped in the middle of a conversation ends it link_error at once, naming the drop', async () => {
    const fx = await tcpFixture('wrapper');
    try {
      fx.sim('TCP-C17').offlineUntil(Number.MAX_SAFE_INTEGER); // the AARQ goes unanswered
      const started = Date.now();
      const pending = fx.driver.readRelay(fx.closesMeter, req('read', 2000));
      await new Promise((r) => setTimeout(r, 100));
      await fx.server.suspend();
      const res = await pending;
      expect(res.outcome).toBe('link_error');
      expect(res.outcome !== 'ok' && res.detail).toMatch(/dropped while waiting/);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await fx.teardown();
    }
  });

  it('a request that timed out on a standing connection: its late answer is never taken for the next association (the connection is renewed)', async () => {
    const fx = await tcpFixture('wrapper', { maxConnections: 1 });
    try {
      fx.sim('TCP-C17').setFaults({ lateReplyMs: 600 }); // the first live read is answered after 600 ms
      const late = await fx.driver.readRelay(fx.closesMeter, req('read', 250));
      expect(late.outcome).toBe('timeout');
      const health = () => fx.dlms.linkHealth().find((l) => l.link === fx.closesMeter.link)!;
      expect(health().counters.timeouts).toBe(1);
      expect(health().lastError?.message).toMatch(/no answer .* by the deadline/);
      await waitFor(() => health().counters.reconnects === 1, 2000); // the connection is renewed after the timeout
      fx.sim('TCP-C17').clearFaults();
      fx.sim('TCP-C17').setRelay('disconnected');
      // At once, on the link's only connection: the late GET answer (at 600 ms) must not pass for this AARQ's AARE.
      const next = await fx.driver.readRelay(fx.closesMeter, req('read', 3000));
      expect(next).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });
      await new Promise((r) => setTimeout(r, 500)); // past the late answer: a third conversation is clean too
      expect((await fx.driver.readRelay(fx.closesMeter, req('read', 3000))).outcome).toBe('ok');
    } finally {
      await fx.teardown();
    }
  });

  it('the connection limit of a wrapper link is honoured: six parallel conversations, never more than two connections', async () => {
    const meters: BusMeterSpec[] = [];
    for (let i = 0; i < 6; i++) meters.push({ meterId: `TCP-M${i}`, physicalAddress: 20 + i, logicalAddress: 20 + i, controlMode: 2, password: TEST_PASSWORDS.closes });
    const fx = await tcpFixture('wrapper', { maxConnections: 2, meters: [...METERS, ...meters] });
    try {
      for (const m of meters) fx.server.meter(m.meterId).setFaults({ lateReplyMs: 30 });
      const results = await Promise.all(meters.map((m) => fx.driver.readRelay(dlmsAddress(m.meterId, closes, fx.closesMeter.link, `${m.logicalAddress}`), req('read', 2000))));
      expect(results.map((r) => r.outcome)).toEqual(meters.map(() => 'ok'));
      expect(fx.server.counters.maxOpenConnections).toBe(2);
      expect(fx.server.counters.refused).toBe(0);
    } finally {
      await fx.teardown();
    }
  });

  it('direct meters: an unreachable meter is that meter\'s link_error; the link stays up for the others', async () => {
    const fx = await tcpFixture('direct');
    try {
      const gone = dlmsAddress('TCP-GONE', closes, fx.closesMeter.link, '127.0.0.1:1/1');
      const res = await fx.driver.readRelay(gone, req());
      expect(res.outcome).toBe('link_error');
      expect(res.outcome !== 'ok' && res.detail).toMatch(/127\.0\.0\.1:1\/1: no TCP connection/);
      expect(fx.dlms.isLinkUp(fx.closesMeter.link)).toBe(true);
      expect((await fx.driver.readRelay(fx.closesMeter, req())).outcome).toBe('ok');
      // Per-conversation connections are closed afterwards.
      await waitFor(() => fx.server.openConnections === 0, 1000);
    } finally {
      await fx.teardown();
    }
  });

  it('addresses that do not fit the link are link_error saying what is expected', async () => {
    const fx = await tcpFixture('wrapper');
    try {
      const bad = await fx.driver.readRelay(dlmsAddress('X', closes, fx.closesMeter.link, '10.0.0.1:4059'), req());
      expect(bad.outcome !== 'ok' && bad.detail).toMatch(/not a logical device: expected the server wPort/);
    } finally {
      await fx.teardown();
    }
  });

  it('a direct meter address: host, port (default 4059) and logical device (default the profile\'s)', () => {
    expect(parseWrapperEndpoint('10.9.1.4:4060/3', 1)).toEqual({ host: '10.9.1.4', port: 4060, logicalDevice: 3 });
    expect(parseWrapperEndpoint('meter-7.example', 1)).toEqual({ host: 'meter-7.example', port: 4059, logicalDevice: 1 });
    expect(parseWrapperEndpoint('[fd00::7]:4059/1', 16)).toEqual({ host: 'fd00::7', port: 4059, logicalDevice: 1 });
    expect(() => parseWrapperEndpoint('17', 1)).not.toThrow(); // a bare name is a host
    expect(() => parseWrapperEndpoint('10.0.0.1:70000', 1)).toThrow(/port 70000 out of range/);
    expect(() => parseWrapperEndpoint('', 1)).toThrow(/expected "host:port\/logicalDevice"/);
  });

  it('a bad link config is refused naming the field', () => {
    expect(() => createDlmsDriver({ links: { tcp: { ts: { kind: 'hdlc', host: 'ts.local' } } }, profiles: all, logger, env })).toThrow(/tcp\.ts\.port: an hdlc link needs the terminal server port/);
    expect(() => createDlmsDriver({ links: { ports: { a: { path: '/dev/null', baudRate: 9600, frameRetries: 1 } }, tcp: { a: { kind: 'wrapper' } } }, profiles: all, logger, env })).toThrow(/link a is also a serial port/);
  });
});
