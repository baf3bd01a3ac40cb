import { describe, expect, it } from 'vitest';
import { HOUR, MIN, bulkResults, customerRequest, isFinal, isHeld, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 9 (README "Disconnect safety", rule 9): a meter in protected mode (保电) refuses every trip, so the
 * gateway refuses every new disconnect for it, whatever the reason (safety included) and whatever the path; one
 * admitted before the mode was set is held E_PROTECTED_MODE before its next attempt (retries included) and, once the
 * mode is released, is looked at again within one tick of the control loop (issue 20, item 4) and passes every rule
 * again.
 */
const METERS = ['PM-SINGLE', 'PM-SAFETY', 'PM-BULK', 'PM-BULK-OK', 'PM-CLI', 'PM-PLAN', 'PM-RETRY', 'PM-RESTART', 'PM-CHANGE', 'PM-CHANGE-OK', 'PM-OK', 'PM-OK-BULK', 'PM-OK-CLI', 'PM-OK-SAFETY'];
const w = safetyWorldForFile(METERS);

const protectedMode = async (meterId: string, on: boolean, key = w.f.billingKey) => {
  const flags = await w.setFlags(meterId, { protectedMode: on }, key);
  expect(flags.protectedMode).toBe(on);
};

describe('rule 9: a meter in protected mode gets no disconnect, on any path, until the mode is released', () => {
  it('control: without protected mode, single, bulk, CLI and safety disconnects reach the wire', async () => {
    const single = await w.single('PM-OK', customerRequest('PM-OK'));
    expect(single.status, JSON.stringify(single.body)).toBe(202);
    const bulk = await w.bulk([{ meterId: 'PM-OK-BULK', action: 'disconnect', ...customerRequest('PM-OK-BULK') }]);
    expect(bulk.status, JSON.stringify(bulk.body)).toBe(202);
    const cli = await w.cli(['disconnect', 'PM-OK-CLI', '--reason', 'customer_request', '--reference', 'REQ-PM-OK-CLI']);
    expect(cli.code, cli.stderr).toBe(0);
    const safety = await w.single('PM-OK-SAFETY', { reason: 'safety', reference: 'INC-PM-OK' });
    expect(safety.status, JSON.stringify(safety.body)).toBe(202);
    const ids = [single.body.id, bulkResults(bulk)[0]!.id, (await w.disconnectOrdersOf('PM-OK-CLI'))[0].id, safety.body.id];
    for (const id of ids) {
      const o = await w.waitUntilOrder(id, 'done', isFinal);
      expect(o.state, JSON.stringify(o.events)).toBe('done');
    }
    for (const m of ['PM-OK', 'PM-OK-BULK', 'PM-OK-CLI', 'PM-OK-SAFETY']) {
      expect(w.disconnectsOnWire(m), m).toBe(1);
      expect(w.relayOf(m), m).toBe('disconnected');
    }
  });

  it('single: a disconnect for a meter in protected mode is refused E_PROTECTED_MODE at once; safety too; nothing reaches the wire', async () => {
    await protectedMode('PM-SINGLE', true);
    const r = await w.single('PM-SINGLE', customerRequest('PM-SINGLE'));
    expect(r.status, JSON.stringify(r.body)).toBe(409);
    expect(r.body.code).toBe('E_PROTECTED_MODE');
    await protectedMode('PM-SAFETY', true, w.f.operatorKey);
    const s = await w.single('PM-SAFETY', { reason: 'safety', reference: 'INC-PM-1' });
    expect(s.status, JSON.stringify(s.body)).toBe(409);
    expect(s.body.code).toBe('E_PROTECTED_MODE');
    await w.settle();
    for (const m of ['PM-SINGLE', 'PM-SAFETY']) {
      const orders = await w.disconnectOrdersOf(m);
      expect(orders.map((o) => o.state)).toEqual(['refused']);
      expect(orders[0].stateReason).toMatch(/^E_PROTECTED_MODE: /);
      expect(w.disconnectsOnWire(m)).toBe(0);
      expect(w.relayOf(m)).toBe('connected');
    }
  });

  it('bulk: the line for the protected meter is refused E_PROTECTED_MODE; the other line goes', async () => {
    await protectedMode('PM-BULK', true);
    const r = await w.bulk([
      { meterId: 'PM-BULK', action: 'disconnect', ...customerRequest('PM-BULK') },
      { meterId: 'PM-BULK-OK', action: 'disconnect', ...customerRequest('PM-BULK-OK') },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const [refused, ok] = bulkResults(r);
    expect(refused).toMatchObject({ state: 'refused', reason: expect.stringMatching(/^E_PROTECTED_MODE: /) });
    expect(r.body.results[0].outcome).toBe('refused');
    const done = await w.waitUntilOrder(ok!.id, 'done', isFinal);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    await w.settle();
    expect((await w.order(refused!.id)).state).toBe('refused');
    expect(w.disconnectsOnWire('PM-BULK')).toBe(0);
    expect(w.relayOf('PM-BULK')).toBe('connected');
    expect(w.disconnectsOnWire('PM-BULK-OK')).toBe(1);
  });

  it('CLI: `meterline disconnect` for a meter in protected mode exits 3 with E_PROTECTED_MODE; nothing reaches the wire', async () => {
    await protectedMode('PM-CLI', true);
    const r = await w.cli(['disconnect', 'PM-CLI', '--reason', 'customer_request', '--reference', 'REQ-PM-CLI']);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.stderr).toContain('E_PROTECTED_MODE');
    const s = await w.cli(['disconnect', 'PM-CLI', '--reason', 'safety', '--reference', 'INC-PM-CLI']);
    expect(s.code, s.stdout + s.stderr).toBe(3);
    expect(s.stderr).toContain('E_PROTECTED_MODE');
    await w.settle();
    expect((await w.disconnectOrdersOf('PM-CLI')).map((o) => o.state)).toEqual(['refused', 'refused']);
    expect(w.disconnectsOnWire('PM-CLI')).toBe(0);
    expect(w.relayOf('PM-CLI')).toBe('connected');
  });

  it('plan: an approved arrears plan’s item for a meter in protected mode is refused E_PROTECTED_MODE; nothing reaches the wire', async () => {
    await w.serveNotice('PM-PLAN', 4);
    await protectedMode('PM-PLAN', true);
    const plan = await w.plan(['PM-PLAN']);
    const item = plan.items['PM-PLAN']!;
    expect(item, JSON.stringify(plan)).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_PROTECTED_MODE: /) });
    await w.settle();
    expect((await w.order(item.orderId!)).state).toBe('refused');
    expect(w.disconnectsOnWire('PM-PLAN')).toBe(0);
    expect(w.relayOf('PM-PLAN')).toBe('connected');
  });

  it('retry: protected mode set before the retry holds it (1 command); released, it leaves held within a short real-time wait, no clock change, and the command goes', async () => {
    w.f.fleet.meter('PM-RETRY').dropCommands(1);
    const r = await w.single('PM-RETRY', customerRequest('PM-RETRY'));
    expect(r.status).toBe(202);
    const id = r.body.id as string;
    await w.waitUntilOrder(id, 'the first attempt to fail and wait for its retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
    expect(w.disconnectsOnWire('PM-RETRY')).toBe(1);
    await protectedMode('PM-RETRY', true);
    await w.advance(2000, 2); // the retry's backoff passes: the gate looks at it before the attempt
    await w.waitUntilOrder(id, 'held by protected mode', isHeld('E_PROTECTED_MODE'));
    await w.settle();
    expect(isHeld('E_PROTECTED_MODE')(await w.order(id))).toBe(true);
    expect(w.disconnectsOnWire('PM-RETRY')).toBe(1);
    expect(w.relayOf('PM-RETRY')).toBe('connected');

    // Released: the held order is due again in the same transaction; no clock change is needed.
    const frozen = w.clock.now();
    await protectedMode('PM-RETRY', false);
    const started = Date.now();
    await w.waitUntilOrder(id, 'leave held after the release', (o) => o.state !== 'held', 5000);
    const tookMs = Date.now() - started;
    const done = await w.waitUntilOrder(id, 'done', isFinal);
    expect(w.clock.now()).toBe(frozen);
    expect(done.state, JSON.stringify(done.events)).toBe('done');
    expect(tookMs).toBeLessThan(5000);
    expect(w.disconnectsOnWire('PM-RETRY')).toBe(2);
    expect(w.relayOf('PM-RETRY')).toBe('disconnected');
  });

  it('restart: an order held by protected mode stays held across a restart and an hour; nothing more is sent', async () => {
    w.f.fleet.meter('PM-RESTART').dropCommands(1);
    const r = await w.single('PM-RESTART', customerRequest('PM-RESTART'));
    expect(r.status).toBe(202);
    const id = r.body.id as string;
    await w.waitUntilOrder(id, 'the first attempt to fail and wait for its retry', (o) => o.attemptsUsed >= 1 && o.state === 'queued');
    await protectedMode('PM-RESTART', true);
    await w.advance(2000, 2);
    await w.waitUntilOrder(id, 'held by protected mode', isHeld('E_PROTECTED_MODE'));
    expect(w.disconnectsOnWire('PM-RESTART')).toBe(1); // the dropped one
    await w.restart();
    await w.advance(HOUR, 6);
    await w.settle();
    const after = await w.order(id);
    expect(isHeld('E_PROTECTED_MODE')(after), JSON.stringify(after.events)).toBe(true);
    expect(after.attemptsUsed).toBe(1);
    expect(w.disconnectsOnWire('PM-RESTART')).toBe(1);
    expect(w.relayOf('PM-RESTART')).toBe('connected');
  });

  it('policy change: a plan order waiting for its second notice’s 30 minutes, its meter then put in protected mode: held E_PROTECTED_MODE when they pass, nothing sent; the other meter of the plan goes', async () => {
    for (const m of ['PM-CHANGE', 'PM-CHANGE-OK']) await w.serveNotice(m, 4);
    const plan = await w.plan(['PM-CHANGE', 'PM-CHANGE-OK']);
    const id = plan.items['PM-CHANGE']!.orderId!;
    const okId = plan.items['PM-CHANGE-OK']!.orderId!;
    for (const x of [id, okId]) {
      await w.waitUntilOrder(x, 'second notice delivered', (o) => isHeld('E_SECOND_NOTICE_PENDING')(o) && (o.notifications ?? []).some((n: any) => n.deliveredAt !== null));
    }
    await protectedMode('PM-CHANGE', true);
    await w.advance(31 * MIN);
    const ok = await w.waitUntilOrder(okId, 'done', isFinal);
    expect(ok.state, JSON.stringify(ok.events)).toBe('done');
    expect(w.disconnectsOnWire('PM-CHANGE-OK')).toBe(1);
    await w.waitUntilOrder(id, 'held by protected mode', isHeld('E_PROTECTED_MODE'));
    await w.settle();
    const after = await w.order(id);
    expect(isHeld('E_PROTECTED_MODE')(after), JSON.stringify(after.events)).toBe(true);
    expect(after.attemptsUsed).toBe(0);
    expect(w.disconnectsOnWire('PM-CHANGE')).toBe(0);
    expect(w.relayOf('PM-CHANGE')).toBe('connected');
    // The gate stopped it before the billing re-check: nobody asked billing about this order.
    expect(w.hook.asked.filter((q) => q.orderId === id)).toEqual([]);
  });
});
