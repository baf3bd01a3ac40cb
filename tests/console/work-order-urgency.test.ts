import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain browser ES module without types (the console has no build step)
import { mostUrgentFirst, urgency } from '../../src/console/pages/work-orders.js';

/** The work-orders list (a card per work order on a phone) puts the most urgent first, as a crew reads it top down. */
const wo = (id: string, extra: Record<string, unknown>) => ({ id, status: 'open', kind: 'switch_order', priority: 3, dueAt: '2026-11-24T12:00:00Z', timeLeftMinutes: 600, ...extra });

describe('work orders, most urgent first', () => {
  it('overdue, then critical (a live load side whatever its deadline), urgent, normal; closed last', () => {
    const list = [
      wo('normal', { timeLeftMinutes: 900 }),
      wo('closed', { status: 'done', timeLeftMinutes: -50 }),
      wo('urgent', { timeLeftMinutes: 300 }),
      wo('load-side', { kind: 'load_side_voltage', timeLeftMinutes: 1400 }),
      wo('overdue', { timeLeftMinutes: -5 }),
      wo('critical', { timeLeftMinutes: 60 }),
    ];
    const sorted = list.slice().sort(mostUrgentFirst);
    expect(sorted.map((w: { id: string }) => w.id)).toEqual(['overdue', 'critical', 'load-side', 'urgent', 'normal', 'closed']);
    expect(sorted.map(urgency)).toEqual(['overdue', 'critical', 'critical', 'urgent', 'normal', 'closed']);
  });
});
