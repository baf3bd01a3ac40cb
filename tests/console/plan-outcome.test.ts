import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the console, without types
import { planOutcome } from '../../src/console/plan-outcome.js';

/** The plans page shows what a plan came to, not only that it was approved: a refused order is never a green "approved". */
const plan = (status: string, states: (string | null)[]) => {
  const summary: Record<string, number> = {};
  for (const s of states) summary[s ?? 'not_created'] = (summary[s ?? 'not_created'] ?? 0) + 1;
  return { status, summary, items: states.map((state, i) => ({ meterId: `M-${i}`, state })) };
};

describe('plan outcome on the plans page', () => {
  it('a plan whose only order was refused says so, in red', () => {
    expect(planOutcome(plan('approved', ['refused']))).toEqual({ word: 'approved · 1 of 1 refused', kind: 'refused' });
  });
  it('green only when every order is done', () => {
    expect(planOutcome(plan('approved', ['done', 'armed']))).toEqual({ word: 'approved · 2 of 2 done', kind: 'done' });
    expect(planOutcome(plan('approved', ['done', 'queued']))).toEqual({ word: 'approved · 1 of 2 done', kind: 'in_flight' });
    expect(planOutcome(plan('approved', ['done', 'failed', 'held'])).kind).toBe('refused');
    expect(planOutcome(plan('approved', ['done', 'failed', 'held'])).word).toBe('approved · 1 of 3 failed');
  });
  it('a disconnect ended by a payment is grey; one waiting for the field is amber', () => {
    expect(planOutcome(plan('approved', ['done', 'cancelled']))).toEqual({ word: 'approved · 1 of 2 done, 1 of 2 cancelled', kind: 'cancelled' });
    expect(planOutcome(plan('approved', ['escalated', 'done'])).kind).toBe('escalated');
  });
  it('a plan not approved shows its status', () => {
    expect(planOutcome(plan('draft', [null]))).toEqual({ word: 'draft', kind: 'draft' });
    expect(planOutcome(plan('rejected', [null]))).toEqual({ word: 'rejected', kind: 'rejected' });
  });
});
