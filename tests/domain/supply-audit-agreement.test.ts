import { describe, expect, it } from 'vitest';
import type { RelayState } from '../../src/domain/relay.js';
import { relayAuditExceptions, type RelayAuditKind } from '../../src/domain/relay-audit.js';
import { supplyStatus, type SupplyWord } from '../../src/domain/supply-status.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';

/**
 * DOMAIN.md rules 17 and 18: the daily relay audit and the call centre's "fault or disconnect?" answer judge a relay
 * the same way. For every combination of relay state and order history (no order open, a fresh reading), a relay
 * the audit calls an exception is one the supply answer says a person should look at, with the matching word.
 */
const NOW = Date.UTC(2026, 10, 25, 10, 0, 0);
const H = 3_600_000;
const LIMITS = { maxObservationAgeMs: 26 * H, maxArmedMs: 24 * H };

const disconnectOrder = { id: 'ord_d', action: 'disconnect', reason: 'customer_request', requestedBy: 'ops', note: null, completedAt: NOW - 5 * H, updatedAt: NOW - 5 * H } as unknown as SwitchOrder;
const reconnectOrder = { id: 'ord_r', action: 'reconnect', reason: 'payment', requestedBy: 'billing', note: null, completedAt: NOW - 2 * H, updatedAt: NOW - 2 * H } as unknown as SwitchOrder;

/** An order history: what the store says about it (desired, latest completed) and the completed orders themselves. */
interface History {
  name: string;
  desiredRelay: 'connected' | 'disconnected' | null;
  lastDisconnectDone: boolean;
  armedSince: number | null;
  lastDisconnect?: SwitchOrder;
  lastReconnect?: SwitchOrder;
}
const histories: History[] = [
  { name: 'never ordered', desiredRelay: null, lastDisconnectDone: false, armedSince: null },
  { name: 'disconnected by our order', desiredRelay: 'disconnected', lastDisconnectDone: true, armedSince: null, lastDisconnect: disconnectOrder },
  { name: 'our disconnect never completed', desiredRelay: 'disconnected', lastDisconnectDone: false, armedSince: null },
  { name: 'reconnected by our order', desiredRelay: 'connected', lastDisconnectDone: false, armedSince: null, lastDisconnect: disconnectOrder, lastReconnect: reconnectOrder },
  { name: 'armed by our reconnect 2 h ago', desiredRelay: 'connected', lastDisconnectDone: false, armedSince: NOW - 2 * H, lastDisconnect: disconnectOrder, lastReconnect: reconnectOrder },
  { name: 'our reconnect failed after our disconnect', desiredRelay: 'connected', lastDisconnectDone: true, armedSince: null, lastDisconnect: disconnectOrder },
  { name: 'our latest order withdrawn after our disconnect', desiredRelay: null, lastDisconnectDone: true, armedSince: null, lastDisconnect: disconnectOrder },
];
const relays: RelayState[] = ['connected', 'disconnected', 'armed'];

const supplyWordFor: Record<RelayAuditKind, SupplyWord[]> = {
  open_without_order: ['disconnected_without_order'],
  closed_while_should_be_open: ['on_supply_against_order', 'armed_against_order'],
  armed_too_long: ['armed_waiting_for_customer'],
  not_read: ['unknown'],
};
const PERSON_WORDS: SupplyWord[] = ['disconnected_without_order', 'on_supply_against_order', 'armed_against_order'];

function judge(relay: RelayState, h: History) {
  const [exception] = relayAuditExceptions([{ meterId: 'M-1', observed: { relay, at: NOW - H }, desiredRelay: h.desiredRelay, hasOpenOrder: false, lastDisconnectDone: h.lastDisconnectDone, armedSince: h.armedSince }], NOW, LIMITS);
  const answer = supplyStatus({
    now: NOW,
    observed: { relay, at: NOW - H, voltageV: 230 },
    liveRead: 'ok',
    orders: { desiredRelay: h.desiredRelay, hasOpenOrder: false, lastDisconnectDone: h.lastDisconnectDone, armedSince: h.armedSince },
    lastDisconnect: h.lastDisconnect,
    lastReconnect: h.lastReconnect,
    noVoltageBelowV: 100,
    staleAfterMs: 10 * 60_000,
  });
  return { exception, answer };
}

describe('the supply answer agrees with the relay audit', () => {
  const grid = relays.flatMap((relay) => histories.map((h) => ({ relay, h, label: `${relay}, ${h.name}` })));
  it.each(grid)('$label', ({ relay, h }) => {
    const { exception, answer } = judge(relay, h);
    if (exception) expect(supplyWordFor[exception.kind]).toContain(answer.status);
    else expect(PERSON_WORDS).not.toContain(answer.status);
    if (PERSON_WORDS.includes(answer.status)) expect(answer.sentence).toContain('A person should look');
  });

  it('a relay closed after our done disconnect is a bypass: never on_supply', () => {
    const { exception, answer } = judge('connected', histories[1]!);
    expect(exception?.kind).toBe('closed_while_should_be_open');
    expect(answer).toMatchObject({ status: 'on_supply_against_order', orderId: 'ord_d' });
  });

  it('a relay armed with no order of ours is open without an order: never armed_waiting_for_customer', () => {
    const { exception, answer } = judge('armed', histories[0]!);
    expect(exception?.kind).toBe('open_without_order');
    expect(answer.status).toBe('disconnected_without_order');
    expect(answer.sentence).toContain('no order of ours armed it');
  });

  it('armed after our done disconnect: armed_against_order, the audit says it should be open', () => {
    const { exception, answer } = judge('armed', histories[1]!);
    expect(exception?.kind).toBe('closed_while_should_be_open');
    expect(answer.status).toBe('armed_against_order');
  });

  it('with an order open, the answer judges by what the finished orders left: off by our disconnect while the reconnect is on its way', () => {
    const answer = supplyStatus({
      now: NOW,
      observed: { relay: 'disconnected', at: NOW - H, voltageV: 230 },
      liveRead: 'ok',
      orders: { desiredRelay: 'connected', hasOpenOrder: true, lastDisconnectDone: true, armedSince: null },
      lastDisconnect: disconnectOrder,
      lastReconnect: undefined,
      noVoltageBelowV: 100,
      staleAfterMs: 10 * 60_000,
    });
    expect(answer).toMatchObject({ status: 'disconnected_by_order', orderId: 'ord_d' });
    const pendingDisconnect = supplyStatus({
      now: NOW,
      observed: { relay: 'connected', at: NOW - H, voltageV: 230 },
      liveRead: 'ok',
      orders: { desiredRelay: 'disconnected', hasOpenOrder: true, lastDisconnectDone: false, armedSince: null },
      lastDisconnect: undefined,
      lastReconnect: undefined,
      noVoltageBelowV: 100,
      staleAfterMs: 10 * 60_000,
    });
    expect(pendingDisconnect.status).toBe('on_supply');
  });

  it('a live read the meter refuses (wrong keys) is said as such, not as a meter that does not answer', () => {
    const facts = {
      now: NOW,
      observed: { relay: 'connected' as const, at: NOW - H, voltageV: 230 },
      orders: { desiredRelay: null, hasOpenOrder: false, lastDisconnectDone: false, armedSince: null },
      lastDisconnect: undefined,
      lastReconnect: undefined,
      noVoltageBelowV: 100,
      staleAfterMs: 10 * 60_000,
    };
    const refused = supplyStatus({ ...facts, liveRead: 'auth_failed' });
    expect(refused.status).toBe('unknown');
    expect(refused.sentence).toMatch(/^The meter answered but refused the gateway's credentials: .*key file or the meter's keys.* It was last seen connected at /);
    expect(refused.sentence).not.toContain('has not answered');
    expect(supplyStatus({ ...facts, liveRead: 'failed' }).sentence).toContain('has not answered');
  });
});
