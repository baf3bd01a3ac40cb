import { createHmac } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBilling, type DemoBilling } from '../../src/gateway/demo-billing.js';
import { HttpPaymentRechecker } from '../../src/integrations/billing-recheck.js';

/**
 * The demo's simulated billing system answers the gateway as a production one must: the payment re-check through the
 * gateway's own HTTP client (rule 3), and pre-disconnect notices only when signed with the shared key (rule 2).
 */
let billing: DemoBilling;
beforeAll(async () => {
  billing = await startDemoBilling(pino({ level: 'silent' }));
});
afterAll(() => billing.close());

describe('demo billing', () => {
  it('answers the re-check "still unpaid" for a meter in arrears and "paid" once the demo has paid for it', async () => {
    const recheck = new HttpPaymentRechecker({ url: billing.recheckUrl, timeoutMs: 2000, retryAfterMs: 60_000 });
    const ask = () => recheck.check({ meterId: 'SIM-000007', orderId: 'ord_1', reason: 'arrears' });
    expect(await ask()).toEqual({ kind: 'in_arrears' });
    billing.paid('SIM-000007');
    expect(await ask()).toEqual({ kind: 'paid', detail: 'demo billing: the customer has paid' });
    billing.inArrears('SIM-000007');
    expect(await ask()).toEqual({ kind: 'in_arrears' });
  });

  it('takes a notification signed with the shared key and refuses one unsigned or signed with another key', async () => {
    const body = JSON.stringify({ id: 'ntf_1', kind: 'pre_disconnect_notice', meterId: 'SIM-000007', orderId: 'ord_1', payload: {} });
    const post = (signature?: string) =>
      fetch(billing.notificationsUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature ? { 'x-meterline-signature': signature } : {}) }, body });
    const sign = (key: string) => `sha256=${createHmac('sha256', key).update(body).digest('hex')}`;
    expect((await post(sign(billing.secret))).status).toBe(202);
    expect((await post()).status).toBe(401);
    expect((await post(sign('another key of sixteen chars or more'))).status).toBe(401);
  });
});
