import type { RelayState } from './relay.js';
import { judgeRelay, type RelayFacts } from './relay-judgement.js';
import type { SwitchOrder } from './switch-order.js';

/**
 * "Why is this customer off supply?" (DOMAIN.md rule 18): our disconnect (which order, when, why, who), a relay
 * armed and waiting for the customer's button, a supply fault (relay closed, no voltage), on supply, or unknown
 * (the meter has not answered since a given time); and the states a person should look at: open with no order
 * of ours, closed (bypassed) or armed while our disconnect says it should be open; and a reconnect refused for
 * voltage on the load side (rule 14), with a crew sent. The relay is judged by
 * `judgeRelay`, the same judgement the daily relay audit (rule 17) makes, so the two never disagree. Pure: the
 * clock and the facts are arguments.
 */
export const SUPPLY_WORDS = [
  'disconnected_by_order',
  'disconnected_without_order',
  'on_supply_against_order',
  'armed_against_order',
  'armed_waiting_for_customer',
  'supply_fault',
  'on_supply',
  'unknown',
  'reconnect_refused_load_side',
] as const;
export type SupplyWord = (typeof SUPPLY_WORDS)[number];

export interface SupplyFacts {
  now: number;
  observed: { relay: RelayState; at: number; voltageV: number | null } | null;
  /**
   * Whether a live read was just tried, and how it went. `auth_failed`: the meter answered but refused the
   * gateway's credentials, so its state cannot be read until the keys are put right (it is not a dead meter).
   */
  liveRead: 'ok' | 'failed' | 'auth_failed' | 'not_tried';
  /** What our orders did and want: the same facts the relay audit judges. */
  orders: Omit<RelayFacts, 'relay'>;
  lastDisconnect: SwitchOrder | undefined;
  lastReconnect: SwitchOrder | undefined;
  /** Below this voltage a closed relay means no supply. */
  noVoltageBelowV: number;
  /** An observation older than this is not trusted on its own. */
  staleAfterMs: number;
  /**
   * The meter's open reconnect whose close was refused for voltage on the load side (rule 14), gone to the field:
   * why the customer is still off supply, whatever the relay shows until a person has been.
   */
  loadSideRefusal?: { orderId: string; at: number; detail: string | null } | null;
}

export interface SupplyAnswer {
  status: SupplyWord;
  sentence: string;
  orderId: string | null;
  since: number | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function supplyStatus(f: SupplyFacts): SupplyAnswer {
  const o = f.observed;
  const refused = f.loadSideRefusal;
  if (refused && o?.relay !== 'connected') {
    return {
      status: 'reconnect_refused_load_side',
      sentence: `Reconnect refused: voltage on the load side (a bypass, a generator backfeed or tampering), so the relay was not closed; crew sent (order ${refused.orderId}, ${iso(refused.at)})${refused.detail ? `: ${refused.detail}` : ''}.`,
      orderId: refused.orderId,
      since: refused.at,
    };
  }
  if (f.liveRead === 'auth_failed') {
    const last = o ? ` It was last seen ${o.relay} at ${iso(o.at)}.` : ' It has never been read.';
    const keys = "The meter answered but refused the gateway's credentials: its supply state cannot be read until the key file or the meter's keys are put right.";
    return { status: 'unknown', sentence: `${keys}${last}`, orderId: null, since: o?.at ?? null };
  }
  if (!o) return { status: 'unknown', sentence: 'The meter has never been read: its supply state is unknown.', orderId: null, since: null };
  if (f.liveRead === 'failed' || (f.liveRead === 'not_tried' && f.now - o.at > f.staleAfterMs)) {
    return { status: 'unknown', sentence: `The meter has not answered since ${iso(o.at)}; it was then ${o.relay}.`, orderId: null, since: o.at };
  }
  const j = judgeRelay({ relay: o.relay, ...f.orders });
  const d = f.lastDisconnect;
  const volts = o.voltageV !== null ? `, ${o.voltageV} V` : '';
  switch (j.verdict) {
    case 'open_by_order':
      return {
        status: 'disconnected_by_order',
        sentence: d
          ? `Disconnected by order ${d.id} at ${iso(d.completedAt ?? d.updatedAt)}, reason ${d.reason}, requested by ${d.requestedBy}${d.note ? ` (${d.note})` : ''}.`
          : `Disconnected by an order of this gateway (seen ${iso(o.at)}).`,
        orderId: d?.id ?? null,
        since: d?.completedAt ?? o.at,
      };
    case 'open_without_order':
      return {
        status: 'disconnected_without_order',
        sentence:
          o.relay === 'armed'
            ? `The relay is armed (seen ${iso(o.at)}) and ${j.why}: it is open without an order of this gateway. A person should look.`
            : `The relay is open (seen ${iso(o.at)}) but ${j.why}: a local trip, tampering or a switch without authority. A person should look.`,
        orderId: null,
        since: o.at,
      };
    case 'closed_against_order':
      return {
        status: 'on_supply_against_order',
        sentence: `The relay is closed (seen ${iso(o.at)}${volts}) while our orders say it should be open: ${j.why}. A person should look.`,
        orderId: d?.id ?? null,
        since: o.at,
      };
    case 'armed_against_order':
      return {
        status: 'armed_against_order',
        sentence: `The relay is armed (seen ${iso(o.at)}) while our orders say it should be open${d ? ` (disconnect order ${d.id})` : ''}: ${j.why}. A person should look.`,
        orderId: d?.id ?? null,
        since: o.at,
      };
    case 'armed_by_order': {
      const r = f.lastReconnect;
      return {
        status: 'armed_waiting_for_customer',
        sentence: `The relay is armed${r ? ` by order ${r.id}` : ''}: the customer presses the button on the meter to restore supply.`,
        orderId: r?.id ?? null,
        since: r?.completedAt ?? o.at,
      };
    }
    case 'closed':
      if (o.voltageV !== null && o.voltageV < f.noVoltageBelowV) {
        return {
          status: 'supply_fault',
          sentence: `The relay is closed but there is no supply voltage (${o.voltageV} V at ${iso(o.at)}): a network or internal fault, not a disconnection.`,
          orderId: null,
          since: o.at,
        };
      }
      return { status: 'on_supply', sentence: `On supply: relay closed${volts} at ${iso(o.at)}.`, orderId: null, since: o.at };
  }
}
