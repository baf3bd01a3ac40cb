import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import type { MeterAddress, RequestOptions } from '../../drivers/driver.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsLimiterSchema } from '../../src/domain/profiles/dlms-profile.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import type { SimMeterKeys } from '../../simulators/dlms-meter.js';
import type { SimulatedMeter } from '../../simulators/meter-model.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { dlmsAddress, dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from './dlms/fixture.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';

/**
 * Load limiting through the DLMS Limiter (class 71) end to end on real peers: the driver's setLoadLimit and readRelay
 * against simulated meters on an HDLC bus over a real pty (password and HLS-GMAC ciphered associations) and behind
 * the TCP wrapper. What a user checks: the limit read back from threshold_active, a refusal named, a lie caught.
 */

const T = 400;
const HLS_T = 1500;
const LINK = 'rs485-limiter';
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
const { closes, arms, all } = dlmsTestProfiles(T);
let seq = 0;
function req(timeoutMs = T): RequestOptions {
  const orderId = `dlms-limit-${++seq}`;
  return { correlationId: `${orderId}:1:limit`, orderId, timeoutMs, attempt: 1 };
}

/** The LLS test profile (control mode 2) with a limiter as `limiter` describes it (schema defaults applied). */
const withLimiter = (id: string, limiter: object): DlmsFirmwareProfile => ({ ...closes, id, dlms: { ...closes.dlms, limiter: DlmsLimiterSchema.parse(limiter) } });
const watts = withLimiter('e570-limiter', {});
const watts900s = withLimiter('e570-limiter-900s', { minOverThresholdDurationS: 900 });
const tensOfWatts = withLimiter('e570-limiter-10w', { type: 'long-unsigned', scaler: 1 });
const idis = all.find((p) => p.id === 'idis-hls-gmac-mode6')!;

/**
 * What a user checks of a limit on any link: set, the model holds it and the read-back reports it; removed, the
 * read-back reports no limit (null). Returns the SET's evidence.
 */
async function setReadRemove(driver: DlmsDriver, meter: MeterAddress, model: SimulatedMeter, limitW: number, timeoutMs = T): Promise<Record<string, unknown>> {
  const set = await driver.setLoadLimit(meter, limitW, req(timeoutMs));
  expect(set.outcome).toBe('ok');
  expect(set.outcome === 'ok' && set.value.claimedLimitW).toBe(limitW);
  expect(model.loadLimitW).toBe(limitW);
  const read = await driver.readRelay(meter, req(timeoutMs));
  expect(read.outcome === 'ok' && read.value.loadLimitW).toBe(limitW);
  const removed = await driver.setLoadLimit(meter, null, req(timeoutMs));
  expect(removed.outcome === 'ok' && removed.value.claimedLimitW).toBeNull();
  expect(model.loadLimitW).toBeNull();
  const after = await driver.readRelay(meter, req(timeoutMs));
  expect(after.outcome === 'ok' && after.value.loadLimitW).toBeNull();
  return JSON.parse(set.outcome === 'ok' ? set.evidence : '{}') as Record<string, unknown>;
}

const hlsKeys: SimMeterKeys = { encryptionKey: Buffer.alloc(16, 0x31), authenticationKey: Buffer.alloc(16, 0xd1), systemTitle: Buffer.from('4C494D0000000022', 'hex') };

describe('DLMS load limiter (class 71) over a real pty', () => {
  let pty: PtyPair;
  let bus: DlmsBusSimulator;
  let driver: DlmsDriver;
  const keyring = new MemoryKeyring();

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new DlmsBusSimulator({
      path: pty.devicePath,
      logger,
      meters: [
        { meterId: 'LIM-31', physicalAddress: 31, controlMode: 2, password: TEST_PASSWORDS.closes },
        { meterId: 'LIM-32', physicalAddress: 32, controlMode: 2, password: TEST_PASSWORDS.closes, limiter: false },
        { meterId: 'LIM-33', physicalAddress: 33, controlMode: 2, password: TEST_PASSWORDS.closes, limiter: { type: 'long-unsigned', scaler: 1 } },
        { meterId: 'LIM-34', physicalAddress: 34, controlMode: 6, keys: hlsKeys },
      ],
    });
    await bus.start();
    keyring.set('LIM-34', { keySetId: 'LIM-34-ks1', encryptionKey: hlsKeys.encryptionKey, authenticationKey: hlsKeys.authenticationKey });
    driver = createDlmsDriver({
      links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } },
      profiles: [...all, watts, watts900s, tensOfWatts],
      logger,
      env: passwordEnv(closes, arms),
      keyring,
    });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    if (pty) {
      await pty.stop();
      removePtyDir(pty);
    }
  });

  beforeEach(() => {
    for (const id of ['LIM-31', 'LIM-33', 'LIM-34']) {
      const m = bus.busMeter(id);
      m.meter.clearFaults();
      m.meter.setLoadLimit(null);
      m.cosem.limiter!.readOnly = false;
    }
  });

  const at = (meterId: string, profile: DlmsFirmwareProfile, address: string) => dlmsAddress(meterId, profile, LINK, address);
  const sim = (id: string) => bus.busMeter(id);

  it('sets a limit, reads it back from threshold_active, and removes it (read back as no limit)', async () => {
    const meter = at('LIM-31', watts, '31');
    expect(await setReadRemove(driver, meter, sim('LIM-31').meter, 5000)).toMatchObject({ set: 'threshold_normal', limitW: 5000, raw: 5000, result: 'success' });
    // The removal wrote the "no limit" value, the type's maximum.
    const removed = await driver.setLoadLimit(meter, null, req());
    expect(removed.outcome === 'ok' && JSON.parse(removed.evidence).raw).toBe(0xffffffff);
    const read = await driver.readRelay(meter, req());
    expect(read.outcome === 'ok' && read.value).toMatchObject({ relay: 'connected', loadLimitW: null });
  });

  it('a meter whose access rights make the limiter read-only: nack naming read-write-denied, and the limit is unchanged', async () => {
    const meter = at('LIM-31', watts, '31');
    sim('LIM-31').meter.setLoadLimit(8000);
    sim('LIM-31').cosem.limiter!.readOnly = true;
    const res = await driver.setLoadLimit(meter, 2000, req());
    expect(res.outcome).toBe('nack');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/SET threshold_normal \(class 71, 0-0:17\.0\.0\.255, attr 4\).*read-write-denied.*\(3\)/);
    expect(sim('LIM-31').meter.loadLimitW).toBe(8000);
    const read = await driver.readRelay(meter, req());
    expect(read.outcome === 'ok' && read.value.loadLimitW).toBe(8000);
  });

  it('a meter that claims the limit but keeps none is caught by the read-back', async () => {
    const meter = at('LIM-31', watts, '31');
    sim('LIM-31').meter.setFaults({ lieAboutSuccess: true });
    const res = await driver.setLoadLimit(meter, 3000, req());
    expect(res.outcome).toBe('ok');
    expect(res.outcome === 'ok' && res.value.claimedLimitW).toBe(3000);
    const read = await driver.readRelay(meter, req());
    expect(read.outcome === 'ok' && read.value.loadLimitW).toBeNull();
    expect(sim('LIM-31').meter.loadLimitW).toBeNull();
  });

  it('the meter refusing the command is nack (other-reason); a lost answer is a timeout; neither changes the limit', async () => {
    const meter = at('LIM-31', watts, '31');
    sim('LIM-31').meter.nackCommands(1);
    const refused = await driver.setLoadLimit(meter, 3000, req());
    expect(refused.outcome).toBe('nack');
    expect(refused.outcome !== 'ok' && refused.detail).toMatch(/other-reason.*\(250\)/);
    sim('LIM-31').meter.dropCommands(1);
    const lost = await driver.setLoadLimit(meter, 3000, req());
    expect(lost.outcome).toBe('timeout');
    expect(sim('LIM-31').meter.loadLimitW).toBeNull();
  });

  it('writes min_over_threshold_duration with a limit where the profile says so, and leaves it alone when removing', async () => {
    const meter = at('LIM-31', watts900s, '31');
    const limiter = sim('LIM-31').cosem.limiter!;
    limiter.minOverThresholdDurationS = 60;
    expect((await driver.setLoadLimit(meter, 4000, req())).outcome).toBe('ok');
    expect(limiter.minOverThresholdDurationS).toBe(900);
    limiter.minOverThresholdDurationS = 60;
    expect((await driver.setLoadLimit(meter, null, req())).outcome).toBe('ok');
    expect(limiter.minOverThresholdDurationS).toBe(60);
  });

  it("thresholds in the monitored register's type and scaler: 2500 W goes as long-unsigned 250 (×10 W) and reads back as 2500 W", async () => {
    const meter = at('LIM-33', tensOfWatts, '33');
    const res = await driver.setLoadLimit(meter, 2500, req());
    expect(res.outcome === 'ok' && JSON.parse(res.evidence)).toMatchObject({ limitW: 2500, raw: 250, claimedLimitW: 2500 });
    expect(sim('LIM-33').meter.loadLimitW).toBe(2500);
    const read = await driver.readRelay(meter, req());
    expect(read.outcome === 'ok' && read.value.loadLimitW).toBe(2500);
  });

  it('a limit the threshold cannot hold, or a profile without a limiter: nack before anything goes on the wire', async () => {
    const associations = sim('LIM-33').cosem.counters.associations;
    const odd = await driver.setLoadLimit(at('LIM-33', tensOfWatts, '33'), 1234, req());
    expect(odd.outcome).toBe('nack');
    expect(odd.outcome !== 'ok' && odd.detail).toBe("meter LIM-33: 1234 W is not a whole number of the limiter's units (10^1 W)");
    const none = await driver.setLoadLimit(at('LIM-33', closes, '33'), 1000, req());
    expect(none.outcome !== 'ok' && none.detail).toBe(`meter LIM-33: its profile ${closes.id} has no load limiter (dlms.limiter)`);
    expect(sim('LIM-33').cosem.counters.associations).toBe(associations);
    // A profile without a limiter reads no limit at all (undefined), not "no limit in force" (null).
    const read = await driver.readRelay(at('LIM-33', closes, '33'), req());
    expect(read.outcome === 'ok' && 'loadLimitW' in read.value).toBe(false);
  });

  it('a meter without the limiter object: the read leaves the limit out, the SET is nack object-undefined', async () => {
    const meter = at('LIM-32', watts, '32');
    const read = await driver.readRelay(meter, req());
    expect(read.outcome).toBe('ok');
    expect(read.outcome === 'ok' && read.value.loadLimitW).toBeUndefined();
    const res = await driver.setLoadLimit(meter, 1000, req());
    expect(res.outcome !== 'ok' && res.detail).toMatch(/object-undefined/);
  });

  it('a meter whose thresholds have another type than the profile says: type-unmatched on SET, garbled on read, each named', async () => {
    const meter = at('LIM-31', tensOfWatts, '31');
    const res = await driver.setLoadLimit(meter, 2500, req());
    expect(res.outcome).toBe('nack');
    expect(res.outcome !== 'ok' && res.detail).toMatch(/type-unmatched/);
    const read = await driver.readRelay(meter, req());
    expect(read.outcome).toBe('garbled');
    expect(read.outcome !== 'ok' && read.detail).toMatch(/threshold_active: threshold must be long-unsigned as the profile says, got double-long-unsigned/);
  });

  it('the shipped IDIS profile (HLS-GMAC, authenticated and encrypted APDUs): set, read back, remove', async () => {
    const evidence = await setReadRemove(driver, at('LIM-34', idis, '34'), sim('LIM-34').meter, 6900, HLS_T);
    expect(evidence).toMatchObject({ set: 'threshold_normal', limitW: 6900, ciphering: 'authenticated-encrypted' });
    // Every service APDU went ciphered (glo-set-request 0xC9 in, glo-set-response 0xCD out).
    expect(sim('LIM-34').cosem.wireTags).toEqual(expect.arrayContaining(['>c9', '<cd']));
    expect(sim('LIM-34').cosem.wireTags).not.toContain('>c1');
  });
});

describe('DLMS load limiter over the TCP wrapper', () => {
  it('sets a limit, reads it back, removes it', async () => {
    const server = new DlmsTcpServer({ mode: 'wrapper', port: 0, logger, meters: [{ meterId: 'TCP-L41', physicalAddress: 41, logicalAddress: 41, controlMode: 2, password: TEST_PASSWORDS.closes }] });
    await server.start();
    const link = 'tcp-limiter';
    const driver = createDlmsDriver({ links: { tcp: { [link]: { kind: 'wrapper', host: '127.0.0.1', port: server.port, maxConnections: 1, connectTimeoutMs: 500, reconnectMs: 50 } } }, profiles: [...all, watts], logger, env: passwordEnv(closes, arms) });
    await driver.start();
    try {
      expect(await setReadRemove(driver, dlmsAddress('TCP-L41', watts, link, '41'), server.meter('TCP-L41'), 7500)).toMatchObject({ set: 'threshold_normal', raw: 7500 });
    } finally {
      await driver.stop();
      await server.stop();
    }
  });
});
