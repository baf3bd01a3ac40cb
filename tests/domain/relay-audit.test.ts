import { describe, expect, it } from 'vitest';
import { relayAuditExceptions, type AuditedMeter, type RelayAuditKind } from '../../src/domain/relay-audit.js';

const NOW = Date.UTC(2026, 10, 25, 3, 0, 0);
const H = 3_600_000;
const MAX_AGE = 26 * H;
const LIMITS = { maxObservationAgeMs: MAX_AGE, maxArmedMs: 24 * H };

const meter = (over: Partial<AuditedMeter>): AuditedMeter => ({
  meterId: 'M-1',
  observed: { relay: 'connected', at: NOW - H },
  desiredRelay: null,
  hasOpenOrder: false,
  lastDisconnectDone: false,
  ...over,
});

const cases: { name: string; meter: Partial<AuditedMeter>; expected: RelayAuditKind | null }[] = [
  { name: 'closed, never ordered: fine', meter: {}, expected: null },
  { name: 'closed, reconnected by order: fine', meter: { desiredRelay: 'connected' }, expected: null },
  { name: 'open, disconnected by our order: fine', meter: { observed: { relay: 'disconnected', at: NOW - H }, desiredRelay: 'disconnected', lastDisconnectDone: true }, expected: null },
  { name: 'open, never ordered', meter: { observed: { relay: 'disconnected', at: NOW - H } }, expected: 'open_without_order' },
  { name: 'open although our latest order reconnected it', meter: { observed: { relay: 'disconnected', at: NOW - H }, desiredRelay: 'connected' }, expected: 'open_without_order' },
  { name: 'open although our disconnect never completed', meter: { observed: { relay: 'disconnected', at: NOW - H }, desiredRelay: 'disconnected', lastDisconnectDone: false }, expected: 'open_without_order' },
  { name: 'closed after we disconnected it (bypass)', meter: { desiredRelay: 'disconnected', lastDisconnectDone: true }, expected: 'closed_while_should_be_open' },
  { name: 'closed, our disconnect never completed', meter: { desiredRelay: 'disconnected', lastDisconnectDone: false }, expected: 'closed_while_should_be_open' },
  { name: 'armed while it should be open', meter: { observed: { relay: 'armed', at: NOW - H }, desiredRelay: 'disconnected', lastDisconnectDone: true }, expected: 'closed_while_should_be_open' },
  { name: 'armed with no order behind it', meter: { observed: { relay: 'armed', at: NOW - H } }, expected: 'open_without_order' },
  { name: 'armed by our reconnect 2 h ago: waiting for the customer', meter: { observed: { relay: 'armed', at: NOW - H }, desiredRelay: 'connected', armedSince: NOW - 2 * H }, expected: null },
  { name: 'armed by our reconnect exactly 24 h ago: not yet too long', meter: { observed: { relay: 'armed', at: NOW - H }, desiredRelay: 'connected', armedSince: NOW - 24 * H }, expected: null },
  { name: 'armed by our reconnect 24 h and 1 ms ago', meter: { observed: { relay: 'armed', at: NOW - H }, desiredRelay: 'connected', armedSince: NOW - 24 * H - 1 }, expected: 'armed_too_long' },
  { name: 'armed since an unknown time', meter: { observed: { relay: 'armed', at: NOW - H }, desiredRelay: 'connected' }, expected: 'armed_too_long' },
  { name: 'never read', meter: { observed: null }, expected: 'not_read' },
  { name: 'read exactly maxObservationAgeMs ago: still counts', meter: { observed: { relay: 'connected', at: NOW - MAX_AGE } }, expected: null },
  { name: 'read 1 ms too long ago', meter: { observed: { relay: 'connected', at: NOW - MAX_AGE - 1 } }, expected: 'not_read' },
  { name: 'a stale read is not_read even if it showed a problem', meter: { observed: { relay: 'disconnected', at: NOW - MAX_AGE - 1 } }, expected: 'not_read' },
  { name: 'open with an open order: the control loop is on it', meter: { observed: { relay: 'disconnected', at: NOW - H }, desiredRelay: 'connected', hasOpenOrder: true }, expected: null },
  { name: 'never read with an open order: skipped too', meter: { observed: null, hasOpenOrder: true }, expected: null },
];

describe('daily relay audit (DOMAIN.md rule 17)', () => {
  it.each(cases)('$name', ({ meter: over, expected }) => {
    const found = relayAuditExceptions([meter(over)], NOW, LIMITS);
    expect(found.map((e) => e.kind)).toEqual(expected === null ? [] : [expected]);
  });

  it('an exception carries what was seen and what was wanted, and a sentence for the person who looks', () => {
    const [e] = relayAuditExceptions([meter({ meterId: 'M-17', desiredRelay: 'disconnected', lastDisconnectDone: true })], NOW, LIMITS);
    expect(e).toEqual({
      meterId: 'M-17',
      kind: 'closed_while_should_be_open',
      observed: { relay: 'connected', at: NOW - H },
      desired: 'disconnected',
      message: 'Meter M-17 is closed (read 2026-11-25T02:00:00.000Z) while it should be open: we disconnected it and no order of ours closed it since (a bypass or a local reconnection).',
    });
  });

  it('a fleet gives one exception per meter that needs a person, in input order', () => {
    const fleet = [
      meter({ meterId: 'A' }),
      meter({ meterId: 'B', observed: { relay: 'disconnected', at: NOW - H } }),
      meter({ meterId: 'C', observed: null }),
      meter({ meterId: 'D', hasOpenOrder: true, observed: null }),
    ];
    expect(relayAuditExceptions(fleet, NOW, LIMITS).map((e) => `${e.meterId}:${e.kind}`)).toEqual(['B:open_without_order', 'C:not_read']);
  });

  it('maxArmedMs is configurable', () => {
    const armed = meter({ observed: { relay: 'armed', at: NOW }, desiredRelay: 'connected', armedSince: NOW - 3 * H });
    expect(relayAuditExceptions([armed], NOW, { ...LIMITS, maxArmedMs: 2 * H }).map((e) => e.kind)).toEqual(['armed_too_long']);
    expect(relayAuditExceptions([armed], NOW, { ...LIMITS, maxArmedMs: 4 * H })).toEqual([]);
  });
});
