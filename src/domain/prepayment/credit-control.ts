import { z } from 'zod';
import { CreditLedgerConfigSchema, emergencyCreditAvailable, type CreditState } from './credit-ledger.js';
import { describeFriendlyEnd, FRIENDLY_SEARCH_MS, friendlyHoursEnd, FriendlyHoursConfigSchema } from './friendly-hours.js';
import { dueWarnings } from './low-credit-warnings.js';

/**
 * Credit control (DOMAIN.md, prepayment): what to do for one meter after each of its credit events. Pure: the
 * clock and what the caller knows about the relay and about what it already sent are arguments.
 *
 * One decision at a time, the most urgent first: reconnect > warn > offer emergency credit > cut off. It is
 * level-triggered, like the control loop: act on the decision, record that you did (warning sent, offer made,
 * cut-off order created), and ask again until the answer is `none`.
 *
 * - **reconnect**: the meter is off for credit (or a credit cut-off order is still open) and it has credit
 *   again: a top-up, or emergency credit taken. A top-up reconnects at once, like a payment (rule 11), and a
 *   reconnect order supersedes an open cut-off order.
 * - **cut_off**: out of credit and no emergency credit left; `notBefore` is the end of friendly hours
 *   (licence condition 27A), or `now`. If friendly hours do not end within 14 days, `notBefore` is the end of
 *   that search and the caller asks again then. A cut-off is a disconnect with reason `credit_exhausted`, so the
 *   disconnect gate still applies protected customers, protected mode and the prepayment agreement (rules 6,
 *   8, 9); and the caller must re-ask before sending it, since a top-up may have come in meanwhile.
 */

export const PrepaymentConfigSchema = z
  .object({
    credit: CreditLedgerConfigSchema,
    friendlyHours: FriendlyHoursConfigSchema,
  })
  .strict();
export type PrepaymentConfig = z.infer<typeof PrepaymentConfigSchema>;

export interface CreditFacts {
  /** The meter's credit after the event (credit-ledger.ts). */
  state: CreditState;
  /** Its credit before the event; null if none. Tells a new top-up cycle from the same one. */
  previous: CreditState | null;
  /** The relay is open because of a credit cut-off. False when it is open for another reason (arrears,
   * safety): credit control does not reconnect those. */
  meterOff: boolean;
  /** A credit cut-off order is open and not yet done. */
  cutOffPending: boolean;
  /** Warning thresholds already sent since the last top-up. */
  warningsSent: readonly number[];
  /** Emergency credit already offered since the last top-up. */
  emergencyCreditOffered: boolean;
}

export type CreditDecision =
  | { kind: 'none' }
  | { kind: 'warn'; thresholds: number[]; why: string }
  | { kind: 'offer_emergency_credit'; amount: number; why: string }
  | { kind: 'cut_off'; notBefore: number; why: string }
  | { kind: 'reconnect'; why: string };

export function creditDecision(facts: CreditFacts, now: number, config: PrepaymentConfig): CreditDecision {
  const { state } = facts;
  if ((facts.meterOff || facts.cutOffPending) && state.status !== 'exhausted') {
    const how = state.status === 'on_emergency_credit' ? 'emergency credit was taken' : `credit is back (balance ${state.balance})`;
    return { kind: 'reconnect', why: `${how}; ${facts.meterOff ? 'the meter is off for credit' : 'a credit cut-off is still open'}` };
  }

  const thresholds = dueWarnings(facts.previous, state, facts.warningsSent);
  if (thresholds.length > 0) {
    return { kind: 'warn', thresholds, why: `balance ${state.balance} is at or below ${thresholds.join('%, ')}% of the last top-up` };
  }

  if (!facts.emergencyCreditOffered && emergencyCreditAvailable(state.emergencyCreditInUse, state.balance, config.credit)) {
    return { kind: 'offer_emergency_credit', amount: config.credit.emergencyCredit.amount, why: `balance ${state.balance} is below ${config.credit.emergencyCredit.offerWhenBelow}` };
  }

  if (state.status === 'exhausted' && !facts.meterOff && !facts.cutOffPending) {
    const end = friendlyHoursEnd(now, config.friendlyHours);
    const debt = state.emergencyDebt > 0 ? `, ${state.emergencyDebt} owed` : '';
    if (end === null) {
      const recheck = now + FRIENDLY_SEARCH_MS;
      return { kind: 'cut_off', notBefore: recheck, why: `out of credit${debt}; friendly hours do not end within 14 days: ask again at ${new Date(recheck).toISOString()}` };
    }
    const friendly = end > now ? `; not before friendly hours end at ${describeFriendlyEnd(end, config.friendlyHours)}` : '';
    return { kind: 'cut_off', notBefore: end, why: `out of credit and no emergency credit left${debt}${friendly}` };
  }
  return { kind: 'none' };
}
