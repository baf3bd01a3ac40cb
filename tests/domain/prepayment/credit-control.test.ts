import { describe, expect, it } from 'vitest';
import { creditDecision, PrepaymentConfigSchema, type CreditDecision, type CreditFacts, type PrepaymentConfig } from '../../../src/domain/prepayment/credit-control.js';
import { creditState, type CreditEvent, type CreditState } from '../../../src/domain/prepayment/credit-ledger.js';

/** Credit control: the decision for one meter after each event, on a fake clock. */

const at = (iso: string): number => Date.parse(iso);
const every = (ranges: string[]) => ({ mon: ranges, tue: ranges, wed: ranges, thu: ranges, fri: ranges, sat: ranges, sun: ranges });
const config: PrepaymentConfig = PrepaymentConfigSchema.parse({
  credit: { warnAtPercentOfLastTopUp: [30, 10, 0], emergencyCredit: { amount: 500, offerWhenBelow: 200 } },
  friendlyHours: { timezone: 'Europe/London', weekly: every(['00:00-10:00', '16:00-24:00']), weekendsFriendly: true, holidays: ['2026-12-25', '2026-12-28'] },
});

const TUESDAY_NOON = at('2026-11-24T12:00:00Z');
const FRIDAY_5PM = at('2026-11-27T17:00:00Z');
const MONDAY_10AM = at('2026-11-30T10:00:00Z');

const state = (...events: CreditEvent[]): CreditState => creditState(events, config.credit);
const top = (amount: number, ref = `t${amount}`): CreditEvent => ({ type: 'top_up', amount, at: TUESDAY_NOON - 3_600_000, ref });
let wh = 0;
const use = (cost: number): CreditEvent => ({ type: 'consumption', costMicro: Math.round(cost * 1_000_000), at: TUESDAY_NOON - 60_000, fromWh: wh, toWh: (wh += 10) });
const grant: CreditEvent = { type: 'emergency_credit_granted', amount: 500, at: TUESDAY_NOON - 30_000 };

const inCredit = state(top(2000), use(500));
const low = state(top(2000), use(1500)); // 500 left: 30 % crossed
const offerable = state(top(2000), use(1850)); // 150: 30 and 10 crossed, below the offer level
const exhausted = state(top(2000), use(2050)); // 50 owed
const onEmergency = state(top(2000), use(2000), grant, use(100));
const emergencyUsedUp = state(top(2000), use(2000), grant, use(600));
const toppedUpAfterCutOff = state(top(2000), use(2050), top(1000, 'again')); // 50 repaid, 950 credit

const facts = (s: CreditState, o: Partial<CreditFacts> = {}): CreditFacts => ({
  state: s,
  previous: s,
  meterOff: false,
  cutOffPending: false,
  warningsSent: s.thresholdsCrossed,
  emergencyCreditOffered: false,
  ...o,
});

describe('creditDecision', () => {
  const cases: { name: string; facts: CreditFacts; now?: number; expected: Partial<CreditDecision> & { kind: CreditDecision['kind'] } }[] = [
    { name: 'in credit: nothing to do', facts: facts(inCredit), expected: { kind: 'none' } },
    { name: 'a threshold crossed and not sent: warn', facts: facts(low, { warningsSent: [] }), expected: { kind: 'warn', thresholds: [30] } },
    { name: 'low, warning already sent: nothing', facts: facts(low), expected: { kind: 'none' } },
    { name: 'two thresholds crossed at once: both, highest first', facts: facts(offerable, { warningsSent: [] }), expected: { kind: 'warn', thresholds: [30, 10] } },
    { name: 'below the offer level, warned: offer emergency credit', facts: facts(offerable), expected: { kind: 'offer_emergency_credit', amount: 500 } },
    { name: 'offered already: nothing', facts: facts(offerable, { emergencyCreditOffered: true }), expected: { kind: 'none' } },
    { name: 'out of credit, emergency credit not offered yet: offer it first', facts: facts(exhausted), expected: { kind: 'offer_emergency_credit' } },
    { name: 'out of credit on a Tuesday noon: cut off now', facts: facts(exhausted, { emergencyCreditOffered: true }), expected: { kind: 'cut_off', notBefore: TUESDAY_NOON } },
    {
      name: 'out of credit at 17:00 on a Friday: cut off not before Monday 10:00',
      facts: facts(exhausted, { emergencyCreditOffered: true }),
      now: FRIDAY_5PM,
      expected: { kind: 'cut_off', notBefore: MONDAY_10AM },
    },
    {
      name: 'out of credit Christmas Eve 17:00, holidays Friday 25th and Monday 28th: not before Tuesday 29th 10:00',
      facts: facts(exhausted, { emergencyCreditOffered: true }),
      now: at('2026-12-24T17:00:00Z'),
      expected: { kind: 'cut_off', notBefore: at('2026-12-29T10:00:00Z') },
    },
    { name: 'on emergency credit: nothing', facts: facts(onEmergency, { emergencyCreditOffered: true }), expected: { kind: 'none' } },
    {
      name: 'emergency credit used up: cut off (it cannot be offered again until repaid)',
      facts: facts(emergencyUsedUp),
      expected: { kind: 'cut_off', notBefore: TUESDAY_NOON },
    },
    { name: 'cut-off already ordered: not again', facts: facts(exhausted, { emergencyCreditOffered: true, cutOffPending: true }), expected: { kind: 'none' } },
    { name: 'already off for credit and still out of it: nothing', facts: facts(exhausted, { emergencyCreditOffered: true, meterOff: true }), expected: { kind: 'none' } },
    {
      name: 'off for credit, emergency credit not offered: offer it (taking it reconnects)',
      facts: facts(exhausted, { meterOff: true }),
      expected: { kind: 'offer_emergency_credit' },
    },
    { name: 'off for credit, then a top-up: reconnect', facts: facts(toppedUpAfterCutOff, { previous: exhausted, meterOff: true, warningsSent: [] }), expected: { kind: 'reconnect' } },
    {
      name: 'a reconnect goes ahead of the new cycle\'s warnings and of friendly hours',
      facts: facts(state(top(2000), use(2050), top(100, 'small')), { previous: exhausted, meterOff: true, warningsSent: [] }),
      now: FRIDAY_5PM,
      expected: { kind: 'reconnect' },
    },
    { name: 'off for credit, then emergency credit taken: reconnect', facts: facts(onEmergency, { meterOff: true }), expected: { kind: 'reconnect' } },
    {
      name: 'a top-up while a cut-off order is still open: reconnect (it supersedes the cut-off)',
      facts: facts(toppedUpAfterCutOff, { previous: exhausted, cutOffPending: true, warningsSent: [] }),
      expected: { kind: 'reconnect' },
    },
    {
      name: 'off, and a top-up too small to repay the debt: no reconnect, warn of the new cycle',
      facts: facts(state(top(2000), use(2000), grant, use(700), top(100, 'small')), { meterOff: true, warningsSent: [] }),
      expected: { kind: 'warn', thresholds: [30, 10, 0] },
    },
  ];
  it.each(cases)('$name', ({ facts: f, now, expected }) => {
    expect(creditDecision(f, now ?? TUESDAY_NOON, config)).toMatchObject(expected);
  });

  it('friendly hours that never end within 14 days: cut-off decision to be asked again at the end of the search', () => {
    const allFriendly = { ...config, friendlyHours: { ...config.friendlyHours, weekly: every(['00:00-24:00']) } };
    const d = creditDecision(facts(exhausted, { emergencyCreditOffered: true }), TUESDAY_NOON, allFriendly);
    expect(d).toMatchObject({ kind: 'cut_off', notBefore: TUESDAY_NOON + 14 * 24 * 3_600_000 });
  });

  it('a Friday evening, acted on and asked again until nothing is left: warn, offer, cut off on Monday; a Saturday top-up reconnects', () => {
    const events: CreditEvent[] = [{ type: 'top_up', amount: 1000, at: at('2026-11-23T09:00:00Z'), ref: 'mon' }];
    const actions: string[] = [];
    let sent: number[] = [];
    let offered = false;
    let pending = false;
    let previous: CreditState | null = null;
    const settle = (now: number): void => {
      const s = creditState(events, config.credit);
      for (let i = 0; i < 10; i++) {
        const d = creditDecision({ state: s, previous, meterOff: false, cutOffPending: pending, warningsSent: sent, emergencyCreditOffered: offered }, now, config);
        if (d.kind === 'none') break;
        actions.push(d.kind === 'warn' ? `warn ${d.thresholds.join(',')}` : d.kind === 'cut_off' ? `cut_off ${new Date(d.notBefore).toISOString()}` : d.kind);
        if (d.kind === 'warn') sent = [...sent, ...d.thresholds];
        if (d.kind === 'offer_emergency_credit') offered = true;
        if (d.kind === 'cut_off') pending = true;
        if (d.kind === 'reconnect') pending = false;
      }
      previous = s;
    };
    events.push({ type: 'consumption', costMicro: 800_000_000, at: at('2026-11-27T12:00:00Z'), fromWh: 0, toWh: 3000 });
    settle(at('2026-11-27T12:00:00Z'));
    events.push({ type: 'consumption', costMicro: 250_000_000, at: FRIDAY_5PM, fromWh: 3000, toWh: 4000 });
    settle(FRIDAY_5PM);
    events.push({ type: 'top_up', amount: 2000, at: at('2026-11-28T11:00:00Z'), ref: 'sat' });
    sent = [];
    offered = false;
    settle(at('2026-11-28T11:00:00Z'));
    expect(actions).toEqual(['warn 30', 'warn 10,0', 'offer_emergency_credit', 'cut_off 2026-11-30T10:00:00.000Z', 'reconnect']);
  });
});
