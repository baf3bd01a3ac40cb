import { afterAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoRun } from '../harness/demo-run.js';
import { eventually } from '../harness/startup-run.js';

/**
 * The demo as a user runs it (`node dist/src/main.js`, demo configuration, its own data directory): a disconnect plan
 * for arrears runs end to end (the demo's simulated billing answers the payment re-check and takes the pre-disconnect
 * notice), and the demo's own activity produces plans, reconnects and an escalated work order. Only the pace is
 * changed, so the test waits seconds: plans and payments every second or two, the second notice 0 minutes before.
 */
const DAY = 86_400_000;
const running: DemoRun[] = [];
afterAll(async () => {
  await Promise.all(running.map((d) => d.gw.stop()));
});
const demo = async (name: string, pace: Record<string, unknown>): Promise<DemoRun> => {
  const d = await startDemo(name, pace);
  running.push(d);
  return d;
};

describe('the demo runs a disconnect plan end to end', () => {
  it('the README tour: notice, plan with computed dates, supervisor approval, and the plan and its order reach done with read-back', async () => {
    // A quiet demo (no activity of its own), so the meter is ours alone.
    const { keys, gw, api } = await demo('demo-tour', { reconnectEveryMs: 0, planEveryMs: 0 });
    const meter = 'SIM-000002';
    expect((await api(keys.operator, 'GET', `/v1/meters/${meter}/supply`)).body.status).toBe('on_supply');
    const now = Date.now();
    const notice = await api(keys.billing, 'POST', `/v1/meters/${meter}/notices`, { channel: 'letter', servedAt: new Date(now - 4 * DAY).toISOString(), delivery: 'delivered', receiptRef: 'RM-123' });
    expect(notice.status).toBe(201);
    const draft = await api(keys.operator, 'POST', '/v1/plans', { reason: 'arrears', windowFrom: new Date(now).toISOString(), windowTo: new Date(now + 2 * 3_600_000).toISOString(), meters: [meter] });
    expect(draft.status).toBe(201);
    expect(draft.body.status).toBe('draft');
    const approved = await api(keys.supervisor, 'POST', `/v1/plans/${draft.body.id}/approve`);
    expect(approved.status).toBe(200);
    expect(approved.body.status).toBe('approved');

    const done = await eventually(
      'the plan order done',
      async () => {
        const plan = (await api(keys.operator, 'GET', `/v1/plans/${draft.body.id}`)).body;
        return plan.items[0]?.state === 'done' ? plan : undefined;
      },
      60_000,
      250,
    );
    expect(done.summary).toEqual({ done: 1 });
    const order = (await api(keys.operator, 'GET', `/v1/orders/${done.items[0].orderId}`)).body;
    expect(order.state).toBe('done');
    expect(order.action).toBe('disconnect');
    expect(order.result).toMatchObject({ relay: 'disconnected', verified: true });
    // The meter's own words read back after the command (SIM-000002 is a volta-pp20: "OFF" is its open relay).
    expect(order.attempts.at(-1).evidence.readBack).toMatch(/"relay":"(OFF|disconnected)"/);
    // The pre-disconnect notice went to the demo's customer channel, signed, and was accepted.
    expect(order.notifications.some((n: any) => n.deliveredAt !== null)).toBe(true);
    // The meter is off supply because of this order.
    const supply = (await api(keys.operator, 'GET', `/v1/meters/${meter}/supply`)).body;
    expect(supply.status).toBe('disconnected_by_order');
    expect(gw.stdout).not.toContain('E_NO_BILLING_HOOK');
  }, 120_000);

  it("the demo's own activity: plans drafted by billing and approved by the supervisor run, payments reconnect, and the failing meter's reconnect escalates to a work order", async () => {
    const { keys, gw, api } = await demo('demo-activity', { reconnectEveryMs: 1000, planEveryMs: 2000 });
    const plan = await eventually(
      'a demo plan with a done disconnect',
      async () => {
        const plans = (await api(keys.operator, 'GET', '/v1/plans')).body.items as any[];
        return plans.find((p) => p.status === 'approved' && p.items.some((i: any) => i.state === 'done'));
      },
      90_000,
      500,
    );
    expect(plan.author).not.toBe(plan.decidedBy); // two clients: billing drafts, the supervisor approves
    // Later the customer pays: the demo billing records it and asks for the reconnect, which follows.
    const meterId = plan.items.find((i: any) => i.state === 'done').meterId as string;
    const reconnect = await eventually(
      `the reconnect of ${meterId} after its payment`,
      // done, or armed for a meter whose customer presses its button to close (a volta-pp20): both verified by read-back.
      async () => (await api(keys.operator, 'GET', `/v1/orders?meterId=${meterId}&action=reconnect&state=done&state=armed`)).body.items[0],
      60_000,
      500,
    );
    expect(reconnect.reason).toBe('payment');
    const work = await eventually(
      'an escalated reconnect with its work order',
      async () => {
        const items = (await api(keys.field, 'GET', '/v1/work-orders')).body.items as any[];
        return items[0];
      },
      90_000,
      500,
    );
    const escalated = (await api(keys.operator, 'GET', `/v1/orders/${work.orderId}`)).body;
    expect(escalated.action).toBe('reconnect');
    expect(escalated.state).toBe('escalated');
    expect(gw.stdout).toContain('stuck relay');
  }, 240_000);
});
