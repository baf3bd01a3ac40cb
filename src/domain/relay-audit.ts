import type { RelayState } from './relay.js';

/**
 * DOMAIN.md rule 17, the daily relay audit: the relay state read from every meter is compared with the state
 * our orders asked for, and every difference is an exception for a person to look at: a relay open that no
 * order of ours opened (a local trip, tampering, an unauthorised switch: DESIGN.md §1 "staff switching meters
 * without authority"), a relay closed that we opened (a bypass), a reconnect armed for too long (the customer
 * was never told to press the button), a meter that could not be read. Meters with an open order are not
 * judged: the control loop is working on them. Pure: `now` is an argument.
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

export interface RelayAuditOptions {
  /** A relay armed for longer than this is an exception (default 24 h). */
  maxArmedMs?: number;
}

const DAY_MS = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();

export function relayAuditExceptions(meters: readonly AuditedMeter[], now: number, maxObservationAgeMs: number, options: RelayAuditOptions = {}): RelayAuditException[] {
  const maxArmedMs = options.maxArmedMs ?? DAY_MS;
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
    if (now - o.at > maxObservationAgeMs) {
      ex('not_read', `Meter ${m.meterId} has not been read since ${iso(o.at)}; it was then ${o.relay}.`);
      continue;
    }
    const openedByUs = m.desiredRelay === 'disconnected' && m.lastDisconnectDone;
    if (o.relay === 'disconnected') {
      if (!openedByUs) {
        const why =
          m.desiredRelay === 'connected'
            ? 'our latest order reconnected it'
            : m.desiredRelay === 'disconnected'
              ? 'our latest disconnect order never completed'
              : 'no order of ours ever switched it';
        ex('open_without_order', `Meter ${m.meterId} is open (read ${iso(o.at)}) but ${why}: a local trip, tampering or a switch without authority. A person should look.`);
      }
    } else if (o.relay === 'connected') {
      if (m.desiredRelay === 'disconnected') {
        const why = m.lastDisconnectDone ? 'we disconnected it and no order of ours closed it since (a bypass or a local reconnection)' : 'our latest disconnect order never completed';
        ex('closed_while_should_be_open', `Meter ${m.meterId} is closed (read ${iso(o.at)}) while it should be open: ${why}.`);
      }
    } else {
      // armed: open, but the customer's button closes it.
      if (m.desiredRelay === 'disconnected') {
        ex('closed_while_should_be_open', `Meter ${m.meterId} is armed (read ${iso(o.at)}) while it should be open: the customer's button would close it.`);
      } else if (m.desiredRelay === null) {
        ex('open_without_order', `Meter ${m.meterId} is armed (read ${iso(o.at)}) and no order of ours armed it. A person should look.`);
      } else if (m.armedSince === undefined || m.armedSince === null || now - m.armedSince > maxArmedMs) {
        const since = m.armedSince === undefined || m.armedSince === null ? 'for an unknown time' : `since ${iso(m.armedSince)}`;
        ex('armed_too_long', `Meter ${m.meterId} has been armed ${since}: the customer has not pressed the button. Call them, or send a crew.`);
      }
    }
  }
  return out;
}
