import { describe, expect, it } from 'vitest';
import type { TestMeter } from '../harness/gateway-fixture.js';
import { MIN, bulkResults, connectedMeter, customerRequest, isHeld, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 4 (README "Disconnect safety", rule 4): disconnects per day are capped per region and overall,
 * reserved atomically with the lease; an order over the cap is held E_DAILY_CAP until the next local day and
 * nothing reaches the wire for it meanwhile. customer_request, vacant_premises and arrears take a slot; safety (an
 * emergency) does not. Each path has its own region, and every region but `race` has a cap of 1.
 */
const REGIONS: Record<string, string[]> = {
  'r-single': ['CAP-S1', 'CAP-S2'],
  'r-bulk': ['CAP-B1', 'CAP-B2'],
  'r-plan': ['CAP-P1', 'CAP-P2'],
  'r-cli': ['CAP-C1', 'CAP-C2'],
  'r-retry': ['CAP-R1', 'CAP-R2'],
  'r-restart': ['CAP-RS1', 'CAP-RS2'],
  'r-safety': ['CAP-E1', 'CAP-E2', 'CAP-E3'],
  race: Array.from({ length: 30 }, (_, i) => `RACE-${String(i + 1).padStart(2, '0')}`),
};
const METERS: TestMeter[] = Object.entries(REGIONS).flatMap(([region, ids]) => ids.map((meterId) => connectedMeter(meterId, region)));
const WED_0000 = Date.parse('2026-11-25T00:00:00Z');

const w = safetyWorldForFile(METERS, { policy: { dailyCap: { overall: 1000, perRegion: { race: 5 }, defaultPerRegion: 1 } } });

/** A direct customer_request disconnect that must go: admitted, done, exactly one command on the wire. */
async function disconnectGoes(meterId: string): Promise<string> {
  const r = await w.single(meterId, customerRequest(meterId));
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  const done = await w.waitUntilOrder(r.body.id, 'done', (o) => o.state === 'done' || o.state === 'failed' || o.state === 'refused' || isHeld('E_DAILY_CAP')(o));
  expect(done.state, JSON.stringify(done.events)).toBe('done');
  expect(w.disconnectsOnWire(meterId)).toBe(1);
  expect(w.relayOf(meterId)).toBe('disconnected');
  return r.body.id as string;
}
const history = async (id: string) => JSON.stringify((await w.order(id)).events);

/** Orders kept across tests: the held ones go on the next local day (last test). */
const held: { single?: string; race: string[] } = { race: [] };

describe('rule 4: a region’s daily cap is never overrun, on any path; orders over it wait for the next local day', () => {
  it('control and single: the first customer_request disconnect of a region goes; the second is held E_DAILY_CAP and nothing is sent for it', async () => {
    await disconnectGoes('CAP-S1');
    const second = await w.single('CAP-S2', customerRequest('CAP-S2'));
    expect(second.status, JSON.stringify(second.body)).toBe(202);
    const o = await w.waitUntilOrder(second.body.id, 'held by the cap', isHeld('E_DAILY_CAP'));
    expect(o.stateReason).toContain('r-single');
    // Held until the next local day (UTC here), not a moment earlier.
    expect(Date.parse(o.nextAttemptAt)).toBe(WED_0000);
    await w.settle();
    expect((await w.order(second.body.id)).state).toBe('held');
    expect(w.disconnectsOnWire('CAP-S2')).toBe(0);
    expect(w.relayOf('CAP-S2')).toBe('connected');
    held.single = second.body.id;
  });

  it('bulk: two meters of one region in one bulk request: one command, the other held E_DAILY_CAP', async () => {
    const r = await w.bulk(REGIONS['r-bulk']!.map((meterId) => ({ meterId, action: 'disconnect', ...customerRequest(meterId) })));
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const ids = bulkResults(r).map((x) => x.id);
    expect(ids).toHaveLength(2);
    let orders: any[] = [];
    await w.waitFor('one bulk order done, the other held by the cap', async () => {
      orders = await Promise.all(ids.map((id) => w.order(id)));
      return orders.some((o) => o.state === 'done') && orders.some(isHeld('E_DAILY_CAP'));
    }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(orders.map((o) => ({ meterId: o.meterId, state: o.state, why: o.stateReason, events: o.events })))}`);
    });
    await w.settle();
    const [a, b] = await Promise.all(ids.map((id) => w.order(id)));
    const done = [a, b].find((o) => o.state === 'done');
    const waiting = [a, b].find((o) => o.state !== 'done');
    expect(isHeld('E_DAILY_CAP')(waiting), JSON.stringify(waiting)).toBe(true);
    expect(w.disconnectsOnWire(done.meterId)).toBe(1);
    expect(w.disconnectsOnWire(waiting.meterId)).toBe(0);
    expect(w.relayOf(waiting.meterId)).toBe('connected');
  });

  it('plan: two meters of one region in one approved arrears plan: one command, the other held E_DAILY_CAP', async () => {
    for (const m of REGIONS['r-plan']!) await w.serveNotice(m, 4);
    const plan = await w.plan(REGIONS['r-plan']!);
    const ids = REGIONS['r-plan']!.map((m) => plan.items[m]!.orderId!);
    for (const [i, id] of ids.entries()) {
      expect(id, JSON.stringify(plan.items)).toBeTruthy();
      // Rule 2 first: the pre-disconnect notice delivered; the 30 minutes run from its delivery.
      await w.waitUntilOrder(id, `${REGIONS['r-plan']![i]} second notice delivered`, (o) => isHeld('E_SECOND_NOTICE_PENDING')(o) && (o.notifications ?? []).some((n: any) => n.deliveredAt !== null));
    }
    expect(REGIONS['r-plan']!.map((m) => w.disconnectsOnWire(m))).toEqual([0, 0]);
    await w.advance(31 * MIN);
    let orders: any[] = [];
    await w.waitFor('one plan order done, the other held by the cap', async () => {
      orders = await Promise.all(ids.map((id) => w.order(id)));
      return orders.some((o) => o.state === 'done') && orders.some(isHeld('E_DAILY_CAP'));
    }).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(orders.map((o) => ({ meterId: o.meterId, state: o.state, why: o.stateReason, events: o.events })))}`);
    });
    await w.settle();
    const now = await Promise.all(ids.map((id) => w.order(id)));
    const done = now.find((o) => o.state === 'done');
    const waiting = now.find((o) => o.state !== 'done');
    expect(isHeld('E_DAILY_CAP')(waiting), JSON.stringify(waiting)).toBe(true);
    expect(w.disconnectsOnWire(done.meterId)).toBe(1);
    expect(w.disconnectsOnWire(waiting.meterId)).toBe(0);
    expect(w.relayOf(waiting.meterId)).toBe('connected');
  });

  it('CLI: with the region’s slot used, `meterline disconnect` is admitted held E_DAILY_CAP (exit 0) and nothing is sent', async () => {
    await disconnectGoes('CAP-C1');
    const r = await w.cli(['disconnect', 'CAP-C2', '--reason', 'customer_request', '--reference', 'REQ-CAP-C2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const listed = await w.disconnectOrdersOf('CAP-C2');
    expect(listed).toHaveLength(1);
    const o = await w.waitUntilOrder(listed[0].id, 'held by the cap', isHeld('E_DAILY_CAP'));
    expect(r.stdout).toContain(o.id);
    expect(r.stdout).toContain('held');
    await w.settle();
    expect((await w.order(o.id)).state).toBe('held');
    expect(w.disconnectsOnWire('CAP-C2')).toBe(0);
    expect(w.relayOf('CAP-C2')).toBe('connected');
  });

  it('retry: a retry of the order holding the day’s slot takes no second slot and goes; a second order of the region stays held, 0 commands for its meter', async () => {
    w.f.fleet.meter('CAP-R1').dropCommands(1);
    const first = await w.single('CAP-R1', customerRequest('CAP-R1'));
    expect(first.status).toBe(202);
    await w.waitUntilOrder(first.body.id, 'the first attempt to fail and wait for its retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
    expect(w.disconnectsOnWire('CAP-R1')).toBe(1); // the dropped one
    const second = await w.single('CAP-R2', customerRequest('CAP-R2'));
    expect(second.status).toBe(202);
    await w.waitUntilOrder(second.body.id, 'held by the cap', isHeld('E_DAILY_CAP'));
    await w.advance(2000, 2); // the retry's backoff (50–200 ms) passes
    const done = await w.waitUntilOrder(first.body.id, 'done on its retry', (o) => o.state !== 'queued' && o.state !== 'in_flight');
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    expect(done.attemptsUsed).toBe(2);
    await w.settle();
    expect(w.disconnectsOnWire('CAP-R1')).toBe(2);
    expect(w.relayOf('CAP-R1')).toBe('disconnected');
    const still = await w.order(second.body.id);
    expect(isHeld('E_DAILY_CAP')(still), JSON.stringify(still.events)).toBe(true);
    expect(w.disconnectsOnWire('CAP-R2')).toBe(0);
    expect(w.relayOf('CAP-R2')).toBe('connected');
  });

  it('restart: the day’s count survives a restart; a new order of a full region is held E_DAILY_CAP', async () => {
    await disconnectGoes('CAP-RS1');
    await w.restart();
    const r = await w.single('CAP-RS2', customerRequest('CAP-RS2'));
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    await w.waitUntilOrder(r.body.id, 'held by the cap', isHeld('E_DAILY_CAP'));
    await w.settle(800);
    expect(isHeld('E_DAILY_CAP')(await w.order(r.body.id)), await history(r.body.id)).toBe(true);
    expect(w.disconnectsOnWire('CAP-RS2')).toBe(0);
    expect(w.relayOf('CAP-RS2')).toBe('connected');
  });

  it('race: 30 disconnects of one region (cap 5) sent at once: exactly 5 commands on the wire that day, 25 held E_DAILY_CAP', async () => {
    const meters = REGIONS.race!;
    const responses = await Promise.all(meters.map((m) => w.single(m, customerRequest(m))));
    for (const r of responses) expect(r.status, JSON.stringify(r.body)).toBe(202);
    const ids = responses.map((r) => r.body.id as string);
    let orders: any[] = [];
    await w
      .waitFor(
        'every race order done or held by the cap',
        async () => {
          orders = await Promise.all(ids.map((id) => w.order(id)));
          return orders.every((o) => ['done', 'failed', 'refused', 'cancelled'].includes(o.state) || isHeld('E_DAILY_CAP')(o));
        },
        40_000,
      )
      .catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(orders.filter((o) => o.state !== 'done' && !isHeld('E_DAILY_CAP')(o)).map((o) => ({ meterId: o.meterId, state: o.state, why: o.stateReason })))}`);
      });
    await w.settle(800);
    orders = await Promise.all(ids.map((id) => w.order(id)));
    const onWire = meters.reduce((n, m) => n + w.disconnectsOnWire(m), 0);
    const done = orders.filter((o) => o.state === 'done');
    const waiting = orders.filter(isHeld('E_DAILY_CAP'));
    expect({ onWire, done: done.length, held: waiting.length }).toEqual({ onWire: 5, done: 5, held: 25 });
    for (const o of waiting) expect(w.disconnectsOnWire(o.meterId)).toBe(0);
    expect(meters.filter((m) => w.relayOf(m) === 'disconnected')).toHaveLength(5);
    held.race = waiting.map((o) => o.id);
  }, 60_000);

  it('safety: an emergency is not capped; a safety disconnect in a full region goes', async () => {
    await disconnectGoes('CAP-E1');
    const capped = await w.single('CAP-E2', customerRequest('CAP-E2'));
    await w.waitUntilOrder(capped.body.id, 'held by the cap (the region is full)', isHeld('E_DAILY_CAP'));
    const r = await w.single('CAP-E3', { reason: 'safety', reference: 'INC-CAP-E3' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const done = await w.f.waitForOrder(r.body.id);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    expect(w.disconnectsOnWire('CAP-E3')).toBe(1);
    expect(w.relayOf('CAP-E3')).toBe('disconnected');
    await w.settle();
    expect(w.disconnectsOnWire('CAP-E2')).toBe(0);
  });

  it('the next local day: nothing goes before midnight; the held single order goes once Wednesday’s window opens; the race region gets 5 more, no more', async () => {
    const id = held.single!;
    expect(id).toBeTruthy();
    w.clock.set(Date.parse('2026-11-24T23:55:00Z'));
    await w.settle(800);
    expect(isHeld('E_DAILY_CAP')(await w.order(id)), await history(id)).toBe(true);
    expect(w.disconnectsOnWire('CAP-S2')).toBe(0);
    // A new day, but before the window: the cap no longer holds it, the window does.
    w.clock.set(Date.parse('2026-11-25T00:05:00Z'));
    await w.waitUntilOrder(id, 'held by the window after midnight', isHeld('E_OUTSIDE_WINDOW'));
    await w.settle();
    expect(w.disconnectsOnWire('CAP-S2')).toBe(0);
    w.clock.set(Date.parse('2026-11-25T08:05:00Z'));
    const done = await w.waitUntilOrder(id, 'done on Wednesday', (o) => o.state === 'done' || o.state === 'failed' || o.state === 'refused');
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    expect(w.disconnectsOnWire('CAP-S2')).toBe(1);
    expect(w.relayOf('CAP-S2')).toBe('disconnected');

    // Wednesday's cap for `race` is 5 again: 5 of the 25 held orders go, 20 wait for Thursday.
    const race = REGIONS.race!;
    let orders: any[] = [];
    await w
      .waitFor(
        'five race orders done on Wednesday, the rest held by the cap',
        async () => {
          orders = await Promise.all(held.race.map((x) => w.order(x)));
          return orders.filter((o) => o.state === 'done').length >= 5 && orders.every((o) => o.state === 'done' || isHeld('E_DAILY_CAP')(o));
        },
        30_000,
      )
      .catch((e) => {
        throw new Error(`${(e as Error).message}: ${JSON.stringify(orders.map((o) => ({ meterId: o.meterId, state: o.state, why: o.stateReason })))}`);
      });
    await w.settle(800);
    orders = await Promise.all(held.race.map((x) => w.order(x)));
    expect({ done: orders.filter((o) => o.state === 'done').length, held: orders.filter(isHeld('E_DAILY_CAP')).length }).toEqual({ done: 5, held: 20 });
    expect(race.reduce((n, m) => n + w.disconnectsOnWire(m), 0)).toBe(10);
  }, 60_000);
});
