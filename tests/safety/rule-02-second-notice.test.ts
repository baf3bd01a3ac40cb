import { describe, expect, it } from 'vitest';
import { HOUR, iso, MIN, safetyWorldForFile, type ArrearsPath } from './safety-harness.js';

/**
 * DOMAIN.md rule 2 (issue 20, finding 2): 30 minutes before a disconnect for arrears the gateway sends the
 * customer a pre-disconnect notification, and sends the command only once the customer channel has ACCEPTED it
 * (a 2xx) and 30 minutes have passed since the delivery. The issue saw the opposite: the notification sat in the
 * outbox with 7 attempts, delivered_at null and HTTP 500, and the order went held → queued → in_flight → done.
 * Here the channel answers 503 on every path (single, bulk, CLI, plan), across a retry and a restart, and the
 * disconnect waits; when the channel recovers, the 30 minutes run from the delivery.
 *
 * The plan rule (rule 7) is off (`nonPaymentRequiresPlan: false`) so that single, bulk and CLI disconnects for
 * arrears reach rule 2 instead of being refused by the plan rule first.
 */
const METERS = ['S-SINGLE', 'S-BULK', 'S-CLI', 'S-PLAN', 'S-RETRY', 'S-RESTART', 'S-CHANGE'];
const w = safetyWorldForFile(METERS, { policy: { nonPaymentRequiresPlan: false } });
// The shared fake clock only moves forward in this file (w.moveClockTo), and each test stays inside a permitted window.

const preDisconnectNotices = async (id: string): Promise<any[]> => ((await w.order(id)).notifications ?? []).filter((n: any) => n.kind === 'pre_disconnect_notice');

/**
 * Finding 2's test: with the customer channel answering 503, the pre-disconnect notification is tried and
 * retried, never delivered, and the order is held E_SECOND_NOTICE_UNDELIVERED for two hours; it never reaches
 * the wire.
 */
async function heldWhileUndelivered(path: ArrearsPath, meterId: string): Promise<void> {
  w.channel.failing = true;
  const id = await w.arrearsDisconnectBy(path, meterId);
  // Positive evidence first: the gateway sent the notification and the channel refused it.
  await w.waitFor(`the pre-disconnect notification of ${id} tried`, async () => (await preDisconnectNotices(id)).some((n) => n.attempts >= 1 && n.lastError === 'HTTP 503'));
  await w.advance(2 * HOUR, 12);
  await w.waitForReason(id, 'E_SECOND_NOTICE_UNDELIVERED');
  const o = await w.order(id);
  expect(o.state).toBe('held');
  expect(o.stateReason).toContain('has not been delivered');
  expect(o.attemptsUsed).toBe(0);
  expect(o.notifications).toEqual([expect.objectContaining({ kind: 'pre_disconnect_notice', deliveredAt: null, lastError: 'HTTP 503' })]);
  expect(o.notifications[0].attempts).toBeGreaterThanOrEqual(3);
  // Never let through: not queued for the wire, not in flight, not done.
  expect((o.events as any[]).map((e) => e.to)).not.toContain('in_flight');
  await w.settle();
  expect(w.disconnectsOnWire(meterId)).toBe(0);
  expect(w.f.fleet.meter(meterId).relay).toBe('connected');
  expect(w.preDisconnectNoticesTo(meterId)).toEqual([]);
}

describe('rule 2: the command waits for the pre-disconnect notification to be delivered, and 30 minutes after', () => {
  it('single (finding 2): the channel answers 503: held E_SECOND_NOTICE_UNDELIVERED for two hours, the notification shows its attempts and HTTP 503, nothing on the wire', async () => {
    await heldWhileUndelivered('single', 'S-SINGLE');
  });

  it('bulk: the same: held undelivered, nothing on the wire', async () => {
    await heldWhileUndelivered('bulk', 'S-BULK');
  });

  it('CLI: `meterline disconnect --reason arrears`: held undelivered, nothing on the wire', async () => {
    w.moveClockTo(Date.parse('2026-11-25T09:00:00Z')); // Wednesday: two more hours stay inside the window
    await heldWhileUndelivered('cli', 'S-CLI');
  });

  it('plan: an approved plan’s order: held undelivered, nothing on the wire', async () => {
    await heldWhileUndelivered('plan', 'S-PLAN');
  });

  it('retry: the first command is dropped; 25 hours later the delivered notice no longer counts and a new one cannot be delivered: held E_SECOND_NOTICE_UNDELIVERED, one command on the wire', async () => {
    w.moveClockTo(Date.parse('2026-11-26T09:00:00Z')); // Thursday; 25.5 hours on is Friday 10:30, inside Friday's window
    w.channel.failing = false;
    w.f.fleet.meter('S-RETRY').dropCommands(1);
    const id = await w.arrearsDisconnectBy('single', 'S-RETRY');
    let delivered = 0;
    await w.waitFor('the first notification delivered', async () => {
      const n = (await preDisconnectNotices(id)).find((x) => x.deliveredAt !== null);
      delivered = n ? Date.parse(n.deliveredAt) : 0;
      return n !== undefined;
    });
    w.moveClockTo(delivered + 30 * MIN);
    await w.firstAttemptDropped(id, 'S-RETRY');
    w.channel.failing = true;
    // One jump: the retry is first looked at 25 hours after the delivery.
    await w.advance(25 * HOUR, 1);
    await w.waitFor('a new pre-disconnect notification, refused by the channel', async () => {
      const ns = await preDisconnectNotices(id);
      return ns.length === 2 && ns.some((n) => n.deliveredAt === null && n.lastError === 'HTTP 503');
    });
    await w.advance(40 * MIN, 8);
    await w.waitForReason(id, 'E_SECOND_NOTICE_UNDELIVERED');
    const o = await w.order(id);
    expect(o.state).toBe('held');
    expect(o.attemptsUsed).toBe(1);
    await w.settle();
    expect(w.disconnectsOnWire('S-RETRY')).toBe(1);
    expect(w.f.fleet.meter('S-RETRY').relay).toBe('connected');
  });

  it('restart: the order held undelivered survives a restart; an hour later it is still held, nothing sent', async () => {
    w.moveClockTo(Date.parse('2026-11-30T09:00:00Z')); // Monday
    w.channel.failing = true;
    const id = await w.arrearsDisconnectBy('single', 'S-RESTART');
    await w.advance(40 * MIN, 8);
    await w.waitForReason(id, 'E_SECOND_NOTICE_UNDELIVERED');
    const before = (await preDisconnectNotices(id))[0].attempts as number;
    await w.restart();
    await w.advance(1 * HOUR, 12);
    // Positive evidence that the restarted gateway works on it: the notification is retried and the order looked at.
    await w.waitFor('the restarted gateway retrying the notification and judging the order', async () => {
      const o = await w.order(id);
      const n = (o.notifications ?? [])[0];
      return n.attempts > before && Date.parse(o.updatedAt) >= w.clock.now() - 2 * MIN;
    });
    const o = await w.order(id);
    expect(o.state).toBe('held');
    expect(o.stateReason).toMatch(/^E_SECOND_NOTICE_UNDELIVERED: /);
    expect(o.attemptsUsed).toBe(0);
    expect(o.notifications).toEqual([expect.objectContaining({ deliveredAt: null, lastError: 'HTTP 503' })]);
    await w.settle();
    expect(w.disconnectsOnWire('S-RESTART')).toBe(0);
    expect(w.f.fleet.meter('S-RESTART').relay).toBe('connected');
  });

  // Last in the file: the channel delivers again from here on.
  it('policy change / control: the channel recovers; the notification is delivered on its next retry; the command goes 30 minutes after the DELIVERY, exactly once', async () => {
    w.channel.failing = true;
    const id = await w.arrearsDisconnectBy('single', 'S-CHANGE');
    await w.advance(40 * MIN, 8);
    await w.waitForReason(id, 'E_SECOND_NOTICE_UNDELIVERED');
    w.channel.failing = false;
    let delivered = 0;
    for (let i = 0; i < 20 && delivered === 0; i++) {
      await w.advance(1 * MIN, 1);
      const n = (await preDisconnectNotices(id))[0];
      if (n?.deliveredAt) delivered = Date.parse(n.deliveredAt);
    }
    expect(delivered, 'the notification delivered once the channel recovered').toBeGreaterThan(0);
    expect(w.preDisconnectNoticesTo('S-CHANGE')).toEqual([expect.objectContaining({ signatureValid: true })]);
    // The delivery wakes the order: it now waits for 30 minutes from the delivery, not from the first send. A wake that
    // lands while the loop is judging the same order is taken at its next look instead (later, never earlier), so the
    // fake clock moves on a minute at a time meanwhile, as time does; the 30 minutes still run from the delivery.
    const heldFromDelivery = async () => {
      const o = await w.order(id);
      return (o.stateReason ?? '').startsWith('E_SECOND_NOTICE_PENDING:') && o.nextAttemptAt === iso(delivered + 30 * MIN);
    };
    for (let i = 0; i < 15 && !(await heldFromDelivery()); i++) await w.advance(1 * MIN, 1);
    await w.waitFor('the order held for 30 minutes from the delivery', heldFromDelivery);
    w.moveClockTo(delivered + 29 * MIN);
    await w.settle(800);
    expect((await w.order(id)).state).toBe('held');
    expect(w.disconnectsOnWire('S-CHANGE')).toBe(0);
    w.moveClockTo(delivered + 30 * MIN);
    const done = await w.f.waitForOrder(id);
    expect(done).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
    await w.waitFor('the command on the wire', () => w.disconnectsOnWire('S-CHANGE') >= 1);
    await w.settle();
    expect(w.disconnectsOnWire('S-CHANGE')).toBe(1);
    expect(w.f.fleet.meter('S-CHANGE').relay).toBe('disconnected');
    expect(done.attempts[0].startedAt).toBe(iso(delivered + 30 * MIN));
  });
});
