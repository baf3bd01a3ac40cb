import type { RelayState } from './relay.js';
import { judgeRelay } from './relay-judgement.js';

/**
 * DOMAIN.md rule 17, the daily relay audit: the relay state read from every meter is compared with the state
 * our orders asked for, and every difference is an exception for a person to look at: a relay open that no
 * order of ours opened (a local trip, tampering, an unauthorised switch: DESIGN.md §1 "staff switching meters
 * without authority"), a relay closed that we opened (a bypass), a reconnect armed for too long (the customer
 * was never told to press the button), a meter that could not be read. Meters with an open order are not
 * judged: the control loop is working on them. The relay is judged by `judgeRelay`, the same judgement the
 * supply answer gives (rule 18), so the audit and the call centre never disagree. Pure: `now` is an argument.
 */

export const RELAY_AUDIT_KINDS = ['open_without_order', 'closed_while_should_be_open', 'armed_too_long', 'not_read'] as const;
export type RelayAuditKind = (typeof RELAY_AUDIT_KINDS)[number];

export interface AuditedMeter {
  meterId: string;
  /** The latest relay observation (the audit's own read, or the last one on record). */
  observed: { relay: RelayState; at: number } | null;
  /** What the latest accepted order asked for; null when no order was ever given. */
  desiredRelay: 'connected' | 'disconnected' | null;
  /** An order for this meter is not yet final: the control loop is on it. */
  hasOpenOrder: boolean;
  /** The latest disconnect order ended done: the gateway did open this relay. */
  lastDisconnectDone: boolean;
  /** When the latest reconnect ended `armed`; unknown or absent: the armed state is judged as too long. */
  armedSince?: number | null;
}

export interface RelayAuditException {
  meterId: string;
  kind: RelayAuditKind;
  observed: { relay: RelayState; at: number } | null;
  desired: 'connected' | 'disconnected' | null;
  message: string;
}

/** The audit's limits (configuration: `relayAudit.maxObservationAgeHours`, `relayAudit.maxArmedHours`). */
export interface RelayAuditLimits {
  /** A meter not read for longer than this is `not_read`. */
  maxObservationAgeMs: number;
  /** A relay armed by our reconnect for longer than this is `armed_too_long`. */
  maxArmedMs: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function relayAuditExceptions(meters: readonly AuditedMeter[], now: number, limits: RelayAuditLimits): RelayAuditException[] {
  const out: RelayAuditException[] = [];
  for (const m of meters) {
    if (m.hasOpenOrder) continue;
    const ex = (kind: RelayAuditKind, message: string): void => {
      out.push({ meterId: m.meterId, kind, observed: m.observed, desired: m.desiredRelay, message });
    };
    const o = m.observed;
    if (!o) {
      ex('not_read', `Meter ${m.meterId} has never been read: its relay state is unknown.`);
      continue;
    }
    if (now - o.at > limits.maxObservationAgeMs) {
      ex('not_read', `Meter ${m.meterId} has not been read since ${iso(o.at)}; it was then ${o.relay}.`);
      continue;
    }
    const j = judgeRelay({ relay: o.relay, desiredRelay: m.desiredRelay, hasOpenOrder: false, lastDisconnectDone: m.lastDisconnectDone, armedSince: m.armedSince ?? null });
    switch (j.verdict) {
      case 'open_without_order':
        if (o.relay === 'armed') ex('open_without_order', `Meter ${m.meterId} is armed (read ${iso(o.at)}) and ${j.why}. A person should look.`);
        else ex('open_without_order', `Meter ${m.meterId} is open (read ${iso(o.at)}) but ${j.why}: a local trip, tampering or a switch without authority. A person should look.`);
        break;
      case 'closed_against_order':
        ex('closed_while_should_be_open', `Meter ${m.meterId} is closed (read ${iso(o.at)}) while it should be open: ${j.why}.`);
        break;
      case 'armed_against_order':
        ex('closed_while_should_be_open', `Meter ${m.meterId} is armed (read ${iso(o.at)}) while it should be open: ${j.why}.`);
        break;
      case 'armed_by_order':
        if (m.armedSince === undefined || m.armedSince === null || now - m.armedSince > limits.maxArmedMs) {
          const since = m.armedSince === undefined || m.armedSince === null ? 'for an unknown time' : `since ${iso(m.armedSince)}`;
          ex('armed_too_long', `Meter ${m.meterId} has been armed ${since}: the customer has not pressed the button. Call them, or send a crew.`);
        }
        break;
      case 'open_by_order':
      case 'closed':
        break;
    }
  }
  return out;
}
