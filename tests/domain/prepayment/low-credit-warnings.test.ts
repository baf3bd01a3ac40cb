import { describe, expect, it } from 'vitest';
import { creditState, type CreditEvent, type CreditLedgerConfig, type CreditState } from '../../../src/domain/prepayment/credit-ledger.js';
import { dueWarnings } from '../../../src/domain/prepayment/low-credit-warnings.js';

/** Low-credit warnings at 30 %, 10 % and 0 % of the last top-up: each exactly once per top-up cycle. */

const T0 = Date.parse('2026-11-24T08:00:00Z');
const config: CreditLedgerConfig = { warnAtPercentOfLastTopUp: [30, 10, 0], emergencyCredit: { amount: 500, offerWhenBelow: 200 } };

type Step = { type: 'top_up'; amount: number } | { type: 'use'; cost: number } | { type: 'adjust'; amount: number };

/**
 * Drives a meter through its events the way the control loop would: after each event, compute what is due
 * from the state before and after, "send" it, and remember what was sent until the next top-up.
 */
function run(steps: Step[]): number[][] {
  const log: CreditEvent[] = [];
  let previous: CreditState | null = null;
  let sent: number[] = [];
  let wh = 0;
  return steps.map((s, i) => {
    const at = T0 + i * 60_000;
    if (s.type === 'top_up') log.push({ type: 'top_up', amount: s.amount, at, ref: `t${i}` });
    else if (s.type === 'use') log.push({ type: 'consumption', costMicro: Math.round(s.cost * 1_000_000), at, fromWh: wh, toWh: (wh += 10) });
    else log.push({ type: 'adjustment', amount: s.amount, at, reason: 'goodwill' });
    const state = creditState(log, config);
    const due = dueWarnings(previous, state, sent);
    if (s.type === 'top_up') sent = [];
    sent = [...sent, ...due];
    previous = state;
    return due;
  });
}

const top = (amount: number): Step => ({ type: 'top_up', amount });
const use = (cost: number): Step => ({ type: 'use', cost });

describe('dueWarnings over a top-up cycle', () => {
  const cases: { name: string; steps: Step[]; due: number[][] }[] = [
    {
      name: '30, 10 and 0 each fire once, as the balance falls past them',
      steps: [top(1000), use(600), use(100), use(100), use(50), use(100), use(50)],
      // balance:   1000      400       300 (30%) 200      150      50 (≤100) 0
      due: [[], [], [30], [], [], [10], [0]],
    },
    {
      name: 'further use after 0% sends nothing more',
      steps: [top(1000), use(1000), use(100), use(100)],
      due: [[], [30, 10, 0], [], []],
    },
    {
      name: 'one big step crossing all three sends all three, highest first',
      steps: [top(1000), use(1200)],
      due: [[], [30, 10, 0]],
    },
    {
      name: 'a credit going back up and down again does not repeat a warning in the same cycle',
      steps: [top(1000), use(750), { type: 'adjust', amount: 500 }, use(500)],
      due: [[], [30], [], []],
    },
    {
      name: 'a top-up starts a new cycle: the same thresholds fire again, once',
      steps: [top(1000), use(950), top(1000), use(1050), use(10), top(2000), use(1400)],
      // cycle 1: 50 left → 30, 10; cycle 2: 1050 → 0 → 30, 10, 0; cycle 3: 2000 → 600 (30%) → 30
      due: [[], [30, 10], [], [30, 10, 0], [], [], [30]],
    },
    {
      name: 'a top-up that only repays debt is immediately below every threshold: all three, once',
      steps: [top(1000), use(1400), top(300), use(1)],
      due: [[], [30, 10, 0], [30, 10, 0], []],
    },
    {
      name: 'exactly at a threshold fires; a millionth above does not',
      steps: [top(1000), use(699.999999), use(0.000001)],
      due: [[], [], [30]],
    },
  ];
  it.each(cases)('$name', ({ steps, due }) => {
    expect(run(steps)).toEqual(due);
  });
});

describe('dueWarnings on its own', () => {
  const state = (events: CreditEvent[]) => creditState(events, config);
  const cycle1 = state([
    { type: 'top_up', amount: 1000, at: T0, ref: 'a' },
    { type: 'consumption', costMicro: 1_070_000_000, at: T0 + 1, fromWh: 0, toWh: 10 },
  ]);
  const cycle2 = state([
    { type: 'top_up', amount: 1000, at: T0, ref: 'a' },
    { type: 'consumption', costMicro: 1_070_000_000, at: T0 + 1, fromWh: 0, toWh: 10 },
    { type: 'top_up', amount: 100, at: T0 + 2, ref: 'b' },
  ]);

  it.each([
    { name: 'nothing sent yet: all crossed, highest first', previous: null, next: cycle1, sent: [], due: [30, 10, 0] },
    { name: 'what was sent is not sent again', previous: cycle1, next: cycle1, sent: [30], due: [10, 0] },
    { name: 'everything sent: nothing due', previous: cycle1, next: cycle1, sent: [0, 10, 30], due: [] },
    { name: 'a warning lost (not recorded as sent) is still due on the next event', previous: cycle1, next: cycle1, sent: [30], due: [10, 0] },
    // 70 owed, a top-up of 100 repays it and leaves 30: 30 % of the top-up.
    { name: 'after a top-up, what was sent in the old cycle does not count', previous: cycle1, next: cycle2, sent: [30, 10, 0], due: [30] },
  ])('$name', ({ previous, next, sent, due }) => {
    expect(dueWarnings(previous, next, sent)).toEqual(due);
  });
});
