import { describe, expect, it } from 'vitest';
import { DueBuffer } from '../../src/control/due-buffer.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import type { DueOrder } from '../../src/store/store.js';

/** How admitted orders join the loop's fetched due batch (issue 19): only where the due query would have put them. */
const NOW = 1_000_000;
const due = (id: string, over: Partial<DueOrder> = {}): DueOrder => ({ id, meterId: `M-${id}`, link: 'L1', action: 'disconnect', reason: 'arrears', state: 'queued', priority: 100, deadline: null, ...over });
const admitted = (id: string, over: Partial<SwitchOrder> = {}): SwitchOrder =>
  ({ id, meterId: `M-${id}`, link: 'L1', action: 'reconnect', reason: 'payment', state: 'queued', stateReason: null, priority: 200, urgent: false, deadline: NOW + 3_600_000, notBefore: NOW, nextAttemptAt: NOW, supersededBy: null, ...over }) as SwitchOrder;
const ids = (b: DueBuffer): string[] => b.orders.map((o) => o.id);

function buffered(rows: DueOrder[], excluded: string[] = [], limit = 500): DueBuffer {
  const b = new DueBuffer();
  b.fetching();
  b.replace(rows, NOW, excluded, limit);
  return b;
}

describe('the due buffer', () => {
  it('puts an urgent reconnect admitted after a buffered batch at its head, a reconnect before the disconnects', () => {
    const b = buffered([due('r1', { action: 'reconnect', priority: 200, deadline: NOW + 1000 }), due('d1'), due('d2')]);
    b.admit([admitted('u', { priority: 300, urgent: true })], NOW);
    b.admit([admitted('r2', { deadline: NOW + 2000 })], NOW);
    b.admit([admitted('d3', { action: 'disconnect', reason: 'arrears', priority: 100, deadline: null })], NOW);
    expect(ids(b)).toEqual(['u', 'r1', 'r2', 'd1', 'd2', 'd3']);
  });

  it('drops a buffered order the admission supersedes (same meter, same dimension), keeps the other dimension', () => {
    const b = buffered([due('d1', { meterId: 'M-x' }), due('l1', { meterId: 'M-x', action: 'limit', priority: 150 }), due('d2')]);
    b.admit([admitted('r', { meterId: 'M-x' })], NOW);
    expect(ids(b)).toEqual(['r', 'l1', 'd2']);
  });

  it('a held admission still removes what it superseded, and is not buffered itself', () => {
    const b = buffered([due('d1', { meterId: 'M-x' }), due('d2')]);
    b.admit([admitted('h', { meterId: 'M-x', action: 'disconnect', priority: 100, state: 'held', stateReason: 'E_WINDOW: outside', nextAttemptAt: NOW + 60_000 })], NOW);
    expect(ids(b)).toEqual(['d2']);
  });

  it('leaves to the next fetch what it cannot place exactly: waiting for the wire, not due yet, a left-out link, after a cut', () => {
    const b = buffered([due('d1'), due('d2')], ['L2'], 2);
    b.admit([admitted('w', { stateReason: 'waiting for ord_1 to leave the wire' })], NOW);
    b.admit([admitted('n', { notBefore: NOW + 1, nextAttemptAt: NOW + 1 })], NOW);
    b.admit([admitted('l2', { link: 'L2' })], NOW);
    b.admit([admitted('late', { action: 'disconnect', priority: 100, deadline: null })], NOW); // ties the cut: ranks after it
    expect(ids(b)).toEqual(['d1', 'd2']);
    b.admit([admitted('r')], NOW); // ranks before the cut
    expect(ids(b)).toEqual(['r', 'd1', 'd2']);
  });

  it('applies what was admitted while a fetch was on its way to its result; a clear meanwhile voids the result', () => {
    const b = buffered([due('d0')]);
    b.fetching();
    b.admit([admitted('r')], NOW);
    b.replace([due('d1')], NOW, [], 500);
    expect(ids(b)).toEqual(['r', 'd1']);
    b.fetching();
    b.clear();
    b.replace([due('d1')], NOW, [], 500);
    expect(ids(b)).toEqual([]);
  });
});
