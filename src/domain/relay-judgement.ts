import type { RelayState } from './relay.js';

/**
 * One judgement of a relay against our orders, shared by the daily relay audit (DOMAIN.md rule 17) and the call
 * centre's "fault or disconnect?" answer (rule 18), so that the two can never disagree: a relay the audit calls
 * an exception is one the supply answer says a person should look at, and the other way round. Pure.
 */
export const RELAY_VERDICTS = ['open_by_order', 'open_without_order', 'closed_against_order', 'armed_against_order', 'armed_by_order', 'closed'] as const;
export type RelayVerdict = (typeof RELAY_VERDICTS)[number];

export interface RelayFacts {
  relay: RelayState;
  /** What the latest accepted order asked for; null when no order was ever given (or the latest was withdrawn). */
  desiredRelay: 'connected' | 'disconnected' | null;
  /** An order for this meter is not yet final: the control loop is on it. */
  hasOpenOrder: boolean;
  /** The latest order that completed (done, armed, done on site) is a disconnect: the gateway opened this relay. */
  lastDisconnectDone: boolean;
  /** When the latest completed order was a reconnect that ended `armed`. */
  armedSince?: number | null;
}

export interface RelayJudgement {
  verdict: RelayVerdict;
  /** What our orders say the relay should be, the yardstick of the verdict. */
  expected: 'connected' | 'disconnected' | null;
  /** Why, as a clause for a sentence ("no order of ours ever switched it"); empty when nothing is wrong. */
  why: string;
  /** Whether a person should look (the audit's exceptions, the supply answer's "a person should look"). */
  needsPerson: boolean;
}

export function judgeRelay(f: RelayFacts): RelayJudgement {
  // While an order is open its target is not yet owed, and a withdrawn order leaves no target: the yardstick is
  // then what the finished orders left.
  const settled = f.lastDisconnectDone ? 'disconnected' : f.hasOpenOrder || (f.armedSince ?? null) !== null ? 'connected' : null;
  const expected = f.hasOpenOrder || f.desiredRelay === null ? settled : f.desiredRelay;
  const openedByUs = expected === 'disconnected' && f.lastDisconnectDone;
  const judgement = (verdict: RelayVerdict, why = ''): RelayJudgement => ({
    verdict,
    expected,
    why,
    needsPerson: verdict === 'open_without_order' || verdict === 'closed_against_order' || verdict === 'armed_against_order',
  });
  if (f.relay === 'disconnected') {
    if (openedByUs) return judgement('open_by_order');
    const why = f.hasOpenOrder
      ? 'the orders of ours that finished left it closed'
      : expected === 'connected'
        ? f.lastDisconnectDone
          ? 'our disconnect opened it and our later reconnect order never completed'
          : 'our latest order reconnected it'
        : expected === 'disconnected'
          ? 'our latest disconnect order never completed'
          : 'no order of ours ever switched it';
    return judgement('open_without_order', why);
  }
  if (f.relay === 'connected') {
    if (expected !== 'disconnected') return judgement('closed');
    const why = f.lastDisconnectDone ? 'we disconnected it and no order of ours closed it since (a bypass or a local reconnection)' : 'our latest disconnect order never completed';
    return judgement('closed_against_order', why);
  }
  // armed: open, but the customer's button closes it.
  if (expected === 'disconnected') return judgement('armed_against_order', "the customer's button would close it");
  if (expected === null) return judgement('open_without_order', 'no order of ours armed it');
  return judgement('armed_by_order');
}
