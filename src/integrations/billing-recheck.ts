import { z } from 'zod';
import type { PolicyConfig } from '../domain/policy/policy-config.js';

/**
 * DOMAIN.md rule 3: immediately before a disconnect for non-payment is sent, ask the billing system whether the
 * account is still in arrears. Contract: `POST <policy.paymentRecheck.url>` with
 * `{"meterId","orderId","reason"}`; the answer `200 {"inArrears": true|false, "detail"?: "..."}`. Anything else
 * (timeout, error status, unreadable body) is "unreachable": the order is held and asked again, never assumed.
 */
export type PaymentStatus = { kind: 'in_arrears' } | { kind: 'paid'; detail: string } | { kind: 'unreachable'; detail: string };

export interface PaymentRechecker {
  check(request: { meterId: string; orderId: string; reason: string }): Promise<PaymentStatus>;
}

const Answer = z.object({ inArrears: z.boolean(), detail: z.string().max(500).optional() });

export class HttpPaymentRechecker implements PaymentRechecker {
  constructor(private readonly config: PolicyConfig['paymentRecheck']) {}

  async check(request: { meterId: string; orderId: string; reason: string }): Promise<PaymentStatus> {
    const url = this.config.url;
    if (!url) return { kind: 'unreachable', detail: 'no re-check hook configured' };
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
    } catch (err) {
      return { kind: 'unreachable', detail: `billing re-check hook ${url} did not answer (${(err as Error).name === 'TimeoutError' ? `no answer in ${this.config.timeoutMs} ms` : (err as Error).message})` };
    }
    if (res.status !== 200) return { kind: 'unreachable', detail: `billing re-check hook answered HTTP ${res.status}` };
    const parsed = Answer.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) return { kind: 'unreachable', detail: 'billing re-check hook answered something that is not {"inArrears": boolean}' };
    return parsed.data.inArrears ? { kind: 'in_arrears' } : { kind: 'paid', detail: parsed.data.detail ?? 'billing reports the account is no longer in arrears' };
  }
}
