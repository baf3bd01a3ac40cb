import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bulkResults, HOUR, MIN, startSafetyWorld, type SafetyWorld } from './safety-harness.js';

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
let w: SafetyWorld;

beforeAll(async () => {
  w = await startSafetyWorld(METERS, { policy: { nonPaymentRequiresPlan: false } });
}, 60_000);
afterAll(async () => {
  await w?.close();
});

const iso = (ms: number) => new Date(ms).toISOString();
/** The shared fake clock only moves forward in this file, and each test stays inside a permitted window. */
const moveTo = (t: number) => {
  expect(t, `the clock moves forward only (now ${iso(w.clock.now())})`).toBeGreaterThanOrEqual(w.clock.now());
  w.clock.set(t);
};
const preDisconnectNotices = async (id: string): Promise<any[]> => ((await w.order(id)).notifications ?? []).filter((n: any) => n.kind === 'pre_disconnect_notice');
const waitForCode = (id: string, code: string) =>
  w.waitFor(`order ${id} to carry ${code}`, async () => ((await w.order(id)).stateReason ?? '').startsWith(`${code}:`));
const deliveredToCustomer = (meterId: string) => w.channel.received.filter((r) => r.kind === 'pre_disconnect_notice' && r.body.meterId === meterId);

type Path = 'single' | 'bulk' | 'cli' | 'plan';
/** A disconnect for arrears by one path; the order's id. Rule 1 is satisfied (a letter delivered 4 days ago). */
async function disconnectFor(path: Path, meterId: string): Promise<string> {
  await w.serveNotice(meterId, 4);
  switch (path) {
    case 'single': {
      const r = await w.single(meterId, { reason: 'arrears' });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      return r.body.id;
    }
    case 'bulk': {
      const r = await w.bulk([{ meterId, action: 'disconnect', reason: 'arrears' }]);
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(r.body.created).toBe(1);
      return bulkResults(r)[0]!.id;
    }
    case 'cli': {
      const r = await w.cli(['disconnect', meterId, '--reason', 'arrears', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).id;
    }
    case 'plan': {
      const plan = await w.plan([meterId]);
      expect(plan.items[meterId]!.orderId, JSON.stringify(plan.items)).toBeTruthy();
      return plan.items[meterId]!.orderId!;
    }
  }
}

/**
 * Finding 2's test: with the customer channel answering 503, the pre-disconnect notification is tried and
 * retried, never delivered, and the order is held E_SECOND_NOTICE_UNDELIVERED for two hours; it never reaches
 * the wire.
 */
async function heldWhileUndelivered(path: Path, meterId: string): Promise<void> {
  w.channel.failing = true;
  const id = await disconnectFor(path, meterId);
  // Positive evidence first: the gateway sent the notification and the channel refused it.
  await w.waitFor(`the pre-disconnect notification of ${id} tried`, async () => (await preDisconnectNotices(id)).some((n) => n.attempts >= 1 && n.lastError === 'HTTP 503'));
  await w.advance(2 * HOUR, 12);
  await waitForCode(id, 'E_SECOND_NOTICE_UNDELIVERED');
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
  expect(deliveredToCustomer(meterId)).toEqual([]);
}

describe('rule 2: the command waits for the pre-disconnect notification to be delivered, and 30 minutes after', () => {
  it('single (finding 2): the channel answers 503: held E_SECOND_NOTICE_UNDELIVERED for two hours, the notification shows its attempts and HTTP 503, nothing on the wire', async () => {
    await heldWhileUndelivered('single', 'S-SINGLE');
  });

  it('bulk: the same: held undelivered, nothing on the wire', async () => {
    await heldWhileUndelivered('bulk', 'S-BULK');
  });

  it('CLI: `meterline disconnect --reason arrears`: held undelivered, nothing on the wire', async () => {
    moveTo(Date.parse('2026-11-25T09:00:00Z')); // Wednesday: two more hours stay inside the window
    await heldWhileUndelivered('cli', 'S-CLI');
  });

  it('plan: an approved plan’s order: held undelivered, nothing on the wire', async () => {
    await heldWhileUndelivered('plan', 'S-PLAN');
  });

  it('retry: the first command is dropped; 25 hours later the delivered notice no longer counts and a new one cannot be delivered: held E_SECOND_NOTICE_UNDELIVERED, one command on the wire', async () => {
    moveTo(Date.parse('2026-11-26T09:00:00Z')); // Thursday; 25.5 hours on is Friday 10:30, inside Friday's window
    w.channel.failing = false;
    w.f.fleet.meter('S-RETRY').dropCommands(1);
    const id = await disconnectFor('single', 'S-RETRY');
    let delivered = 0;
    await w.waitFor('the first notification delivered', async () => {
      const n = (await preDisconnectNotices(id)).find((x) => x.deliveredAt !== null);
      delivered = n ? Date.parse(n.deliveredAt) : 0;
      return n !== undefined;
    });
    moveTo(delivered + 30 * MIN);
    await w.waitFor('the first attempt to fail (the meter dropped the command)', async () => {
      const o = await w.order(id);
      return o.attemptsUsed >= 1 && o.state === 'queued';
    });
    await w.waitFor('the dropped command on the wire', () => w.disconnectsOnWire('S-RETRY') >= 1);
    w.channel.failing = true;
    // One jump: the retry is first looked at 25 hours after the delivery.
    await w.advance(25 * HOUR, 1);
    await w.waitFor('a new pre-disconnect notification, refused by the channel', async () => {
      const ns = await preDisconnectNotices(id);
      return ns.length === 2 && ns.some((n) => n.deliveredAt === null && n.lastError === 'HTTP 503');
    });
    await w.advance(40 * MIN, 8);
    await waitForCode(id, 'E_SECOND_NOTICE_UNDELIVERED');
    const o = await w.order(id);
    expect(o.state).toBe('held');
    expect(o.attemptsUsed).toBe(1);
    await w.settle();
    expect(w.disconnectsOnWire('S-RETRY')).toBe(1);
    expect(w.f.fleet.meter('S-RETRY').relay).toBe('connected');
  });

  it('restart: the order held undelivered survives a restart; an hour later it is still held, nothing sent', async () => {
    moveTo(Date.parse('2026-11-30T09:00:00Z')); // Monday
    w.channel.failing = true;
    const id = await disconnectFor('single', 'S-RESTART');
    await w.advance(40 * MIN, 8);
    await waitForCode(id, 'E_SECOND_NOTICE_UNDELIVERED');
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
    const id = await disconnectFor('single', 'S-CHANGE');
    await w.advance(40 * MIN, 8);
    await waitForCode(id, 'E_SECOND_NOTICE_UNDELIVERED');
    w.channel.failing = false;
    let delivered = 0;
    for (let i = 0; i < 20 && delivered === 0; i++) {
      await w.advance(1 * MIN, 1);
      const n = (await preDisconnectNotices(id))[0];
      if (n?.deliveredAt) delivered = Date.parse(n.deliveredAt);
    }
    expect(delivered, 'the notification delivered once the channel recovered').toBeGreaterThan(0);
    expect(deliveredToCustomer('S-CHANGE')).toEqual([expect.objectContaining({ signatureValid: true })]);
    // The delivery wakes the order: it now waits for 30 minutes from the delivery, not from the first send.
    await w.waitFor('the order held for 30 minutes from the delivery', async () => {
      const o = await w.order(id);
      return (o.stateReason ?? '').startsWith('E_SECOND_NOTICE_PENDING:') && o.nextAttemptAt === iso(delivered + 30 * MIN);
    });
    moveTo(delivered + 29 * MIN);
    await w.settle(800);
    expect((await w.order(id)).state).toBe('held');
    expect(w.disconnectsOnWire('S-CHANGE')).toBe(0);
    moveTo(delivered + 30 * MIN);
    const done = await w.f.waitForOrder(id);
    expect(done).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
    await w.waitFor('the command on the wire', () => w.disconnectsOnWire('S-CHANGE') >= 1);
    await w.settle();
    expect(w.disconnectsOnWire('S-CHANGE')).toBe(1);
    expect(w.f.fleet.meter('S-CHANGE').relay).toBe('disconnected');
    expect(done.attempts[0].startedAt).toBe(iso(delivered + 30 * MIN));
  });
});
