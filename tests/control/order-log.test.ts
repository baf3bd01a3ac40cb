import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommandAck, MeterAddress, MeterDriver, RelayReading, WireResult } from '../../drivers/driver.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import { isTerminal } from '../../src/domain/switch-order.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { eventually } from '../harness/startup-run.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Log volume (issue 17): at `info`, one line per order, when it finishes (id, meter, action, final state, attempts,
 * ms); each attempt's detail only at `debug`. The real control loop and SQLite store around an in-memory driver.
 */
const shipped = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles')).get('acme-em340-fw2.4')!;
const profile: FirmwareProfile = { ...shipped, timeouts: { commandMs: 200, readMs: 200 }, relay: { ...shipped.relay, operateTimeMs: 0 }, retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 20 } };

/** Meters as a table of relay states: GLITCH-1 misses its first command, DEAD-1 never answers. */
function memoryDriver(): MeterDriver {
  const relay = new Map<string, RelayState>();
  let glitched = false;
  const timeout = { outcome: 'timeout' as const, detail: 'no reply in 200 ms', latencyMs: 200 };
  return {
    protocol: 'mqtt',
    start: async () => {},
    stop: async () => {},
    isLinkUp: () => true,
    async readRelay(m: MeterAddress): Promise<WireResult<RelayReading>> {
      if (m.meterId === 'DEAD-1') return timeout;
      const state = relay.get(m.meterId) ?? 'disconnected';
      return { outcome: 'ok', value: { relay: state, at: Date.now() }, evidence: `{"relay":"${state}"}`, latencyMs: 5 };
    },
    async operateRelay(m: MeterAddress, action: SwitchAction): Promise<WireResult<CommandAck>> {
      if (m.meterId === 'DEAD-1') return timeout;
      if (m.meterId === 'GLITCH-1' && !glitched) {
        glitched = true;
        return timeout;
      }
      relay.set(m.meterId, action === 'disconnect' ? 'disconnected' : 'connected');
      return { outcome: 'ok', value: { claimedRelay: relay.get(m.meterId)! }, evidence: '{"result":"ok"}', latencyMs: 5 };
    },
  };
}

interface LogLine { level: string; msg: string; orderId?: string; meterId?: string; action?: string; state?: string; attempts?: number; ms?: number }

let loop: ControlLoop | undefined;
afterEach(async () => {
  await loop?.stop();
  loop = undefined;
});

/** Reconnect four meters (two fine, one that needs a second attempt, one dead) with the log at `level`; returns its lines. */
async function runOrders(level: 'info' | 'debug'): Promise<{ lines: LogLine[]; orderIds: string[] }> {
  const lines: LogLine[] = [];
  const logger = pino({ level, formatters: { level: (label) => ({ level: label }) } }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const meterIds = ['OK-1', 'OK-2', 'GLITCH-1', 'DEAD-1'];
  loop = await startControlLoop({
    protocol: 'mqtt',
    driver: memoryDriver(),
    profiles: [profile],
    meters: meterIds.map((meterId) => ({ meterId, profileId: profile.id, link: 'broker-1', region: 'north' })),
    linkConcurrency: 4,
    logger,
  });
  const now = Date.now();
  const out = await loop.store.submitOrders(
    meterIds.map((meterId) => ({ meterId, action: 'reconnect' as const, reason: 'payment' as const, note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: meterId })),
    { now, reconnectLimitHours: 24, newOrderId: (() => { let n = 0; return () => `ord_log_${level}_${++n}`; })(), policy: openPolicy() },
  );
  loop.controller.wake();
  const orderIds = out.map((o) => o.order.id);
  const store = loop.store;
  // A failed reconnect goes to the field (escalated); the others end done.
  await eventually('every order done or with the field', async () => {
    const orders = await Promise.all(orderIds.map((id) => store.getOrder(id)));
    return orders.every((o) => o && (isTerminal(o.state) || o.state === 'escalated')) ? true : undefined;
  }, 20_000);
  await loop.stop();
  loop = undefined;
  return { lines, orderIds };
}

const atLeastInfo = (l: LogLine) => l.level !== 'debug' && l.level !== 'trace';

describe('the control loop’s log volume', () => {
  it('at info: exactly one line per order, with meter, action, final state, attempts and ms', async () => {
    const { lines, orderIds } = await runOrders('info');
    const orderLines = lines.filter((l) => l.orderId !== undefined && atLeastInfo(l));
    expect(orderLines.map((l) => l.orderId).sort()).toEqual([...orderIds].sort());
    const byMeter = Object.fromEntries(orderLines.map((l) => [l.meterId, l]));
    expect(byMeter['OK-1']).toMatchObject({ level: 'info', msg: 'order done', action: 'reconnect', state: 'done', attempts: 1 });
    expect(byMeter['GLITCH-1']).toMatchObject({ level: 'info', msg: 'order done', state: 'done', attempts: 2 });
    expect(byMeter['DEAD-1']).toMatchObject({ level: 'warn', state: 'escalated', attempts: 3 });
    for (const l of orderLines) expect(l.ms, JSON.stringify(l)).toBeGreaterThanOrEqual(0);
    expect(lines.filter((l) => l.level === 'debug')).toEqual([]);
  });

  it('at debug: the attempt detail too (each command sent, each attempt’s end)', async () => {
    const { lines } = await runOrders('debug');
    const glitch = lines.filter((l) => l.meterId === 'GLITCH-1');
    expect(glitch.filter((l) => l.msg === 'sending command')).toHaveLength(2);
    expect(glitch.filter((l) => l.msg === 'attempt finished').map((l) => l.state)).toEqual(['queued', 'done']);
    expect(glitch.filter((l) => atLeastInfo(l) && l.orderId !== undefined)).toHaveLength(1);
  });
});
