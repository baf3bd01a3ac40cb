import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import type { RequestOptions } from '../../drivers/driver.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { describeDriverConformance, type DriverFixture } from './driver-conformance.js';
import { dlmsAddress, dlmsTestProfiles, passwordEnv, TEST_PASSWORDS, waitFor } from './dlms/fixture.js';

const T = 300;
const LINK = 'rs485-test';
let seq = 0;
function req(kind: 'cmd' | 'read' = 'read', timeoutMs = T): RequestOptions {
  const orderId = `dlms-test-${++seq}`;
  return { correlationId: `${orderId}:1:${kind}`, orderId, timeoutMs, attempt: 1 };
}

const { closes, arms, all } = dlmsTestProfiles(T);
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });

/** A real pty pair, a simulated RS-485 bus with two DLMS meters on it (HDLC 17: mode 2, 18: mode 1) and the driver. */
async function dlmsFixture(): Promise<DriverFixture & { bus: DlmsBusSimulator; pty: PtyPair; dlms: DlmsDriver }> {
  const pty = await startPtyPair();
  const bus = new DlmsBusSimulator({
    path: pty.devicePath,
    logger,
    meters: [
      { meterId: 'DLMS-C17', physicalAddress: 17, controlMode: 2, password: TEST_PASSWORDS.closes },
      { meterId: 'DLMS-A18', physicalAddress: 18, controlMode: 1, password: TEST_PASSWORDS.arms },
    ],
  });
  await bus.start();
  const driver = createDlmsDriver({
    links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } },
    profiles: all,
    logger,
    env: passwordEnv(closes, arms),
  });
  await driver.start();
  return {
    driver,
    dlms: driver,
    bus,
    pty,
    closesMeter: dlmsAddress('DLMS-C17', closes, LINK, '17'),
    armsMeter: dlmsAddress('DLMS-A18', arms, LINK, '1/18'),
    sim: (id: string) => bus.meter(id),
    timeoutMs: T,
    carriesIds: false, // DLMS has no field for a correlation id; the meter's log names the association instead
    teardown: async () => {
      await driver.stop();
      await bus.stop();
      await pty.stop();
      removePtyDir(pty);
    },
  };
}

describeDriverConformance('DLMS/HDLC over a real pty (DlmsBusSimulator)', dlmsFixture);

describe('DlmsDriver (DLMS-specific)', () => {
  let fx: Awaited<ReturnType<typeof dlmsFixture>>;
  const c17 = () => fx.closesMeter;
  const a18 = () => fx.armsMeter;

  beforeAll(async () => {
    fx = await dlmsFixture();
  });
  afterAll(async () => {
    await fx?.teardown();
  });

  function reset(): void {
    for (const id of ['DLMS-C17', 'DLMS-A18']) {
      const m = fx.bus.busMeter(id);
      m.meter.clearFaults();
      m.meter.setRelay('connected');
      m.linkFaults.noUa = m.linkFaults.fcsErrors = m.linkFaults.fcsErrorsAfter = m.linkFaults.dropSegments = 0;
      m.cosem.faults.temporaryFailures = 0;
    }
    fx.bus.busMeter('DLMS-C17').cosem.password = TEST_PASSWORDS.closes;
  }

  it('a wrong password: the AARE rejects the association (authentication-failure), auth_failed, and nothing is switched', async () => {
    reset();
    fx.bus.busMeter('DLMS-C17').cosem.password = 'changed-on-site';
    const before = fx.dlms.counters.authFailures;
    const res = await fx.driver.operateRelay(c17(), 'disconnect', req('cmd'));
    expect(res.outcome).toBe('auth_failed');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/authenticationFailure \(13\).*password/);
    expect(res.outcome !== 'ok' && `${res.detail} ${res.evidence}`).not.toContain(TEST_PASSWORDS.closes);
    expect(fx.dlms.counters.authFailures).toBe(before + 1);
    expect(fx.sim('DLMS-C17').relay).toBe('connected');
    expect(fx.bus.busMeter('DLMS-C17').cosem.counters.refused).toBeGreaterThanOrEqual(1);
  });

  it('no UA to the first SNRM: the SNRM is repeated at the frame level and the read succeeds', async () => {
    reset();
    fx.bus.busMeter('DLMS-C17').linkFaults.noUa = 1;
    const before = fx.dlms.counters.frameRepeats;
    const res = await fx.driver.readRelay(c17(), req());
    expect(res.outcome).toBe('ok');
    expect(fx.dlms.counters.frameRepeats).toBeGreaterThan(before);
  });

  it('a meter that never answers SNRM gives timeout at the deadline', async () => {
    reset();
    fx.bus.busMeter('DLMS-C17').linkFaults.noUa = 100;
    const started = Date.now();
    const res = await fx.driver.readRelay(c17(), req());
    expect(res.outcome).toBe('timeout');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/UA to SNRM/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(T - 5);
    fx.bus.busMeter('DLMS-C17').linkFaults.noUa = 0;
  });

  it('UA frames with a bad FCS are discarded; the SNRM is repeated and the read succeeds', async () => {
    reset();
    const m = fx.bus.busMeter('DLMS-C17');
    m.linkFaults.fcsErrors = 2; // within the port's 2 frame retries
    const badBefore = fx.dlms.counters.badFrames;
    const res = await fx.driver.readRelay(c17(), req('read', 1000));
    expect(res.outcome).toBe('ok');
    expect(fx.dlms.counters.badFrames - badBefore).toBe(2);
  });

  it('a lost ACTION answer (bad FCS) is recovered by an RR poll: the meter repeats its answer and executes the command once', async () => {
    reset();
    const m = fx.bus.busMeter('DLMS-C17');
    const executed = m.meter.counters.executed;
    // Frames to the client: UA, AARE, GET control_mode answer, ACTION answer ← only the 4th is corrupted.
    m.linkFaults.fcsErrorsAfter = 3;
    m.linkFaults.fcsErrors = 1;
    const repeats = fx.dlms.counters.frameRepeats;
    const res = await fx.driver.operateRelay(c17(), 'disconnect', req('cmd', 1000));
    expect(res.outcome).toBe('ok');
    expect(res.outcome === 'ok' && res.value.claimedRelay).toBe('disconnected');
    expect(m.meter.counters.executed - executed).toBe(1);
    expect(fx.dlms.counters.frameRepeats - repeats).toBe(1);
    expect(m.meter.relay).toBe('disconnected');
  });

  it('a segmented answer with a lost segment is reassembled after an RR poll (small max info length)', async () => {
    reset();
    const small = { ...closes, dlms: { ...closes.dlms, hdlc: { ...closes.dlms.hdlc, maxInfoTx: 32, maxInfoRx: 32 } } };
    const m = fx.bus.busMeter('DLMS-C17');
    m.linkFaults.dropSegments = 1;
    const repeats = fx.dlms.counters.frameRepeats;
    // The AARQ (60 bytes with LLC) goes out in two segments; the AARE (44 bytes) comes back in two.
    const res = await fx.driver.readRelay({ ...c17(), profile: small }, req('read', 1000));
    expect(res.outcome).toBe('ok');
    expect(res.outcome === 'ok' && res.value.relay).toBe('connected');
    expect(fx.dlms.counters.frameRepeats).toBeGreaterThan(repeats);
    expect(m.linkFaults.dropSegments).toBe(0);
  });

  it('a GET answer larger than the client PDU size comes as data blocks and is reassembled', async () => {
    reset();
    const tiny = { ...closes, dlms: { ...closes.dlms, maxPduSize: 12 } };
    const m = fx.bus.busMeter('DLMS-C17');
    const blocks = m.cosem.counters.blocksSent;
    const res = await fx.driver.readRelay({ ...c17(), profile: tiny }, req('read', 1000));
    expect(res.outcome).toBe('ok');
    expect(m.cosem.counters.blocksSent - blocks).toBeGreaterThanOrEqual(2); // the 14-byte clock octet-string at least
    expect(res.outcome === 'ok' && JSON.parse(res.evidence).meterClock).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('temporary-failure to the ACTION is a nack naming it; the relay did not move', async () => {
    reset();
    fx.bus.busMeter('DLMS-C17').cosem.faults.temporaryFailures = 1;
    const res = await fx.driver.operateRelay(c17(), 'disconnect', req('cmd'));
    expect(res.outcome).toBe('nack');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/temporary-failure.*\(2\)/);
    expect(fx.sim('DLMS-C17').relay).toBe('connected');
  });

  it('reads voltage and energy with their scalers, and the evidence names the meter and its APDUs', async () => {
    reset();
    const res = await fx.driver.readRelay(a18(), req());
    expect(res.outcome).toBe('ok');
    if (res.outcome !== 'ok') return;
    expect(res.value.voltageV! % 1).not.toBeNaN();
    expect(Math.abs(res.value.voltageV! - 230)).toBeLessThanOrEqual(2.05);
    const ev = JSON.parse(res.evidence) as { server: string; controlState: number; apdus: string[] };
    expect(ev.server).toBe('1/18');
    expect(ev.controlState).toBe(1);
    expect(ev.apdus[0]).toMatch(/^61/); // the AARE
  });

  it('meters on one bus are served one conversation at a time, each by its own HDLC address', async () => {
    reset();
    fx.sim('DLMS-A18').setRelay('disconnected');
    const results = await Promise.all([
      fx.driver.readRelay(c17(), req('read', 2000)),
      fx.driver.readRelay(a18(), req('read', 2000)),
      fx.driver.readRelay(c17(), req('read', 2000)),
      fx.driver.readRelay(a18(), req('read', 2000)),
    ]);
    expect(results.map((r) => r.outcome === 'ok' && r.value.relay)).toEqual(['connected', 'disconnected', 'connected', 'disconnected']);
  });

  it('an address nobody answers on the bus times out and does not lock the bus', async () => {
    reset();
    const ghost = dlmsAddress('GHOST', closes, LINK, '99');
    const [g, ok] = await Promise.all([fx.driver.readRelay(ghost, req('read', 200)), fx.driver.readRelay(c17(), req('read', 1000))]);
    expect(g.outcome).toBe('timeout');
    expect(ok.outcome).toBe('ok');
  });

  it('a malformed meter address or unknown link is link_error with a message saying what is expected', async () => {
    const bad = await fx.driver.readRelay(dlmsAddress('X', closes, LINK, 'meter-17'), req());
    expect(bad.outcome).toBe('link_error');
    expect(bad.outcome !== 'ok' && bad.detail).toMatch(/"upper\/lower"/);
    const noLink = await fx.driver.readRelay(dlmsAddress('X', closes, 'nowhere', '17'), req());
    expect(noLink.outcome !== 'ok' && noLink.detail).toMatch(/no serial port or TCP link configured for link nowhere/);
  });

  it('while the port is gone: isLinkUp is false and requests are link_error; it reopens by itself', async () => {
    reset();
    expect(fx.driver.isLinkUp(LINK)).toBe(true);
    await fx.pty.stop();
    await waitFor(() => !fx.driver.isLinkUp(LINK), 3000);
    const started = Date.now();
    const during = await fx.driver.operateRelay(c17(), 'disconnect', req('cmd'));
    expect(during.outcome).toBe('link_error');
    expect(Date.now() - started).toBeLessThan(50);
    await fx.pty.start();
    await waitFor(() => fx.driver.isLinkUp(LINK) && fx.bus.ready, 5000);
    expect(fx.sim('DLMS-C17').received.filter((e) => e.op === 'disconnect' && e.at >= started)).toEqual([]);
    // The first conversation on a port that has just come back may lose its first bytes on a loaded machine, as on
    // a real line; the link is back when a read answers, as the control loop's next attempt would find.
    let after = await fx.driver.readRelay(c17(), req('read', 1000));
    const until = Date.now() + 10_000;
    while (after.outcome !== 'ok' && Date.now() < until) after = await fx.driver.readRelay(c17(), req('read', 1000));
    expect(after.outcome).toBe('ok');
  });

  it("linkHealth: the port's bad FCS, frame repeats, timeouts and refusals by result name; down while the port is gone, then up with its reopen counted", async () => {
    reset();
    const health = () => fx.dlms.linkHealth().find((l) => l.link === LINK)!;
    const before = health();
    expect(before).toMatchObject({ kind: 'dlms-hdlc', state: 'up' });
    const m = fx.bus.busMeter('DLMS-C17');

    // First a meter that never answers SNRM (a timeout): the conversation before it finishes its release and DISC on
    // the bus first, and this one leaves nothing behind, so the bad FCS below hits the next conversation's UAs.
    m.linkFaults.noUa = 100;
    expect((await fx.driver.readRelay(c17(), req('read', 1000))).outcome).toBe('timeout'); // time to get the bus, then no UA
    m.linkFaults.noUa = 0;
    m.linkFaults.fcsErrors = 2; // two UAs with a bad FCS: discarded, the SNRM repeated
    expect((await fx.driver.readRelay(c17(), req('read', 1000))).outcome).toBe('ok');
    m.cosem.faults.temporaryFailures = 1;
    expect((await fx.driver.operateRelay(c17(), 'disconnect', req('cmd'))).outcome).toBe('nack');
    const counted = health();
    expect(counted.counters.crcErrors - before.counters.crcErrors).toBe(2);
    expect(counted.counters.frameRetries - before.counters.frameRetries).toBeGreaterThanOrEqual(2);
    expect(counted.counters.timeouts - before.counters.timeouts).toBe(1);
    expect((counted.counters.exceptions['temporary-failure'] ?? 0) - (before.counters.exceptions['temporary-failure'] ?? 0)).toBe(1);
    expect(counted.lastError?.message).toMatch(/UA to SNRM/); // a meter's refusal is counted, not the link's error
    expect(counted.state).toBe('up');

    const lostAt = Date.now();
    await fx.pty.stop();
    await waitFor(() => health().state === 'down', 3000);
    expect(health().since).toBeGreaterThanOrEqual(lostAt);
    expect(health().lastError?.message).toMatch(/serial port .*(closed|is not open)|cannot open serial port/);
    await fx.pty.start();
    await waitFor(() => health().state === 'up', 5000);
    expect(health().counters.reopens - before.counters.reopens).toBe(1);
    expect(health().since).toBeGreaterThan(lostAt);
  });
});

describe('createDlmsDriver', () => {
  it('a low-security profile without a password is a start-up error naming the profile and the variable', () => {
    expect(() => createDlmsDriver({ links: { ports: {} }, profiles: all, logger, env: {} })).toThrow(/DLMS profile .* no password: set the environment variable METERLINE_DLMS_PASSWORD_/);
  });

  it('a password from the links config is enough; an invalid links config names the field', () => {
    const passwords = Object.fromEntries(all.map((p) => [p.id, { value: 'x' }]));
    expect(() => createDlmsDriver({ links: { ports: {}, passwords }, profiles: all, logger, env: {} })).not.toThrow();
    expect(() => createDlmsDriver({ links: { ports: { a: { path: '/dev/ttyUSB0', baudRate: 9600 } } } as never, profiles: all, logger, env: passwordEnv(closes, arms) })).toThrow(/ports\.a\.frameRetries/);
  });
});
