import type { Logger } from 'pino';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import type { GatewayConfig } from '../config/config-schema.js';
import type { DemoBilling } from './demo-billing.js';
import type { DemoKeys } from './demo-keys.js';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** A meter paid for is not paid for again this soon (its reconnect is on its way). */
const REPAY_AFTER_MS = 60_000;

/**
 * Demo only: the life of a utility at a gentle pace, so every console page has live data at any hour. Everything goes
 * through the gateway's own API with the demo keys, as the billing system and a supervisor would send it:
 * - every `demo.planEveryMs` the billing identity records a delivered arrears notice (served four days ago, rule 1)
 *   for a few connected meters and drafts a disconnect plan for them; the supervisor identity (another client,
 *   rule 7) approves it, and the gateway runs it through every rule (the demo billing answers "still unpaid");
 * - every `demo.reconnectEveryMs` a customer whose meter is off pays (first those a demo plan cut off, ten rounds
 *   after the cut, then the rest of the fleet in turn): the demo billing records it (a later re-check answers "paid") and the billing
 *   identity asks for the reconnect;
 * - one meter is a failing meter (its relay is stuck): its reconnect fails, every remote attempt is used and the
 *   gateway escalates it to a field work order.
 */
export interface DemoActivity {
  failingMeter: string | undefined;
  stop(): void;
}

export function startDemoActivity(o: { config: GatewayConfig; fleet: MqttFleet; apiUrl: string; keys: DemoKeys; billing: DemoBilling | undefined; logger: Logger }): DemoActivity {
  const { config, fleet, apiUrl, keys, billing } = o;
  const log = o.logger.child({ component: 'demo' });
  const ids = [...fleet.meterIds()];
  // The failing meter: the last meter that starts off supply (the README's examples use the first ones); its relay no longer moves.
  const failingMeter = [...ids].reverse().find((id) => fleet.meter(id).relay === 'disconnected');
  if (failingMeter) {
    fleet.meter(failingMeter).setFaults({ stuckRelay: true });
    log.info({ meterId: failingMeter }, 'demo: meter has a stuck relay (a failing meter): its reconnect will fail and go to the field');
  }
  let failingPaid = false;
  /** Meters in a demo arrears plan, not yet paid for, with when the payment round first saw them off supply. */
  const cutForArrears = new Map<string, number | null>();
  const paidAt = new Map<string, number>();
  let n = 0;
  // The demo's plans start halfway through the fleet, away from the meters the README's tour uses.
  let cursor = Math.floor(ids.length / 2);
  let payCursor = 0;

  /** One call to the gateway's own API as a demo client; the answer must have status `want`, and an `id` when one is read. */
  const call = async (what: string, key: string, path: string, body: unknown, want: number): Promise<{ id?: string }> => {
    n += 1;
    const res = await fetch(apiUrl + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': `demo-${Date.now()}-${n}` },
      body: JSON.stringify(body),
    });
    const answer = (await res.json().catch(() => ({}))) as { id?: unknown; code?: unknown; message?: unknown };
    if (res.status !== want) throw new Error(`${what}: HTTP ${res.status} ${String(answer.code ?? '')} ${String(answer.message ?? '')}`.trim());
    return typeof answer.id === 'string' ? { id: answer.id } : {};
  };

  const pay = async (): Promise<void> => {
    const now = Date.now();
    // The failing meter pays first, once: its reconnect is the one that escalates.
    let meterId = failingMeter && !failingPaid ? failingMeter : undefined;
    if (meterId) failingPaid = true;
    // Then a customer a demo plan cut off for arrears, some time after the cut (ten payment rounds: off supply long
    // enough to be seen), before the rest of the fleet.
    if (!meterId) {
      for (const [id, cutSeenAt] of cutForArrears) {
        if (fleet.meter(id).relay !== 'disconnected') continue;
        if (cutSeenAt === null) cutForArrears.set(id, now);
        else if (now - cutSeenAt >= 10 * config.demo.reconnectEveryMs) {
          meterId = id;
          cutForArrears.delete(id);
          break;
        }
      }
    }
    // Round the fleet, so that every customer who is off pays in turn (none waits behind the others for ever).
    for (let i = 0; i < ids.length && !meterId; i++) {
      const id = ids[(payCursor + i) % ids.length]!;
      if (id !== failingMeter && fleet.meter(id).relay === 'disconnected' && now - (paidAt.get(id) ?? 0) > REPAY_AFTER_MS) {
        meterId = id;
        payCursor = (payCursor + i + 1) % ids.length;
      }
    }
    if (!meterId) return;
    paidAt.set(meterId, now);
    billing?.paid(meterId);
    const order = await call(`demo payment for ${meterId}`, keys.billing, `/v1/meters/${meterId}/reconnect`, { reason: 'payment', paymentReceivedAt: new Date(now).toISOString(), note: 'demo payment' }, 202);
    log.info({ meterId, orderId: order.id }, 'demo: payment received, reconnect ordered');
  };

  const plan = async (): Promise<void> => {
    const now = Date.now();
    const meters: string[] = [];
    for (let i = 0; i < ids.length && meters.length < config.demo.planMeters; i++) {
      const id = ids[(cursor + i) % ids.length]!;
      if (id !== failingMeter && fleet.meter(id).relay === 'connected') meters.push(id);
    }
    if (meters.length === 0) return;
    cursor = (ids.indexOf(meters[meters.length - 1]!) + 1) % ids.length;
    for (const m of meters) {
      billing?.inArrears(m);
      paidAt.delete(m);
      cutForArrears.set(m, null);
      await call(`demo notice for ${m}`, keys.billing, `/v1/meters/${m}/notices`, { channel: 'letter', servedAt: new Date(now - 4 * DAY_MS).toISOString(), delivery: 'delivered', receiptRef: `DEMO-${now}-${m}` }, 201);
    }
    const draft = await call('demo plan', keys.billing, '/v1/plans', { reason: 'arrears', windowFrom: new Date(now).toISOString(), windowTo: new Date(now + 2 * HOUR_MS).toISOString(), meters, note: 'demo arrears run' }, 201);
    await call(`demo approval of ${draft.id}`, keys.supervisor, `/v1/plans/${draft.id}/approve`, {}, 200);
    log.info({ planId: draft.id, meters }, 'demo: arrears plan drafted by billing and approved by the supervisor');
  };

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, what: string, fn: () => Promise<void>) => {
    if (ms <= 0) return;
    let busy = false;
    timers.push(
      setInterval(() => {
        if (busy) return;
        busy = true;
        fn()
          .catch((err: unknown) => log.warn({ err: (err as Error).message }, `demo: ${what} failed`))
          .finally(() => (busy = false));
      }, ms),
    );
  };
  every(config.demo.reconnectEveryMs, 'payment', pay);
  every(config.demo.planEveryMs, 'plan', plan);
  return { failingMeter, stop: () => timers.forEach((t) => clearInterval(t)) };
}
