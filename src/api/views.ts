import type { z } from 'zod';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { Attempt, OrderEvent, SwitchOrder } from '../domain/switch-order.js';
import { isTerminal } from '../domain/switch-order.js';
import { NO_REMOTE_ATTEMPT } from '../domain/escalation.js';
import type { RuleFinding } from '../domain/policy/order-rules.js';
import type { NotificationRecord, MeterView as StoredMeter } from '../store/store.js';
import type { MeterView, OrderView } from './schemas.js';

/**
 * ISO text of a time in ms, from a few kept (round robin): a bulk request's 10,000 order views share their few times
 * (made at one `now`: created, updated, not before, next attempt; the deadline after it), and a Date plus toISOString
 * each was 2.5 % of the main thread's samples in the bench (issue 19).
 */
const ISO_KEPT = 4;
const isoMs: number[] = new Array<number>(ISO_KEPT).fill(Number.NaN);
const isoText: string[] = new Array<string>(ISO_KEPT).fill('');
let isoNext = 0;
const iso = (ms: number): string => {
  for (let i = 0; i < ISO_KEPT; i++) if (isoMs[i] === ms) return isoText[i]!;
  const text = new Date(ms).toISOString();
  isoMs[isoNext] = ms;
  isoText[isoNext] = text;
  isoNext = (isoNext + 1) % ISO_KEPT;
  return text;
};
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

export function orderView(o: SwitchOrder, attempts?: Attempt[], events?: OrderEvent[], notifications?: NotificationRecord[], rules?: RuleFinding[]): z.infer<typeof OrderView> {
  return {
    id: o.id,
    meterId: o.meterId,
    action: o.action,
    limitW: o.limitW,
    reason: o.reason,
    note: o.note,
    state: o.state,
    stateReason: o.stateReason,
    requestedBy: o.requestedBy,
    urgent: o.urgent,
    priority: o.priority,
    createdAt: iso(o.createdAt),
    updatedAt: iso(o.updatedAt),
    notBefore: iso(o.notBefore),
    deadline: isoOrNull(o.deadline),
    paymentReceivedAt: isoOrNull(o.paymentAt),
    attemptsUsed: o.attempts,
    planId: o.planId,
    origin: o.origin,
    reference: o.reference,
    approvedBy: o.approvedBy,
    approvedAt: isoOrNull(o.approvedAt),
    // An order that waits for the field with no remote attempt (the meter refuses our keys) has no next attempt.
    nextAttemptAt: isTerminal(o.state) || o.nextAttemptAt >= NO_REMOTE_ATTEMPT ? null : iso(o.nextAttemptAt),
    supersededBy: o.supersededBy,
    completedAt: isoOrNull(o.completedAt),
    result: { relay: o.resultRelay, verified: o.state === 'done' || o.state === 'armed' },
    ...(attempts
      ? {
          attempts: attempts.map((a) => ({
            attempt: a.attempt,
            startedAt: iso(a.startedAt),
            endedAt: isoOrNull(a.endedAt),
            outcome: a.outcome,
            latencyMs: a.latencyMs,
            observedRelay: a.observedRelay,
            evidence: { command: a.commandEvidence, readBack: a.readEvidence },
            detail: a.detail,
          })),
        }
      : {}),
    ...(events ? { events: events.map((e) => ({ at: iso(e.at), from: e.from, to: e.to, reason: e.reason })) } : {}),
    ...(notifications
      ? { notifications: notifications.map((n) => ({ id: n.id, kind: n.kind, createdAt: iso(n.createdAt), deliveredAt: isoOrNull(n.deliveredAt), attempts: n.attempts, lastError: n.lastError })) }
      : {}),
    ...(rules ? { rules } : {}),
  };
}

/** The limit in force: the last verified limit order, unless it was a removal. */
function loadLimitView(m: StoredMeter, lastLimit: SwitchOrder | undefined): z.infer<typeof MeterView>['loadLimit'] {
  if (!lastLimit || lastLimit.limitW === null) return null;
  return { limitW: lastLimit.limitW, since: isoOrNull(m.flags.loadLimitedSince), orderId: lastLimit.id, reason: lastLimit.reason };
}

export function meterView(m: StoredMeter, profile: FirmwareProfile | undefined, openOrders: SwitchOrder[], lastLimit?: SwitchOrder): z.infer<typeof MeterView> {
  return {
    meterId: m.meterId,
    profile: profile
      ? {
          id: profile.id,
          manufacturer: profile.manufacturer,
          model: profile.model,
          firmware: profile.firmware,
          protocol: profile.protocol,
          remoteReconnect: profile.relay.remoteReconnect,
        }
      : null,
    profileId: m.profileId,
    link: m.link,
    region: m.region,
    address: m.address ?? null,
    accountId: m.accountId ?? null,
    observed: m.observed ? { ...m.observed, at: iso(m.observed.at) } : null,
    desiredRelay: m.desiredRelay,
    desiredOrderId: m.desiredOrderId,
    flags: { ...m.flags, loadLimitedSince: m.flags.loadLimitedSince === null ? null : new Date(m.flags.loadLimitedSince).toISOString() },
    loadLimit: loadLimitView(m, lastLimit),
    openOrders: openOrders.map((o) => orderView(o)),
  };
}
