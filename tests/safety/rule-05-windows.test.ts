import { describe, expect, it } from 'vitest';
import type { TestMeter } from '../harness/gateway-fixture.js';
import { DAY, HOUR, MIN, bulkResults, connectedMeter, iso, orderStory, safetyWorldForFile, startSafetyWorld, type SafetyWorld } from './safety-harness.js';

/**
 * DOMAIN.md rule 5 (issue 20, finding 4 and item 4): no disconnect at night, at weekends, on holidays or during a
 * declared extreme-weather period, whatever path it takes (single, bulk, plan, CLI, a retry, a restart). Lifting a
 * period or removing a holiday releases the orders it held at once; a new period holds the queued orders it covers
 * before their next attempt. An emergency (safety, with its incident reference) bypasses the windows.
 *
 * One world on one fake clock; the tests run in the clock's order (Tuesday 10:00 → the next Monday). Meters in
 * their own regions keep a declared period from touching the other tests.
 */
const METERS: TestMeter[] = [
  connectedMeter('W-LIFT', 'coast'),
  connectedMeter('W-CHANGE', 'hills'),
  connectedMeter('W-FREEZE-SAFETY', 'hills'),
  connectedMeter('W-RETRY'),
  connectedMeter('W-SINGLE'),
  connectedMeter('W-PLAN'),
  connectedMeter('W-CLI'),
  connectedMeter('W-NIGHT-SAFETY'),
  connectedMeter('W-BULK-1'),
  connectedMeter('W-BULK-2'),
];
const w = safetyWorldForFile(METERS);

const at = (text: string) => Date.parse(text);
const declareWeather = async (x: SafetyWorld, region: string, from: number, to: number) => {
  const r = await x.http('POST', '/v1/policy/weather', { key: x.f.supervisorKey, headers: x.key(), body: { kind: 'freeze', from: iso(from), to: iso(to), regions: [region] } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body as { id: string; to: string };
};

describe('rule 5: no disconnect outside the permitted windows, on any path', () => {
  it('finding 4: lifting an extreme-weather period releases the order it held at once, without waiting for the period’s end', async () => {
    const now = w.clock.now(); // Tuesday 10:00, inside the weekly window
    const freeze = await declareWeather(w, 'coast', now - MIN, now + 3 * DAY);
    const r = await w.single('W-LIFT', { reason: 'customer_request', reference: 'CRM-LIFT-1' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    expect(r.body.stateReason).toContain(freeze.id);
    await w.settle();
    expect(w.disconnectsOnWire('W-LIFT')).toBe(0);
    expect(w.f.fleet.meter('W-LIFT').relay).toBe('connected');

    const lifted = await w.http('DELETE', `/v1/policy/weather/${freeze.id}`, { key: w.f.supervisorKey, headers: w.key() });
    expect(lifted.status, JSON.stringify(lifted.body)).toBe(200);
    // No clock change: the order must leave `held` within a few ticks of real time, not at the period's old end.
    const after = await w.pollOrderState(r.body.id, ['done', 'failed', 'refused', 'cancelled']);
    expect(w.clock.now()).toBe(now);
    expect(after.state, orderStory(after)).toBe('done');
    expect((after.stateReason ?? '').includes(freeze.id), orderStory(after)).toBe(false);
    await w.settle();
    expect(w.disconnectsOnWire('W-LIFT')).toBe(1);
    expect(w.f.fleet.meter('W-LIFT').relay).toBe('disconnected');
  });

  it('policy change: a freeze declared between a dropped attempt and its retry holds the retry; a safety disconnect still goes during the freeze', async () => {
    w.f.fleet.meter('W-CHANGE').dropCommands(1);
    const r = await w.single('W-CHANGE', { reason: 'customer_request', reference: 'CRM-CHANGE-1' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    await w.firstAttemptDropped(id, 'W-CHANGE');

    const now = w.clock.now();
    const freeze = await declareWeather(w, 'hills', now, now + 3 * DAY);
    await w.advance(2 * MIN, 1); // the retry (backoff 50–200 ms on the fake clock) is due now
    const held = await w.waitForReason(id, 'E_OUTSIDE_WINDOW');
    expect(held.state, orderStory(held)).toBe('held');
    expect(held.stateReason).toContain(freeze.id);
    await w.settle();
    expect(w.disconnectsOnWire('W-CHANGE'), orderStory(await w.order(id))).toBe(1); // the dropped one only
    expect(w.f.fleet.meter('W-CHANGE').relay).toBe('connected');

    // An emergency bypasses the windows: a safety disconnect in the frozen region goes at once.
    const s = await w.single('W-FREEZE-SAFETY', { reason: 'safety', reference: 'INC-FREEZE-1' });
    expect(s.status, JSON.stringify(s.body)).toBe(202);
    const done = await w.pollOrderState(s.body.id, ['done', 'failed', 'refused', 'cancelled']);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('W-FREEZE-SAFETY')).toBe(1);
    expect(w.f.fleet.meter('W-FREEZE-SAFETY').relay).toBe('disconnected');
  });

  it('retry: a first command at 15:58 dropped by the meter is not retried after 16:00; exactly one command on the wire', async () => {
    w.clock.set(at('2026-11-24T15:58:00Z'));
    w.f.fleet.meter('W-RETRY').dropCommands(1);
    const r = await w.single('W-RETRY', { reason: 'customer_request', reference: 'CRM-RETRY-1' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    await w.firstAttemptDropped(id, 'W-RETRY');
    // The clock passes 16:00 before the retry comes due (one jump: no instant inside the window in between).
    w.clock.set(at('2026-11-24T16:01:00Z'));
    const held = await w.waitForReason(id, 'E_OUTSIDE_WINDOW');
    expect(held.state, orderStory(held)).toBe('held');
    expect(held.nextAttemptAt).toBe('2026-11-25T08:00:00.000Z');
    await w.settle();
    expect(w.disconnectsOnWire('W-RETRY'), orderStory(await w.order(id))).toBe(1);
    expect(w.f.fleet.meter('W-RETRY').relay).toBe('connected');
  });

  it('control, single: a request at 16:05 on Tuesday is held; nothing until Wednesday 07:55; after 08:00 the command goes', async () => {
    w.clock.set(at('2026-11-24T16:05:00Z'));
    const r = await w.single('W-SINGLE', { reason: 'customer_request', reference: 'CRM-SINGLE-1' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    expect(r.body.nextAttemptAt).toBe('2026-11-25T08:00:00.000Z');
    const id = r.body.id as string;
    await w.advance(at('2026-11-25T07:55:00Z') - w.clock.now(), 8);
    await w.settle();
    const night = await w.order(id);
    expect(night.state, orderStory(night)).toBe('held');
    expect(w.disconnectsOnWire('W-SINGLE')).toBe(0);
    expect(w.f.fleet.meter('W-SINGLE').relay).toBe('connected');

    await w.advance(10 * MIN, 2); // 08:05
    const done = await w.pollOrderState(id, ['done', 'failed', 'refused', 'cancelled']);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('W-SINGLE')).toBe(1);
    expect(w.f.fleet.meter('W-SINGLE').relay).toBe('disconnected');
  });

  it('plan: an arrears disconnect at 15:40, whose second notice’s 30 minutes would end after 16:00, is held for the next window; no notice announces it, nothing is sent', async () => {
    w.clock.set(at('2026-11-25T15:40:00Z'));
    await w.serveNotice('W-PLAN', 4);
    const plan = await w.plan(['W-PLAN']);
    const id = plan.items['W-PLAN']!.orderId!;
    expect(id, JSON.stringify(plan)).toBeTruthy();
    // The customer is not told of a disconnect that could not happen at the time the notice would give.
    const waiting = await w.waitForReason(id, 'E_OUTSIDE_WINDOW');
    expect(waiting.nextAttemptAt).toBe('2026-11-26T08:00:00.000Z');
    expect(w.channel.received.some((m) => m.kind === 'pre_disconnect_notice' && m.body.meterId === 'W-PLAN')).toBe(false);

    await w.advance(31 * MIN, 4); // 16:11: the window closed at 16:00
    const held = await w.waitForReason(id, 'E_OUTSIDE_WINDOW');
    expect(held.state, orderStory(held)).toBe('held');
    await w.settle();
    expect(w.disconnectsOnWire('W-PLAN'), orderStory(await w.order(id))).toBe(0);
    expect(w.f.fleet.meter('W-PLAN').relay).toBe('connected');
  });

  it('CLI: `meterline disconnect --reason vacant_premises --reference` at night exits 0 with the order held; nothing is sent', async () => {
    w.clock.set(at('2026-11-25T23:00:00Z'));
    const r = await w.cli(['disconnect', 'W-CLI', '--reason', 'vacant_premises', '--reference', 'MOVE-OUT-CLI-1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const order = JSON.parse(r.stdout);
    expect(order.state).toBe('held');
    expect(order.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    await w.waitForReason(order.id, 'E_OUTSIDE_WINDOW');
    await w.settle();
    expect(w.disconnectsOnWire('W-CLI')).toBe(0);
    expect(w.f.fleet.meter('W-CLI').relay).toBe('connected');
  });

  it('emergency: a safety disconnect with its incident reference goes at night', async () => {
    expect(w.clock.now()).toBe(at('2026-11-25T23:00:00Z'));
    const r = await w.single('W-NIGHT-SAFETY', { reason: 'safety', reference: 'INC-NIGHT-1' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const done = await w.pollOrderState(r.body.id, ['done', 'failed', 'refused', 'cancelled']);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('W-NIGHT-SAFETY')).toBe(1);
  });

  it('bulk: requests on Saturday are held; nothing through Sunday; they go on Monday at 08:00', async () => {
    w.clock.set(at('2026-11-28T10:00:00Z'));
    const r = await w.bulk([
      { meterId: 'W-BULK-1', action: 'disconnect', reason: 'customer_request', reference: 'CRM-BULK-1' },
      { meterId: 'W-BULK-2', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-BULK-2' },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const results = bulkResults(r);
    for (const o of results) {
      expect(o.state).toBe('held');
      expect(o.reason).toMatch(/^E_OUTSIDE_WINDOW: /);
    }
    await w.advance(at('2026-11-29T23:55:00Z') - w.clock.now(), 8);
    await w.settle();
    for (const o of results) expect((await w.order(o.id)).state, orderStory(await w.order(o.id))).toBe('held');
    expect(w.disconnectsOnWire('W-BULK-1')).toBe(0);
    expect(w.disconnectsOnWire('W-BULK-2')).toBe(0);

    w.clock.set(at('2026-11-30T08:05:00Z'));
    for (const o of results) expect((await w.pollOrderState(o.id, ['done', 'failed', 'refused', 'cancelled'])).state).toBe('done');
    expect(w.disconnectsOnWire('W-BULK-1')).toBe(1);
    expect(w.disconnectsOnWire('W-BULK-2')).toBe(1);
  });

  it('restart: a holiday added holds a queued retry before its attempt; removed again, it releases the orders it held at once, not at the hold’s old end', async () => {
    // A world of its own on its own clock (Tuesday 24 November 10:00), restarted with a changed calendar.
    const h = await startSafetyWorld([connectedMeter('W-HOLIDAY-ADD'), connectedMeter('W-HOLIDAY')]);
    const holidays = (list: string[]) => (c: any) => ({ ...c, policy: { ...c.policy, windows: { ...c.policy.windows, holidays: list } } });
    try {
      h.f.fleet.meter('W-HOLIDAY-ADD').dropCommands(1);
      const a = await h.single('W-HOLIDAY-ADD', { reason: 'customer_request', reference: 'CRM-HOLIDAY-ADD-1' });
      expect(a.status, JSON.stringify(a.body)).toBe(202);
      await h.firstAttemptDropped(a.body.id, 'W-HOLIDAY-ADD');

      // Today becomes a holiday: the queued retry is held by the gate before it is sent again.
      await h.restart(holidays(['2026-11-24']));
      await h.advance(MIN, 1);
      const addHeld = await h.waitForReason(a.body.id, 'E_OUTSIDE_WINDOW');
      expect(addHeld.state, orderStory(addHeld)).toBe('held');
      expect(addHeld.stateReason).toContain('holiday');
      await h.settle();
      expect(h.disconnectsOnWire('W-HOLIDAY-ADD'), orderStory(addHeld)).toBe(1);

      const r = await h.single('W-HOLIDAY', { reason: 'customer_request', reference: 'CRM-HOLIDAY-1' });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(r.body.state).toBe('held');
      expect(r.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: .*holiday/);
      expect(r.body.nextAttemptAt).toBe('2026-11-25T08:00:00.000Z');
      const id = r.body.id as string;
      await h.advance(HOUR, 2); // still the holiday
      await h.settle();
      expect((await h.order(id)).state).toBe('held');
      expect(h.disconnectsOnWire('W-HOLIDAY')).toBe(0);

      // The holiday is removed from the configuration: a restart looks at every held disconnect again, now.
      const now = h.clock.now();
      await h.restart(holidays([]));
      const after = await h.pollOrderState(id, ['done', 'failed', 'refused', 'cancelled']);
      const afterAdd = await h.pollOrderState(a.body.id, ['done', 'failed', 'refused', 'cancelled']);
      expect(h.clock.now()).toBe(now);
      expect(after.state, orderStory(after)).toBe('done');
      expect(afterAdd.state, orderStory(afterAdd)).toBe('done');
      expect(h.disconnectsOnWire('W-HOLIDAY')).toBe(1);
      expect(h.disconnectsOnWire('W-HOLIDAY-ADD')).toBe(2); // the dropped one, and the one after the holiday was removed
      expect(h.f.fleet.meter('W-HOLIDAY').relay).toBe('disconnected');
      expect(h.f.fleet.meter('W-HOLIDAY-ADD').relay).toBe('disconnected');
    } finally {
      await h.close();
    }
  }, 60_000);
});
