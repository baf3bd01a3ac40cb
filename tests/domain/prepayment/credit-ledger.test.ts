import { describe, expect, it } from 'vitest';
import { CreditEventSchema, CreditLedgerConfigSchema, creditState, type CreditEvent, type CreditLedgerConfig, type CreditState } from '../../../src/domain/prepayment/credit-ledger.js';

/** The credit of one prepayment meter as a fold over its events. Money in whole minor units (pence); costs in millionths. */

const T0 = Date.parse('2026-11-24T08:00:00Z');
const MIN = 60_000;
const config: CreditLedgerConfig = CreditLedgerConfigSchema.parse({ warnAtPercentOfLastTopUp: [30, 10, 0], emergencyCredit: { amount: 500, offerWhenBelow: 200 } });

/** A small event language: each helper advances the clock by a minute and the register by the cost in Wh. */
function events(...steps: ((t: number, wh: number) => CreditEvent)[]): CreditEvent[] {
  let wh = 0;
  return steps.map((s, i) => {
    const e = s(T0 + i * MIN, wh);
    if (e.type === 'consumption') wh = e.toWh;
    return e;
  });
}
const topUp = (amount: number, ref = `r${amount}`) => (at: number): CreditEvent => ({ type: 'top_up', amount, at, ref });
/** `cost` in minor units, possibly fractional: booked as whole millionths. */
const use = (cost: number) => (at: number, wh: number): CreditEvent => ({ type: 'consumption', costMicro: Math.round(cost * 1_000_000), at, fromWh: wh, toWh: wh + Math.max(1, Math.round(cost)) });
const grant = (amount = 500) => (at: number): CreditEvent => ({ type: 'emergency_credit_granted', amount, at });
const repaid = (amount: number) => (at: number): CreditEvent => ({ type: 'emergency_credit_repaid', amount, at });
const adjust = (amount: number) => (at: number): CreditEvent => ({ type: 'adjustment', amount, at, reason: 'goodwill' });

type Expect = Partial<Omit<CreditState, 'lastTopUp'>> & { lastTopUp?: Partial<NonNullable<CreditState['lastTopUp']>> | null };

const cases: { name: string; events: CreditEvent[]; expected: Expect }[] = [
  { name: 'no events: nothing to spend', events: [], expected: { balance: 0, lastTopUp: null, thresholdsCrossed: [], status: 'exhausted', emergencyDebt: 0 } },
  { name: 'a top-up is credit', events: events(topUp(2000)), expected: { balance: 2000, status: 'in_credit', thresholdsCrossed: [], lastTopUp: { amount: 2000, repaid: 0 } } },
  {
    name: 'consumption takes whole pence from the balance; the half penny waits for the next reading',
    events: events(topUp(2000), use(300), use(250.5)),
    expected: { balance: 1450, unchargedMicro: 500_000, status: 'in_credit' },
  },
  {
    name: 'just above 30% of the top-up: not crossed (a millionth short of the 1400th penny is not charged yet)',
    events: events(topUp(2000), use(1399.999999)),
    expected: { balance: 601, unchargedMicro: 999_999, thresholdsCrossed: [], status: 'in_credit' },
  },
  { name: 'exactly 30% of the top-up: crossed, low', events: events(topUp(2000), use(1400)), expected: { balance: 600, thresholdsCrossed: [30], status: 'low' } },
  {
    name: 'below 10% and below the offer level: emergency credit available',
    events: events(topUp(2000), use(1850)),
    expected: { balance: 150, thresholdsCrossed: [30, 10], status: 'emergency_available' },
  },
  {
    name: 'one big step crosses all three; without emergency credit the rest is owed',
    events: events(topUp(2000), use(2100)),
    expected: { balance: 0, emergencyDebt: 100, thresholdsCrossed: [30, 10, 0], status: 'exhausted', emergencyCreditInUse: false },
  },
  {
    name: 'on emergency credit: balance spent, part of the emergency credit used',
    events: events(topUp(2000), use(2000), grant(), use(300)),
    expected: { balance: 0, emergencyCreditInUse: true, emergencyCreditRemaining: 200, emergencyDebt: 300, status: 'on_emergency_credit' },
  },
  {
    name: 'emergency credit taken while still in credit is used only once the balance is spent',
    events: events(topUp(2000), use(1900), grant(), use(150)),
    expected: { balance: 0, emergencyCreditRemaining: 450, emergencyDebt: 50, status: 'on_emergency_credit' },
  },
  {
    name: 'emergency credit used up: exhausted, and use beyond it (friendly hours) is owed too',
    events: events(topUp(2000), use(2000), grant(), use(600)),
    expected: { balance: 0, emergencyCreditInUse: true, emergencyCreditRemaining: 0, emergencyDebt: 600, status: 'exhausted' },
  },
  {
    name: 'a top-up repays emergency credit first, the rest is credit, and the emergency credit ends',
    events: events(topUp(2000), use(2000), grant(), use(300), topUp(1000, 'second')),
    expected: {
      balance: 700,
      emergencyDebt: 0,
      emergencyCreditInUse: false,
      emergencyCreditRemaining: 0,
      lastTopUp: { amount: 1000, ref: 'second', repaid: 300 },
      thresholdsCrossed: [],
      status: 'in_credit',
    },
  },
  {
    name: 'a top-up repays debt beyond emergency credit too (200 left: at the offer level is not below it)',
    events: events(topUp(2000), use(2000), grant(), use(800), topUp(1000, 'second')),
    expected: { balance: 200, emergencyDebt: 0, lastTopUp: { repaid: 800 }, thresholdsCrossed: [30], status: 'low' },
  },
  {
    name: 'a top-up smaller than the debt: all of it repays, the meter stays on what is left of the emergency credit',
    events: events(topUp(2000), use(2000), grant(), use(300), topUp(200, 'small')),
    expected: { balance: 0, emergencyDebt: 100, emergencyCreditInUse: true, emergencyCreditRemaining: 200, lastTopUp: { amount: 200, repaid: 200 }, thresholdsCrossed: [30, 10, 0], status: 'on_emergency_credit' },
  },
  {
    name: 'a top-up smaller than the debt after emergency credit ran out: still exhausted',
    events: events(topUp(2000), use(2000), grant(), use(700), topUp(500, 'small')),
    expected: { balance: 0, emergencyDebt: 200, emergencyCreditRemaining: 0, status: 'exhausted' },
  },
  {
    name: 'top-up exactly equal to the debt: repaid, nothing credited',
    events: events(topUp(2000), use(2300), topUp(300, 'exact')),
    expected: { balance: 0, emergencyDebt: 0, lastTopUp: { repaid: 300 }, status: 'exhausted' },
  },
  {
    name: 'a second emergency grant while one is in use is ignored',
    events: events(topUp(2000), use(2000), grant(), grant(), use(100)),
    expected: { emergencyCreditRemaining: 400, emergencyDebt: 100, ignored: 1 },
  },
  {
    name: 'emergency credit can be taken again once repaid',
    events: events(topUp(2000), use(2000), grant(), use(500), topUp(1000, 'b'), use(500), grant(), use(100)),
    expected: { balance: 0, emergencyCreditInUse: true, emergencyCreditRemaining: 400, emergencyDebt: 100, status: 'on_emergency_credit' },
  },
  {
    name: 'emergency credit repaid outside a top-up lowers the debt, never the balance',
    events: events(topUp(2000), use(2000), grant(), use(300), repaid(300)),
    expected: { balance: 0, emergencyDebt: 0, emergencyCreditInUse: false, status: 'exhausted', lastTopUp: { amount: 2000 } },
  },
  {
    name: 'a positive adjustment repays debt first, like a top-up, without a new warning cycle',
    events: events(topUp(1000), use(1100), adjust(400)),
    expected: { balance: 300, emergencyDebt: 0, thresholdsCrossed: [30, 10, 0], lastTopUp: { amount: 1000 } },
  },
  {
    name: 'a negative adjustment takes from the balance, then is owed',
    events: events(topUp(1000), adjust(-1200)),
    expected: { balance: 0, emergencyDebt: 200, status: 'exhausted' },
  },
  {
    name: 'a crossed threshold stays crossed until the next top-up, even when credit goes back up',
    events: events(topUp(1000), use(750), adjust(500)),
    expected: { balance: 750, thresholdsCrossed: [30], status: 'in_credit' },
  },
  {
    name: 'the next top-up starts a new cycle',
    events: events(topUp(1000), use(950), topUp(1000, 'next')),
    expected: { balance: 1050, thresholdsCrossed: [], status: 'in_credit' },
  },
  {
    name: 'thresholds follow the LAST top-up: a small top-up on a large balance',
    events: events(topUp(5000), use(4000), topUp(100, 'small'), use(1071)),
    expected: { balance: 29, thresholdsCrossed: [30], status: 'emergency_available' },
  },
  {
    name: 'a replayed consumption (same register range) is charged once',
    events: [
      { type: 'top_up', amount: 1000, at: T0, ref: 'a' },
      { type: 'consumption', costMicro: 100_000_000, at: T0 + MIN, fromWh: 0, toWh: 400 },
      { type: 'consumption', costMicro: 100_000_000, at: T0 + MIN, fromWh: 0, toWh: 400 },
      { type: 'consumption', costMicro: 50_000_000, at: T0 + 2 * MIN, fromWh: 400, toWh: 600 },
    ],
    expected: { balance: 850, chargedToWh: 600, ignored: 1 },
  },
  {
    name: 'a register reset, recorded as a zero-cost consumption going down, lets low register values be charged',
    events: [
      { type: 'top_up', amount: 1000, at: T0, ref: 'a' },
      { type: 'consumption', costMicro: 100_000_000, at: T0 + MIN, fromWh: 90_000, toWh: 90_400 },
      { type: 'consumption', costMicro: 0, at: T0 + 2 * MIN, fromWh: 90_400, toWh: 10 },
      { type: 'consumption', costMicro: 25_000_000, at: T0 + 3 * MIN, fromWh: 10, toWh: 110 },
    ],
    expected: { balance: 875, chargedToWh: 110, ignored: 0 },
  },
  {
    name: 'fractional costs add up exactly: ten costs of 0.1 p from 100 p leave 99 p',
    events: events(topUp(100), ...Array.from({ length: 10 }, () => use(0.1))),
    expected: { balance: 99, unchargedMicro: 0 },
  },
  {
    name: 'three costs of a third of a penny (333,333 millionths each) do not make a whole penny: nothing charged yet, all of it carried',
    events: events(topUp(100), use(1 / 3), use(1 / 3), use(1 / 3)),
    expected: { balance: 100, unchargedMicro: 999_999 },
  },
  {
    name: 'the carry is charged the moment it makes a whole penny',
    events: events(topUp(100), use(99.5), use(0.75)),
    expected: { balance: 0, unchargedMicro: 250_000, emergencyDebt: 0, status: 'exhausted' },
  },
];

describe('creditState', () => {
  it.each(cases)('$name', ({ events: evs, expected }) => {
    const s = creditState(evs, config);
    const { lastTopUp, ...rest } = expected;
    expect(s).toMatchObject(rest);
    if (lastTopUp === null) expect(s.lastTopUp).toBeNull();
    else if (lastTopUp) expect(s.lastTopUp).toMatchObject(lastTopUp);
  });

  it('is a pure fold: the same events give the same state, and the input is not changed', () => {
    const evs = events(topUp(2000), use(2000), grant(), use(300), topUp(1000, 'b'));
    const copy = structuredClone(evs);
    expect(creditState(evs, config)).toEqual(creditState(evs, config));
    expect(evs).toEqual(copy);
  });

  it('no emergency credit configured: exhausted, never emergency_available', () => {
    const none = { ...config, emergencyCredit: { amount: 0, offerWhenBelow: 200 } };
    expect(creditState(events(topUp(2000), use(1850)), none).status).toBe('low');
    expect(creditState(events(topUp(2000), use(2000)), none).status).toBe('exhausted');
  });

  it('no thresholds configured: never low', () => {
    const quiet = { ...config, warnAtPercentOfLastTopUp: [], emergencyCredit: { amount: 0, offerWhenBelow: 0 } };
    const s = creditState(events(topUp(2000), use(1990)), quiet);
    expect(s.thresholdsCrossed).toEqual([]);
    expect(s.status).toBe('in_credit');
  });
});

describe('money is exact and bounded (issue 14)', () => {
  const finite = (st: CreditState) => [st.balance, st.emergencyDebt, st.emergencyCreditRemaining, st.unchargedMicro].every((n) => Number.isSafeInteger(n));

  it('two top-ups of 1e300 (rows stored before amounts were bounded) are ignored: the balance is the real top-up, never Infinity', () => {
    const legacy = [topUp(1e300, 'huge-1'), topUp(1e300, 'huge-2'), topUp(1000, 'real')].map((f, i) => f(T0 + i * MIN));
    const st = creditState(legacy, config);
    expect(st).toMatchObject({ balance: 1000, ignored: 2, status: 'in_credit', lastTopUp: { amount: 1000, ref: 'real' } });
    expect(finite(st)).toBe(true);
    expect(JSON.parse(JSON.stringify(st))).toEqual(st); // nothing that JSON would turn into null
  });

  it('amounts the ledger cannot hold are ignored, not rounded: fractional, non-finite, legacy float costs', () => {
    const bad = [
      { type: 'top_up', amount: 10.5, at: T0 + 1, ref: 'frac' },
      { type: 'top_up', amount: Number.POSITIVE_INFINITY, at: T0 + 2, ref: 'inf' },
      { type: 'adjustment', amount: Number.NaN, at: T0 + 3, reason: 'nan' },
      { type: 'consumption', cost: 2.45, at: T0 + 4, fromWh: 0, toWh: 10 },
      { type: 'consumption', costMicro: 1e300, at: T0 + 5, fromWh: 10, toWh: 20 },
      { type: 'emergency_credit_granted', amount: 1e300, at: T0 + 6 },
    ] as unknown as CreditEvent[];
    const st = creditState([{ type: 'top_up', amount: 500, at: T0, ref: 'ok' }, ...bad], config);
    expect(st).toMatchObject({ balance: 500, emergencyDebt: 0, emergencyCreditInUse: false, ignored: bad.length });
    expect(finite(st)).toBe(true);
  });

  it('no pot passes the ceiling: a top-up that would, and a debt that would, are not applied', () => {
    const ceiling = 1_000_000_000;
    const st = creditState(events(topUp(ceiling, 'a'), topUp(1, 'b')), config);
    expect(st).toMatchObject({ balance: ceiling, ignored: 1, lastTopUp: { ref: 'a' } });
    const debt = creditState(events(topUp(ceiling, 'a'), adjust(-ceiling), adjust(-ceiling), adjust(-1)), config);
    expect(debt).toMatchObject({ balance: 0, emergencyDebt: ceiling, ignored: 1 });
  });

  it('10,000 top-ups and 10,000 costs of a third of a penny: the balance is the exact integer sum, with no drift', () => {
    const many: CreditEvent[] = [];
    for (let i = 0; i < 10_000; i++) {
      many.push({ type: 'top_up', amount: 10, at: T0 + 2 * i, ref: `t${i}` });
      many.push({ type: 'consumption', costMicro: 333_333, at: T0 + 2 * i + 1, fromWh: i, toWh: i + 1 });
    }
    const st = creditState(many, config);
    // 10,000 × 10 p in; 10,000 × 333,333 millionths = 3,333,330,000 millionths = 3,333 p charged and 330,000 carried.
    expect(st).toMatchObject({ balance: 100_000 - 3_333, unchargedMicro: 330_000, ignored: 0 });
  });
});

describe('schemas', () => {
  it.each([
    { name: 'a top-up', value: { type: 'top_up', amount: 1000, at: T0, ref: 'pay-1' }, ok: true },
    { name: 'a top-up of 0', value: { type: 'top_up', amount: 0, at: T0, ref: 'pay-1' }, ok: false },
    { name: 'a top-up in fractions of a penny', value: { type: 'top_up', amount: 10.5, at: T0, ref: 'pay-1' }, ok: false },
    { name: 'a top-up without a reference', value: { type: 'top_up', amount: 1000, at: T0, ref: '' }, ok: false },
    { name: 'a consumption cost in millionths', value: { type: 'consumption', costMicro: 2_450_000, at: T0, fromWh: 0, toWh: 100 }, ok: true },
    { name: 'a fraction of a millionth', value: { type: 'consumption', costMicro: 2.5, at: T0, fromWh: 0, toWh: 100 }, ok: false },
    { name: 'a legacy float cost in minor units', value: { type: 'consumption', cost: 2.45, at: T0, fromWh: 0, toWh: 100 }, ok: false },
    { name: 'a negative consumption cost', value: { type: 'consumption', costMicro: -1, at: T0, fromWh: 0, toWh: 100 }, ok: false },
    { name: 'a top-up beyond the ceiling', value: { type: 'top_up', amount: 1_000_000_001, at: T0, ref: 'pay-1' }, ok: false },
    { name: 'a top-up of 1e300', value: { type: 'top_up', amount: 1e300, at: T0, ref: 'pay-1' }, ok: false },
    { name: 'a fractional adjustment', value: { type: 'adjustment', amount: 0.5, at: T0, reason: 'goodwill' }, ok: false },
    { name: 'a negative adjustment', value: { type: 'adjustment', amount: -50, at: T0, reason: 'wrong charge' }, ok: true },
    { name: 'an unknown event', value: { type: 'refund', amount: 1, at: T0 }, ok: false },
  ])('event: $name → valid: $ok', ({ value, ok }) => {
    expect(CreditEventSchema.safeParse(value).success).toBe(ok);
  });
  it.each([
    { name: 'the example', value: { warnAtPercentOfLastTopUp: [30, 10, 0], emergencyCredit: { amount: 500, offerWhenBelow: 200 } }, ok: true },
    { name: 'a threshold above 100%', value: { warnAtPercentOfLastTopUp: [130], emergencyCredit: { amount: 500, offerWhenBelow: 200 } }, ok: false },
    { name: 'a threshold twice', value: { warnAtPercentOfLastTopUp: [10, 10], emergencyCredit: { amount: 500, offerWhenBelow: 200 } }, ok: false },
    { name: 'negative emergency credit', value: { warnAtPercentOfLastTopUp: [], emergencyCredit: { amount: -1, offerWhenBelow: 0 } }, ok: false },
  ])('config: $name → valid: $ok', ({ value, ok }) => {
    expect(CreditLedgerConfigSchema.safeParse(value).success).toBe(ok);
  });
});
