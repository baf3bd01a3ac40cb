import { describe, expect, it } from 'vitest';
import { FriendlyHoursConfigSchema, friendlyHoursEnd, isFriendly, type FriendlyHoursConfig } from '../../../src/domain/prepayment/friendly-hours.js';

/** Friendly-credit hours (licence condition 27A): when a credit cut-off may run, on fixed instants. */

const at = (iso: string): number => Date.parse(iso);
const every = (ranges: string[]) => ({ mon: ranges, tue: ranges, wed: ranges, thu: ranges, fri: ranges, sat: ranges, sun: ranges });

// 16:00–10:00 every day, weekends, and the 2026 bank holidays around the dates used below.
const uk: FriendlyHoursConfig = FriendlyHoursConfigSchema.parse({
  timezone: 'Europe/London',
  weekly: every(['00:00-10:00', '16:00-24:00']),
  weekendsFriendly: true,
  holidays: ['2026-08-31', '2026-12-25', '2026-12-28'],
});
const noWeekends: FriendlyHoursConfig = { ...uk, weekendsFriendly: false, holidays: [] };

describe('friendlyHoursEnd: the earliest credit cut-off', () => {
  const cases: { name: string; config: FriendlyHoursConfig; from: string; end: string | null }[] = [
    { name: 'out of credit 17:00 on a Friday → not before Monday 10:00', config: uk, from: '2026-11-27T17:00:00Z', end: '2026-11-30T10:00:00Z' },
    { name: 'Friday 16:00 exactly is already friendly → Monday 10:00', config: uk, from: '2026-11-27T16:00:00Z', end: '2026-11-30T10:00:00Z' },
    { name: 'Friday 15:59 is not friendly → at once', config: uk, from: '2026-11-27T15:59:00Z', end: '2026-11-27T15:59:00Z' },
    { name: 'Tuesday noon → at once', config: uk, from: '2026-11-24T12:00:00Z', end: '2026-11-24T12:00:00Z' },
    { name: 'Tuesday 10:00 exactly is the end of the morning period → at once', config: uk, from: '2026-11-24T10:00:00Z', end: '2026-11-24T10:00:00Z' },
    { name: 'Tuesday 09:59:30 → 10:00', config: uk, from: '2026-11-24T09:59:30Z', end: '2026-11-24T10:00:00Z' },
    { name: 'Tuesday 23:00 → Wednesday 10:00 (over midnight)', config: uk, from: '2026-11-24T23:00:00Z', end: '2026-11-25T10:00:00Z' },
    { name: 'Saturday noon → Monday 10:00', config: uk, from: '2026-11-28T12:00:00Z', end: '2026-11-30T10:00:00Z' },
    { name: 'weekends not friendly: Saturday 17:00 → Sunday 10:00', config: noWeekends, from: '2026-11-28T17:00:00Z', end: '2026-11-29T10:00:00Z' },
    {
      name: 'holiday Monday (31 August, BST): Friday 17:00 → Tuesday 10:00 BST',
      config: uk,
      from: '2026-08-28T16:00:00Z',
      end: '2026-09-01T09:00:00Z',
    },
    {
      name: 'Christmas: Thursday 24th 17:00, holidays Friday 25th and Monday 28th → Tuesday 29th 10:00',
      config: uk,
      from: '2026-12-24T17:00:00Z',
      end: '2026-12-29T10:00:00Z',
    },
    {
      name: 'clocks go forward on the weekend: Friday 17:00 GMT → Monday 10:00 BST (09:00 UTC)',
      config: uk,
      from: '2026-03-27T17:00:00Z',
      end: '2026-03-30T09:00:00Z',
    },
    {
      name: 'clocks go back on the weekend: Friday 17:00 BST → Monday 10:00 GMT',
      config: uk,
      from: '2026-10-23T16:00:00Z',
      end: '2026-10-26T10:00:00Z',
    },
    {
      name: 'the night the clocks go forward: 00:30 GMT → 10:00 BST, not 11:00',
      config: noWeekends,
      from: '2026-03-29T00:30:00Z',
      end: '2026-03-29T09:00:00Z',
    },
    {
      name: 'a period ending in the skipped hour (01:30 does not exist) ends when the clocks jump',
      config: { ...noWeekends, weekly: { ...every([]), sun: ['00:00-01:30'] } },
      from: '2026-03-29T00:10:00Z',
      end: '2026-03-29T01:00:00Z',
    },
    {
      name: 'a period ending in the repeated hour ends at its first 01:30 (BST)',
      config: { ...noWeekends, weekly: { ...every([]), sun: ['00:00-01:30'] } },
      from: '2026-10-24T23:10:00Z',
      end: '2026-10-25T00:30:00Z',
    },
    {
      name: 'New York, clocks go forward 8 March: Friday 17:00 EST → Monday 10:00 EDT',
      config: { ...uk, timezone: 'America/New_York', holidays: [] },
      from: '2026-03-06T22:00:00Z',
      end: '2026-03-09T14:00:00Z',
    },
    { name: 'friendly all day every day → null (none within 14 days)', config: { ...uk, weekly: every(['00:00-24:00']) }, from: '2026-11-24T12:00:00Z', end: null },
    {
      name: 'friendly for exactly 13 days of holidays → found on the 14th',
      config: { ...noWeekends, weekly: every([]), holidays: Array.from({ length: 13 }, (_, i) => `2026-12-${String(19 + i).padStart(2, '0')}`) },
      from: '2026-12-19T00:00:00Z',
      end: '2027-01-01T00:00:00Z',
    },
  ];
  it.each(cases)('$name', ({ config, from, end }) => {
    const r = friendlyHoursEnd(at(from), config);
    expect(r === null ? null : new Date(r).toISOString()).toBe(end === null ? null : new Date(at(end)).toISOString());
    if (r !== null) {
      expect(isFriendly(r, config)).toBe(false);
      // Nothing before it is outside friendly hours: check every minute from the start.
      for (let t = Math.ceil(at(from) / 60_000) * 60_000; t < r; t += 60_000) expect(isFriendly(t, config)).toBe(true);
    }
  });
});

describe('isFriendly', () => {
  it.each([
    { iso: '2026-11-24T09:59:59Z', friendly: true },
    { iso: '2026-11-24T10:00:00Z', friendly: false },
    { iso: '2026-11-24T15:59:59Z', friendly: false },
    { iso: '2026-11-24T16:00:00Z', friendly: true },
    { iso: '2026-11-24T23:59:59Z', friendly: true },
    { iso: '2026-11-28T12:00:00Z', friendly: true }, // Saturday
    { iso: '2026-12-28T12:00:00Z', friendly: true }, // holiday Monday
    { iso: '2026-12-29T12:00:00Z', friendly: false },
    { iso: '2026-07-14T09:30:00Z', friendly: false }, // 10:30 BST
    { iso: '2026-07-14T08:30:00Z', friendly: true }, // 09:30 BST
  ])('$iso → $friendly', ({ iso, friendly }) => {
    expect(isFriendly(at(iso), uk)).toBe(friendly);
  });
});

describe('FriendlyHoursConfigSchema', () => {
  it.each([
    { name: 'the UK example', value: uk, ok: true },
    { name: 'a period over midnight (must be two)', value: { ...uk, weekly: every(['16:00-10:00']) }, ok: false },
    { name: 'an empty period', value: { ...uk, weekly: every(['10:00-10:00']) }, ok: false },
    { name: 'a bad time', value: { ...uk, weekly: every(['16:00-25:00']) }, ok: false },
    { name: 'a missing day', value: { ...uk, weekly: { mon: [] } }, ok: false },
    { name: 'a bad holiday', value: { ...uk, holidays: ['28/12/2026'] }, ok: false },
    { name: 'an unknown time zone', value: { ...uk, timezone: 'Europe/Atlantis' }, ok: false },
  ])('$name → valid: $ok', ({ value, ok }) => {
    expect(FriendlyHoursConfigSchema.safeParse(value).success).toBe(ok);
  });
});
