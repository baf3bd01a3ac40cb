import type { RelayState } from './relay.js';
import type { SwitchOrder } from './switch-order.js';

/**
 * "Why is this customer off supply?" (DOMAIN.md rule 18): our disconnect (which order, when, why, who), a relay
 * armed and waiting for the customer's button, a supply fault (relay closed, no voltage), on supply, or unknown
 * (the meter has not answered since a given time). Pure: the clock and the facts are arguments.
 */
export const SUPPLY_WORDS = ['disconnected_by_order', 'disconnected_without_order', 'armed_waiting_for_customer', 'supply_fault', 'on_supply', 'unknown'] as const;
export type SupplyWord = (typeof SUPPLY_WORDS)[number];

export interface SupplyFacts {
  now: number;
  observed: { relay: RelayState; at: number; voltageV: number | null } | null;
  /** Whether a live read was just tried, and how it went. */
  liveRead: 'ok' | 'failed' | 'not_tried';
  lastDisconnect: SwitchOrder | undefined;
  lastReconnect: SwitchOrder | undefined;
  /** Below this voltage a closed relay means no supply. */
  noVoltageBelowV: number;
  /** An observation older than this is not trusted on its own. */
  staleAfterMs: number;
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
  if (!o) return { status: 'unknown', sentence: 'The meter has never been read: its supply state is unknown.', orderId: null, since: null };
  if (f.liveRead === 'failed' || (f.liveRead === 'not_tried' && f.now - o.at > f.staleAfterMs)) {
    return { status: 'unknown', sentence: `The meter has not answered since ${iso(o.at)}; it was then ${o.relay}.`, orderId: null, since: o.at };
  }
  if (o.relay === 'disconnected') {
    const d = f.lastDisconnect;
    const reconnectedLater = f.lastReconnect && d && (f.lastReconnect.completedAt ?? 0) > (d.completedAt ?? 0);
    if (d && !reconnectedLater) {
      return {
        status: 'disconnected_by_order',
        sentence: `Disconnected by order ${d.id} at ${iso(d.completedAt ?? d.updatedAt)}, reason ${d.reason}, requested by ${d.requestedBy}${d.note ? ` (${d.note})` : ''}.`,
        orderId: d.id,
        since: d.completedAt,
      };
    }
    return {
      status: 'disconnected_without_order',
      sentence: `The relay is open and no order of this gateway opened it (a local trip or tampering): a person should look. Seen ${iso(o.at)}.`,
      orderId: null,
      since: o.at,
    };
  }
  if (o.relay === 'armed') {
    const r = f.lastReconnect;
    return {
      status: 'armed_waiting_for_customer',
      sentence: `The relay is armed${r ? ` by order ${r.id}` : ''}: the customer presses the button on the meter to restore supply.`,
      orderId: r?.id ?? null,
      since: r?.completedAt ?? o.at,
    };
  }
  if (o.voltageV !== null && o.voltageV < f.noVoltageBelowV) {
    return {
      status: 'supply_fault',
      sentence: `The relay is closed but there is no supply voltage (${o.voltageV} V at ${iso(o.at)}): a network or internal fault, not a disconnection.`,
      orderId: null,
      since: o.at,
    };
  }
  return { status: 'on_supply', sentence: `On supply: relay closed${o.voltageV !== null ? `, ${o.voltageV} V` : ''} at ${iso(o.at)}.`, orderId: null, since: o.at };
}
