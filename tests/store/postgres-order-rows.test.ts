import { describe, expect, it } from 'vitest';
import { columnPositions, orderColumns, orderRowFromValues } from '../../src/store/postgres-order-rows.js';
import { orderFromRow } from '../../src/store/store-rows.js';

describe('postgres-order-rows', () => {
  // Every column of an orders row (as `SELECT o.*, …` gives them, in a different order than the mapper lists them), each value distinct.
  const names = ['seq', 'approved_at', 'id', 'meter_id', 'action', 'reason', 'note', 'requested_by', 'state', 'state_reason', 'priority', 'urgent', 'link',
    'created_at', 'updated_at', 'not_before', 'deadline', 'payment_at', 'attempts', 'next_attempt_at', 'superseded_by', 'completed_at', 'result_relay',
    'plan_id', 'second_notice_at', 'cap_day', 'escalated_at', 'lease_owner', 'lease_until', 'origin', 'reference', 'approved_by', 'limit_w', 'meter_flags_now'];
  const objectRow: Record<string, unknown> = {
    seq: 7, approved_at: 1_700_000_000_009, id: 'ord_1', meter_id: 'M-1', action: 'limit', reason: 'safety', note: 'n', requested_by: 'ops', state: 'in_flight',
    state_reason: 'r', priority: 3, urgent: true, link: 'L1', created_at: 1_700_000_000_001, updated_at: 1_700_000_000_002, not_before: 1_700_000_000_003,
    deadline: 1_700_000_000_004, payment_at: null, attempts: 2, next_attempt_at: 1_700_000_000_005, superseded_by: 'ord_2', completed_at: null,
    result_relay: 'connected', plan_id: 'plan_1', second_notice_at: 1_700_000_000_006, cap_day: '2026-11-28', escalated_at: 1_700_000_000_007,
    lease_owner: 'gw-a', lease_until: 1_700_000_000_008, origin: 'credit_control', reference: 'REF-1', approved_by: 'sup', limit_w: 1500, meter_flags_now: '{}',
  };
  const fields = names.map((name) => ({ name }));
  const values = names.map((n) => objectRow[n]);

  it('makes of an array row the order orderFromRow makes of the object row, and keeps the lease holder', () => {
    const row = orderRowFromValues(values, orderColumns(fields));
    expect(orderFromRow(row)).toEqual(orderFromRow(objectRow));
    expect(row.lease_owner).toBe('gw-a');
  });

  it('refuses rows without a column it maps', () => {
    expect(() => orderColumns(fields.filter((f) => f.name !== 'limit_w'))).toThrow(/limit_w/);
    expect(columnPositions(fields, ['meter_flags_now'])).toEqual({ meter_flags_now: names.length - 1 });
  });
});
