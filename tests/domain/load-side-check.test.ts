import { describe, expect, it } from 'vitest';
import type { RelayReading, WireResult } from '../../drivers/driver.js';
import { preCloseCheck } from '../../src/control/load-side-check.js';
import { judgeAttempt, type AttemptFacts } from '../../src/domain/attempt-verdict.js';
import { escalateVerdict, LOAD_SIDE_PRIORITY, NO_REMOTE_ATTEMPT } from '../../src/domain/escalation.js';
import { FirmwareProfileSchema, NO_LOAD_SIDE_CHECK, type LoadSideVoltageCheck } from '../../src/domain/firmware-profile.js';

/** DOMAIN.md rule 14: a close refused for voltage on the load side is never retried blindly and goes to the field at once. */
const H = 3_600_000;
const NOW = Date.parse('2026-11-24T10:00:00Z');
const policy = { fieldLeadMs: 8 * H, dueMarginMs: H, slowRetryMs: 30 * 60_000, escalateDisconnects: false };
const none = { medicalEquipment: false, vulnerable: false, priorityRegister: false };
const rules = (check: LoadSideVoltageCheck) => ({ id: 'p', relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: check }, retry: { maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 8000 } });
const byMeter = rules({ checkedBy: 'meter', maxVoltageV: 50 });
const byGateway = rules({ checkedBy: 'gateway', maxVoltageV: 50 });
const reconnect = { action: 'reconnect' as const, attempts: 1, supersededBy: null };
const judge = (profile: ReturnType<typeof rules>, facts: AttemptFacts) => judgeAttempt(reconnect, profile, facts, NOW, 0.5);

describe('judgeAttempt: a close refused for voltage on the load side', () => {
  it('the meter refused (driver outcome load_side_voltage): outcome load_side_voltage, failed on the first attempt, the voltage in the reason', () => {
    const v = judge(byMeter, { command: 'load_side_voltage', readBack: 'disconnected', loadSideVoltageV: 231 });
    expect(v).toMatchObject({ outcome: 'load_side_voltage', next: 'failed' });
    expect(v.reason).toMatch(/^close refused: 231 V on the load side \(the meter refused to close\); a bypass, a generator backfeed or tampering: closing is dangerous, so no close is sent again and a crew is sent$/);
  });

  it('the gateway withheld the close: the reason says no close was sent and names the threshold', () => {
    const v = judge(byGateway, { command: 'load_side_voltage', closeWithheld: true, readBack: 'disconnected', loadSideVoltageV: 229.5 });
    expect(v.outcome).toBe('load_side_voltage');
    expect(v.reason).toContain("close refused: 229.5 V on the load side (the gateway's check before closing, above 50 V; no close sent)");
  });

  it('a meter that checks itself but refused silently: the read-back shows the relay open with voltage on the load side', () => {
    const v = judge(byMeter, { command: 'ok', readBack: 'disconnected', loadSideVoltageV: 225 });
    expect(v).toMatchObject({ outcome: 'load_side_voltage', next: 'failed' });
    expect(v.reason).toContain('(the read-back shows the relay still disconnected)');
  });

  it('below the threshold, or where the profile demands no check, an open relay after a close is an ordinary verify_mismatch, retried', () => {
    expect(judge(byMeter, { command: 'ok', readBack: 'disconnected', loadSideVoltageV: 12 })).toMatchObject({ outcome: 'verify_mismatch', next: 'queued' });
    expect(judge(rules(NO_LOAD_SIDE_CHECK), { command: 'ok', readBack: 'disconnected', loadSideVoltageV: 231 })).toMatchObject({ outcome: 'verify_mismatch', next: 'queued' });
  });

  it('a read-back that shows the relay closed is done: success means verified, whatever the command said', () => {
    expect(judge(byMeter, { command: 'load_side_voltage', readBack: 'connected', loadSideVoltageV: 230 })).toMatchObject({ outcome: 'ok', next: 'done' });
  });

  it('a superseded order is superseded, not escalated', () => {
    const v = judgeAttempt({ ...reconnect, supersededBy: 'ord_new' }, byMeter, { command: 'load_side_voltage', readBack: 'disconnected', loadSideVoltageV: 231 }, NOW, 0);
    expect(v).toMatchObject({ outcome: 'load_side_voltage', next: 'superseded' });
  });
});

describe('escalateVerdict: the reconnect goes to the field at once, first in the queue, with no remote attempt after', () => {
  const refused = judge(byMeter, { command: 'load_side_voltage', readBack: 'disconnected', loadSideVoltageV: 231 });

  it('a load_side_voltage work order of priority 1, even with 20 h left, with the reason; the order never comes due again remotely', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null }, refused, none, NOW, policy);
    expect(v).toMatchObject({ outcome: 'load_side_voltage', next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT });
    expect(v.escalation).toMatchObject({ kind: 'load_side_voltage', priority: LOAD_SIDE_PRIORITY, dueAt: NOW + 19 * H });
    expect(LOAD_SIDE_PRIORITY).toBe(1);
    expect(v.escalation!.reason).toMatch(/^voltage on the load side: do not close from afar; find the bypass, generator backfeed or tampering and make it safe, then restore the supply on site \(close refused: 231 V on the load side/);
  });

  it('a disconnect the meter reports the same way ends failed with a work order saying it was not done (a crew never disconnects on its own account)', () => {
    const v = escalateVerdict({ action: 'disconnect', deadline: null, escalatedAt: null }, { ...refused }, none, NOW, policy);
    expect(v.next).toBe('failed');
    expect(v.escalation).toMatchObject({ kind: 'load_side_voltage', priority: 1 });
    expect(v.escalation!.reason).toMatch(/^voltage on the load side: the disconnect was not done and this order has ended/);
  });

  it('an order already with the field (late, on slow retries) gets no further remote attempt, and its open work order is revised to tell the crew of the danger', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 5 * H, escalatedAt: NOW - H }, refused, none, NOW, policy);
    expect(v).toMatchObject({ next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT });
    expect(v.escalation).toBeUndefined();
    expect(v.reviseWorkOrder).toMatchObject({ kind: 'load_side_voltage', priority: 1, dueAt: NOW + 4 * H });
    expect(v.reason).toContain('close refused: 231 V on the load side');
  });
});

describe("the gateway's check before closing (preCloseCheck)", () => {
  const read = (value: Partial<RelayReading>): WireResult<RelayReading> => ({ outcome: 'ok', value: { relay: 'disconnected', at: NOW, ...value }, evidence: '{}', latencyMs: 5 });

  it('a live load side withholds the close: load_side_voltage, not sent', () => {
    const c = preCloseCheck(byGateway, read({ loadSideVoltageV: 231 }));
    expect(c).toMatchObject({ send: false, facts: { command: 'load_side_voltage', closeWithheld: true, readBack: 'disconnected', loadSideVoltageV: 231 } });
    if (!c.send) expect(c.problem).toBe("not sent: 231 V on the load side of the open relay, above the profile's 50 V");
  });

  it('a dead load side (or a relay already closed) lets the close go', () => {
    expect(preCloseCheck(byGateway, read({ loadSideVoltageV: 0.4 }))).toEqual({ send: true });
    expect(preCloseCheck(byGateway, read({ loadSideVoltageV: 50 }))).toEqual({ send: true });
    expect(preCloseCheck(byGateway, read({ relay: 'connected', loadSideVoltageV: 230 }))).toEqual({ send: true });
  });

  it('a reading without the load-side voltage is a profile problem (garbled), never a blind close', () => {
    const c = preCloseCheck(byGateway, read({}));
    expect(c).toMatchObject({ send: false, facts: { command: 'garbled' } });
    if (!c.send) expect(c.problem).toContain("the meter's reading has no load-side voltage");
  });

  it('a failed read withholds the close as that failure (retried like any)', () => {
    const c = preCloseCheck(byGateway, { outcome: 'timeout', detail: 'no reply within 600 ms', latencyMs: 600 });
    expect(c).toMatchObject({ send: false, facts: { command: 'timeout', readBack: undefined } });
  });
});

describe('profile: relay.loadSideVoltageCheck', () => {
  const mqtt = {
    id: 'x-mqtt',
    manufacturer: 'X',
    model: 'M',
    firmware: '1',
    protocol: 'mqtt',
    relay: { remoteReconnect: 'closes', operateTimeMs: 100 },
    timeouts: { commandMs: 1000, readMs: 1000 },
    retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
    mqtt: { commandTopic: 'm/{meterId}/cmd', replyTopic: 'm/{meterId}/reply', statusTopic: 'm/{meterId}/status', relayValues: { connected: 'ON', disconnected: 'OFF', armed: 'ARMED' } },
  };
  const withCheck = (check: unknown, extra: Record<string, unknown> = {}) => ({ ...mqtt, relay: { ...mqtt.relay, loadSideVoltageCheck: check }, mqtt: { ...mqtt.mqtt, ...extra } });
  const issues = (p: unknown) => {
    const r = FirmwareProfileSchema.safeParse(p);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('old profiles keep loading: absent or false is none', () => {
    expect(FirmwareProfileSchema.parse(mqtt).relay.loadSideVoltageCheck).toEqual({ checkedBy: 'none', maxVoltageV: 50 });
    expect(FirmwareProfileSchema.parse(withCheck(false)).relay.loadSideVoltageCheck).toEqual({ checkedBy: 'none', maxVoltageV: 50 });
  });

  it('a bare true is refused: it never said who checks', () => {
    expect(issues(withCheck(true)).join()).toContain('say who checks');
  });

  it('the gateway checks, with a default threshold of 50 V or its own', () => {
    expect(FirmwareProfileSchema.parse(withCheck({ checkedBy: 'gateway' })).relay.loadSideVoltageCheck).toEqual({ checkedBy: 'gateway', maxVoltageV: 50 });
    expect(FirmwareProfileSchema.parse(withCheck({ checkedBy: 'gateway', maxVoltageV: 30 })).relay.loadSideVoltageCheck.maxVoltageV).toBe(30);
  });

  it('a meter that checks itself must say how it refuses: the MQTT nack reason words', () => {
    expect(issues(withCheck({ checkedBy: 'meter' })).join()).toContain('relay.loadSideVoltageCheck: checkedBy "meter" needs mqtt.loadSideRefusalReasons');
    expect(issues(withCheck({ checkedBy: 'meter' }, { loadSideRefusalReasons: ['LOAD_SIDE_VOLTAGE'] }))).toEqual([]);
  });

  it('a Modbus profile: the meter check needs closeRefusal, the gateway check needs the load-side voltage point', () => {
    const { mqtt: _addressing, ...common } = mqtt;
    const modbus = {
      ...common,
      protocol: 'modbus',
      modbus: {
        relayCommand: { kind: 'coil', address: 0 },
        relayState: { kind: 'discreteInput', address: 0 },
      },
    };
    const withModbusCheck = (check: unknown, extra: Record<string, unknown> = {}) => ({ ...modbus, relay: { ...modbus.relay, loadSideVoltageCheck: check }, modbus: { ...modbus.modbus, ...extra } });
    expect(issues(withModbusCheck({ checkedBy: 'meter' })).join()).toContain('checkedBy "meter" needs modbus.closeRefusal');
    expect(issues(withModbusCheck({ checkedBy: 'meter' }, { closeRefusal: { exceptionCode: 4 } }))).toEqual([]);
    expect(issues(withModbusCheck({ checkedBy: 'gateway' })).join()).toContain('checkedBy "gateway" needs modbus.loadSideVoltageV');
    expect(issues(withModbusCheck({ checkedBy: 'gateway' }, { loadSideVoltageV: { table: 'inputRegister', address: 10, type: 'uint16', scale: 0.1 } }))).toEqual([]);
  });
});
