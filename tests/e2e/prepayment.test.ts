import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * Prepayment credit control end to end, on a fake clock for the hours and a real clock for the meters' energy:
 * a meter drawing 3.6 MW (1 kWh per second) spends a small top-up in seconds of real time. Friendly-credit hours
 * (every evening 16:00–10:00 and weekends) keep a Friday-evening cut-off until Monday 10:00.
 */
const CLOSES = 'acme-em340-fw2.4';
const meters: TestMeter[] = [
  { meterId: 'PRE-1', profileId: CLOSES, initialRelay: 'connected', loadW: 3_600_000 },
  { meterId: 'PRE-2', profileId: CLOSES, initialRelay: 'connected', loadW: 3_600_000 },
];
const FRIDAY_17 = Date.parse('2026-11-27T17:00:00Z');
const clock = new FakeClock(FRIDAY_17);
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `pre-${++n}` });
const notifications = async (meterId: string, kind: string) =>
  (await f.http('GET', `/v1/meters/${meterId}/timeline`)).body.items.filter((i: any) => i.kind === 'notification' && i.details.kind === kind);
const credit = async (meterId: string) => (await f.http('GET', `/v1/meters/${meterId}/credit`)).body;
const readUntil = async (meterId: string, what: string, done: (c: any) => boolean) => {
  const end = Date.now() + 30_000;
  for (;;) {
    await f.gateway.readings.runOnce();
    await new Promise((r) => setTimeout(r, 150));
    const c = await credit(meterId);
    if (done(c)) return c;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(c)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
};

beforeAll(async () => {
  const base = loadConfig({});
  f = await startGatewayFixture(
    meters,
    {
      // 25 cents per kWh; a top-up of 2.00 buys 8 kWh: 8 seconds of this meter. Emergency credit is offered below 0.50.
      prepayment: { tariff: { kind: 'flat', pricePerKwh: 25 }, credit: { warnAtPercentOfLastTopUp: [30, 10, 0], emergencyCredit: { amount: 100, offerWhenBelow: 50 } } },
      policy: { ...base.policy },
    },
    { clock },
  );
}, 60_000);
const prepayment = (m: string) => f.http('PUT', `/v1/meters/${m}/flags`, { key: f.billingKey, headers: k(), body: { prepaymentMode: true, prepaymentAgreementRef: `PPA-${m}` } });
afterAll(async () => {
  await f?.stop();
});

describe('prepayment credit control', () => {
  it('runs out of credit at 17:00 on a Friday: warnings at 30, 10 and 0% exactly once, emergency credit offered, and no cut-off before Monday 10:00', async () => {
    await prepayment('PRE-1');
    await f.gateway.readings.runOnce(); // the first reading is the starting point for charges
    // With no credit at all yet, emergency credit is offered once (before any top-up).
    await expect.poll(async () => (await notifications('PRE-1', 'customer.emergency_credit_offer')).length, { timeout: 5000 }).toBe(1);

    const top = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PRE-1', amountMinor: 200, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    expect(top.status).toBe(201);
    expect((await credit('PRE-1')).balance).toBe(200);
    const exhausted = await readUntil('PRE-1', 'credit to run out', (c) => c.balance === 0);
    expect(exhausted.balance).toBe(0);
    // More readings after running out send nothing again.
    await f.gateway.readings.runOnce();
    await f.gateway.readings.runOnce();
    const warnings = (await notifications('PRE-1', 'customer.low_credit')).map((w: any) => w.summary);
    expect(warnings).toHaveLength(3);
    const thresholds = (await f.http('GET', '/v1/meters/PRE-1/timeline')).body.items
      .filter((i: any) => i.kind === 'notification' && i.details.kind === 'customer.low_credit')
      .map((i: any) => i);
    expect(thresholds).toHaveLength(3);
    expect(await notifications('PRE-1', 'customer.emergency_credit_offer')).toHaveLength(2); // and once in this top-up's cycle

    // The offer is not taken: a cut-off is ordered, but not before friendly hours end on Monday 10:00.
    const cuts = (await f.http('GET', '/v1/orders?meterId=PRE-1&order=asc')).body.items.filter((o: any) => o.action === 'disconnect');
    // The first cut-off (no credit at all) was cancelled by the top-up; the second is this cycle's.
    expect(cuts.map((o: any) => o.state)).toEqual(['cancelled', expect.stringMatching(/queued|held/)]);
    const cut = cuts[1];
    expect(cut).toMatchObject({ reason: 'credit_exhausted', requestedBy: 'credit-control' });
    expect(cut.notBefore).toBe('2026-11-30T10:00:00.000Z');
    clock.set(Date.parse('2026-11-30T09:55:00Z'));
    await new Promise((r) => setTimeout(r, 400));
    expect(f.fleet.meter('PRE-1').received.filter((c) => c.op === 'disconnect')).toEqual([]);
    clock.set(Date.parse('2026-11-30T10:05:00Z'));
    const done = await f.waitForOrder(cut.id);
    expect(done.state).toBe('done');
    expect(f.fleet.meter('PRE-1').relay).toBe('disconnected');

    // A top-up reconnects at once.
    const again = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PRE-1', amountMinor: 500, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    const reconnect = again.body.effects[0].reconnectOrderId ?? (await f.http('GET', '/v1/orders?meterId=PRE-1&order=asc')).body.items.find((o: any) => o.action === 'reconnect')?.id;
    expect((await f.waitForOrder(reconnect)).state).toBe('done');
  }, 90_000);

  it('a top-up during emergency credit clears it', async () => {
    clock.set(Date.parse('2026-11-30T20:00:00Z')); // Monday evening, inside friendly hours
    await prepayment('PRE-2');
    await f.gateway.readings.runOnce();
    // With no credit yet, emergency credit is offered once (as for PRE-1); wait for it so the top-up starts a new cycle
    // after it, whatever the machine's speed.
    await expect.poll(async () => (await notifications('PRE-2', 'customer.emergency_credit_offer')).length, { timeout: 5000 }).toBe(1);
    await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PRE-2', amountMinor: 200, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    await readUntil('PRE-2', 'the emergency offer', (c) => c.status === 'emergency_available' || c.status === 'exhausted');
    // The offer of the new cycle is recorded by credit control just after the ledger shows the state: wait for it, then it is one more.
    await expect.poll(async () => (await notifications('PRE-2', 'customer.emergency_credit_offer')).length, { timeout: 5000 }).toBe(2);
    const ec = await f.http('POST', '/v1/meters/PRE-2/emergency-credit', { key: f.billingKey, headers: k() });
    expect(ec.status).toBe(200);
    expect(ec.body.emergencyCreditInUse).toBe(true);
    await readUntil('PRE-2', 'some emergency credit used', (c) => c.emergencyDebt > 0);
    await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PRE-2', amountMinor: 1000, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    const after = await credit('PRE-2');
    expect(after).toMatchObject({ status: 'in_credit', emergencyCreditInUse: false, emergencyDebt: 0 });
    expect(after.balance).toBeGreaterThan(800);
    const open = (await f.http('GET', '/v1/meters/PRE-2')).body.openOrders.filter((o: any) => o.action === 'disconnect');
    expect(open).toEqual([]);
    expect(f.fleet.meter('PRE-2').received.filter((c) => c.op === 'disconnect')).toEqual([]);
  }, 90_000);
});
