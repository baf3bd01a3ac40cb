import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import type { TestMeter } from '../harness/gateway-fixture.js';
import { CLOSES, MIN, bulkResults, customerRequest, isHeld, startSafetyWorld, type SafetyWorld } from './safety-harness.js';

/**
 * DOMAIN.md rule 12 (README "Disconnect safety"): reconnects are never held by disconnect rules (windows, caps,
 * weather, breakers, approvals) and go ahead of disconnects; while a reconnect is open for a meter a disconnect is
 * refused E_RECONNECT_PENDING, and a reconnect supersedes a disconnect that is not on the wire, so a customer who
 * paid stays on supply, whatever path the disconnect took.
 *
 * The world's calendar is the default one plus a Saturday evening window (18:00–20:00 UTC), so that a region's daily
 * slot can be used on a Saturday (the last test) while Saturday night stays outside every window.
 */
const frz = (meterId: string, initialRelay: 'connected' | 'disconnected' = 'connected'): TestMeter => ({ meterId, profileId: CLOSES, initialRelay, region: 'frz', link: 'dc-frz' });
const METERS: (string | TestMeter)[] = [
  'R12-OK',
  'R12-SINGLE',
  'R12-BULK',
  'R12-PLAN',
  'R12-CLI',
  'R12-RETRY',
  'R12-PAY',
  'R12-RESTART',
  frz('FRZ-BAD'),
  frz('FRZ-OFF', 'disconnected'),
  frz('FRZ-CAP'),
  frz('FRZ-DIS'),
  frz('FRZ-SAFE'),
];
const SAT_19 = Date.parse('2026-11-28T19:00:00Z');
const SAT_22 = Date.parse('2026-11-28T22:00:00Z');
let w: SafetyWorld;

beforeAll(async () => {
  const base = loadConfig({});
  w = await startSafetyWorld(METERS, {
    policy: {
      windows: { ...base.policy.windows, weekly: { ...base.policy.windows.weekly, sat: ['18:00-20:00'] } },
      dailyCap: { overall: 500, perRegion: { frz: 1 }, defaultPerRegion: 200 },
    },
    // The success-rate monitor looks often, and a breaker needs 5 disconnect attempts in 15 minutes (no other
    // population of this file gets that many).
    config: { successRates: { ...base.successRates, breakerMinSamples: 5, evaluateEveryMs: 200 } },
  });
}, 60_000);
afterAll(async () => {
  await w?.close();
});

const reconnectsOnWire = (meterId: string) => w.wire.commands.filter((c) => c.meterId === meterId && c.op === 'reconnect').length;
const ended = (o: any) => ['done', 'armed', 'failed', 'refused', 'cancelled', 'superseded'].includes(o.state);
/** The customer paid: billing asks for the reconnect. */
async function reconnect(meterId: string): Promise<string> {
  const r = await w.http('POST', `/v1/meters/${meterId}/reconnect`, { key: w.f.billingKey, headers: w.key(), body: { reason: 'payment', paymentReceivedAt: new Date(w.clock.now()).toISOString() } });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body.id as string;
}
/** A reconnect that stays open: the meter answers nothing, so its first attempt times out and it waits for a retry. */
async function pendingReconnect(meterId: string): Promise<string> {
  w.f.fleet.meter(meterId).offlineUntil(Date.now() + 120_000);
  const id = await reconnect(meterId);
  await w.waitUntilOrder(id, 'its first attempt to time out and wait for a retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
  return id;
}
/** The meter answers again; the reconnect's retry finishes it. */
async function finishReconnect(meterId: string, id: string): Promise<void> {
  w.f.fleet.meter(meterId).offlineUntil(0);
  await w.advance(2000, 2);
  const o = await w.waitUntilOrder(id, 'done', ended);
  expect(o.state, JSON.stringify(o.events)).toBe('done');
  expect(w.relayOf(meterId)).toBe('connected');
}

describe('rule 12: a reconnect always wins over a disconnect, on any path', () => {
  it('control: with no reconnect open, a customer_request disconnect reaches the wire', async () => {
    const r = await w.single('R12-OK', customerRequest('R12-OK'));
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const o = await w.waitUntilOrder(r.body.id, 'done', ended);
    expect(o.state, JSON.stringify(o.events)).toBe('done');
    expect(w.disconnectsOnWire('R12-OK')).toBe(1);
    expect(w.relayOf('R12-OK')).toBe('disconnected');
  });

  it('single: while a reconnect is open, a disconnect is refused 409 E_RECONNECT_PENDING; nothing reaches the wire', async () => {
    const rc = await pendingReconnect('R12-SINGLE');
    const r = await w.single('R12-SINGLE', customerRequest('R12-SINGLE'));
    expect(r.status, JSON.stringify(r.body)).toBe(409);
    expect(r.body.code).toBe('E_RECONNECT_PENDING');
    await w.settle();
    const orders = await w.disconnectOrdersOf('R12-SINGLE');
    expect(orders.map((o) => o.state)).toEqual(['refused']);
    expect(orders[0].stateReason).toMatch(/^E_RECONNECT_PENDING: /);
    expect(w.disconnectsOnWire('R12-SINGLE')).toBe(0);
    await finishReconnect('R12-SINGLE', rc);
    await w.settle();
    expect(w.disconnectsOnWire('R12-SINGLE')).toBe(0);
  });

  it('bulk: [reconnect M, disconnect M] in one request: the disconnect is refused E_RECONNECT_PENDING, the reconnect is done, no disconnect on the wire', async () => {
    const r = await w.bulk([
      { meterId: 'R12-BULK', action: 'reconnect', reason: 'operator' },
      { meterId: 'R12-BULK', action: 'disconnect', ...customerRequest('R12-BULK') },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const [rc, dc] = bulkResults(r);
    expect(r.body.results.map((x: any) => x.outcome)).toEqual(['created', 'refused']);
    expect(dc).toMatchObject({ state: 'refused', reason: expect.stringMatching(/^E_RECONNECT_PENDING: /) });
    const done = await w.waitUntilOrder(rc!.id, 'done', ended);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    await w.settle();
    expect((await w.order(dc!.id)).state).toBe('refused');
    expect(w.disconnectsOnWire('R12-BULK')).toBe(0);
    expect(w.relayOf('R12-BULK')).toBe('connected');
  });

  it('plan: a plan approved while a reconnect of its meter is open: that item is refused E_RECONNECT_PENDING, nothing reaches the wire', async () => {
    await w.serveNotice('R12-PLAN', 4);
    const rc = await pendingReconnect('R12-PLAN');
    const plan = await w.plan(['R12-PLAN']);
    const item = plan.items['R12-PLAN']!;
    expect(item, JSON.stringify(plan)).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_RECONNECT_PENDING: /) });
    await w.settle();
    expect((await w.order(item.orderId!)).state).toBe('refused');
    expect(w.disconnectsOnWire('R12-PLAN')).toBe(0);
    await finishReconnect('R12-PLAN', rc);
    await w.settle();
    expect(w.disconnectsOnWire('R12-PLAN')).toBe(0);
    expect(w.preDisconnectNoticesTo('R12-PLAN')).toEqual([]);
  });

  it('CLI: `meterline disconnect` while a reconnect is open exits 3 with E_RECONNECT_PENDING; nothing reaches the wire', async () => {
    const rc = await pendingReconnect('R12-CLI');
    const r = await w.cli(['disconnect', 'R12-CLI', '--reason', 'customer_request', '--reference', 'REQ-R12-CLI']);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.stderr).toContain('E_RECONNECT_PENDING');
    await w.settle();
    expect((await w.disconnectOrdersOf('R12-CLI')).map((o) => o.state)).toEqual(['refused']);
    expect(w.disconnectsOnWire('R12-CLI')).toBe(0);
    await finishReconnect('R12-CLI', rc);
  });

  it('retry (reconnect): a disconnect whose first command the meter dropped is superseded by a reconnect before its retry; no second disconnect command, the reconnect done', async () => {
    w.f.fleet.meter('R12-RETRY').dropCommands(1);
    const d = await w.single('R12-RETRY', customerRequest('R12-RETRY'));
    expect(d.status).toBe(202);
    await w.waitUntilOrder(d.body.id, 'the first attempt to fail and wait for its retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
    expect(w.disconnectsOnWire('R12-RETRY')).toBe(1); // the dropped one
    const rc = await reconnect('R12-RETRY');
    const superseded = await w.waitUntilOrder(d.body.id, 'superseded by the reconnect', (o) => o.state !== 'queued');
    expect(superseded.state, JSON.stringify(superseded.events)).toBe('superseded');
    expect(superseded.supersededBy).toBe(rc);
    const done = await w.waitUntilOrder(rc, 'done', ended);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    await w.advance(5 * MIN); // long past the disconnect's retry time
    await w.settle();
    expect((await w.order(d.body.id)).attemptsUsed).toBe(1);
    expect(w.disconnectsOnWire('R12-RETRY')).toBe(1);
    expect(reconnectsOnWire('R12-RETRY')).toBe(1);
    expect(w.relayOf('R12-RETRY')).toBe('connected');
  });

  it('retry (payment): an arrears disconnect whose first command was dropped is cancelled by a payment before its retry; no second disconnect command', async () => {
    await w.serveNotice('R12-PAY', 4);
    const plan = await w.plan(['R12-PAY']);
    const id = plan.items['R12-PAY']!.orderId!;
    await w.waitUntilOrder(id, 'second notice delivered', (o) => isHeld('E_SECOND_NOTICE_PENDING')(o) && (o.notifications ?? []).some((n: any) => n.deliveredAt !== null));
    w.f.fleet.meter('R12-PAY').dropCommands(1);
    await w.advance(31 * MIN);
    await w.waitUntilOrder(id, 'the first attempt to fail and wait for its retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
    expect(w.disconnectsOnWire('R12-PAY')).toBe(1); // the dropped one
    const pay = await w.http('POST', '/v1/payments', {
      key: w.f.billingKey,
      headers: w.key(),
      body: { meterId: 'R12-PAY', amount: 80, receivedAt: new Date(w.clock.now()).toISOString(), reference: 'BANK-R12-PAY' },
    });
    expect(pay.status, JSON.stringify(pay.body)).toBe(201);
    const cancelled = await w.waitUntilOrder(id, 'cancelled by the payment', (o) => o.state !== 'queued');
    expect(cancelled.state, JSON.stringify(cancelled.events)).toBe('cancelled');
    await w.advance(5 * MIN);
    await w.settle();
    expect((await w.order(id)).attemptsUsed).toBe(1);
    expect(w.disconnectsOnWire('R12-PAY')).toBe(1);
    expect(w.relayOf('R12-PAY')).toBe('connected');
  });

  it('restart: a disconnect held outside the window is superseded by a reconnect; after a restart and the next morning nothing is sent', async () => {
    w.clock.set(Date.parse('2026-11-24T16:05:00Z'));
    const d = await w.single('R12-RESTART', customerRequest('R12-RESTART'));
    expect(d.status, JSON.stringify(d.body)).toBe(202);
    await w.waitUntilOrder(d.body.id, 'held by the window', isHeld('E_OUTSIDE_WINDOW'));
    const rc = await reconnect('R12-RESTART');
    const superseded = await w.waitUntilOrder(d.body.id, 'superseded by the reconnect', (o) => o.state !== 'held');
    expect(superseded.state, JSON.stringify(superseded.events)).toBe('superseded');
    // The reconnect is not held by the window: it goes at 16:05.
    expect((await w.waitUntilOrder(rc, 'done', ended)).state).toBe('done');
    await w.restart();
    const wed9 = Date.parse('2026-11-25T09:00:00Z');
    await w.advance(wed9 - w.clock.now(), 6);
    await w.settle(800);
    const after = await w.order(d.body.id);
    expect(after.state, JSON.stringify(after.events)).toBe('superseded');
    expect(after.attemptsUsed).toBe(0);
    expect(w.disconnectsOnWire('R12-RESTART')).toBe(0);
    expect(w.relayOf('R12-RESTART')).toBe('connected');
  });

  it('policy change: Saturday night, the region’s cap used, a freeze declared and its breaker open: a reconnect goes at once, a disconnect (even safety) does not', async () => {
    // Saturday 19:00, inside this utility's Saturday window: the region's one slot of the day goes to a disconnect
    // whose meter refuses every command; 5 refused attempts make the monitor open the region's breaker.
    w.clock.set(SAT_19);
    w.f.fleet.meter('FRZ-BAD').nackCommands(99);
    const bad = await w.single('FRZ-BAD', customerRequest('FRZ-BAD'));
    expect(bad.status, JSON.stringify(bad.body)).toBe(202);
    await w.waitUntilOrder(bad.body.id, 'its first attempt (the lease takes the day’s slot)', (o) => o.attemptsUsed >= 1);
    // The slot is used: another customer_request of the region, inside the window, waits for Sunday.
    const capped = await w.single('FRZ-CAP', customerRequest('FRZ-CAP'));
    expect(capped.status, JSON.stringify(capped.body)).toBe(202);
    await w.waitUntilOrder(capped.body.id, 'held by the cap', isHeld('E_DAILY_CAP'));
    for (let i = 0; i < 60 && !ended(await w.order(bad.body.id)); i++) await w.advance(5000, 1);
    const failed = await w.order(bad.body.id);
    expect(failed.state, JSON.stringify(failed.events)).toBe('failed');
    expect(w.disconnectsOnWire('FRZ-BAD')).toBe(5);
    let breakers: any[] = [];
    await w.waitFor('the region’s breaker to open', async () => {
      breakers = (await w.http('GET', '/v1/stats/breakers')).body.items;
      return breakers.some((b) => b.scope === 'region' && b.key === 'frz');
    });
    const freeze = await w.http('POST', '/v1/policy/weather', {
      key: w.f.supervisorKey,
      headers: w.key(),
      body: { kind: 'freeze', from: new Date(w.clock.now()).toISOString(), to: '2026-11-30T12:00:00Z', regions: ['frz'] },
    });
    expect(freeze.status, JSON.stringify(freeze.body)).toBe(201);

    // Saturday 22:00: outside every window, during the freeze, the region's cap used, its breaker open.
    w.clock.set(SAT_22);
    expect((await w.http('GET', '/v1/policy/weather')).body.items.map((p: any) => p.kind)).toContain('freeze');
    const frozen = w.clock.now();
    const rc = await reconnect('FRZ-OFF');
    const done = await w.waitUntilOrder(rc, 'done at once', ended, 10_000);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    expect(w.clock.now()).toBe(frozen);
    expect(reconnectsOnWire('FRZ-OFF')).toBe(1);
    expect(w.relayOf('FRZ-OFF')).toBe('connected');

    const d = await w.single('FRZ-DIS', customerRequest('FRZ-DIS'));
    expect(d.status, JSON.stringify(d.body)).toBe(202);
    const s = await w.single('FRZ-SAFE', { reason: 'safety', reference: 'INC-FRZ-1' });
    expect(s.status, JSON.stringify(s.body)).toBe(202);
    for (const id of [d.body.id, s.body.id]) await w.waitUntilOrder(id, 'held by the breaker', isHeld('E_CIRCUIT_OPEN'));
    await w.settle(800);
    for (const id of [d.body.id, s.body.id]) expect(isHeld('E_CIRCUIT_OPEN')(await w.order(id))).toBe(true);
    expect((await w.order(capped.body.id)).state).toBe('held');
    expect(w.disconnectsOnWire('FRZ-CAP')).toBe(0);
    expect(w.disconnectsOnWire('FRZ-DIS')).toBe(0);
    expect(w.disconnectsOnWire('FRZ-SAFE')).toBe(0);
    expect(w.relayOf('FRZ-DIS')).toBe('connected');
    expect(w.relayOf('FRZ-SAFE')).toBe('connected');
  });
});
