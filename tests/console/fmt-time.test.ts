import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain browser ES module without types (the console has no build step)
import { fmtTime, timesIn } from '../../src/console/dom.js';

/** Every time on a console page is one format that names its zone, so a reader never mistakes one zone for another. */
const original = process.env.TZ;
afterEach(() => {
  process.env.TZ = original;
});

describe('fmtTime', () => {
  it('shows the local time with its zone as an offset from UTC', () => {
    process.env.TZ = 'Europe/Berlin';
    expect(fmtTime('2026-11-24T08:05:03Z')).toBe('2026-11-24 09:05:03 UTC+1');
    expect(fmtTime('2026-07-01T08:05:03.250Z')).toBe('2026-07-01 10:05:03 UTC+2'); // summer time
    process.env.TZ = 'UTC';
    expect(fmtTime('2026-11-24T08:05:03Z')).toBe('2026-11-24 08:05:03 UTC');
    process.env.TZ = 'Asia/Kolkata';
    expect(fmtTime('2026-11-24T08:05:03Z')).toBe('2026-11-24 13:35:03 UTC+5:30');
    process.env.TZ = 'America/St_Johns';
    expect(fmtTime('2026-11-24T08:05:03Z')).toBe('2026-11-24 04:35:03 UTC-3:30');
  });

  it('shows a dash for no time and an unreadable value as it is', () => {
    expect(fmtTime(null)).toBe('—');
    expect(fmtTime(undefined)).toBe('—');
    expect(fmtTime('not a time')).toBe('not a time');
  });

  it('rewrites the ISO times inside an API sentence the same way', () => {
    process.env.TZ = 'Europe/Berlin';
    expect(timesIn('On supply: relay closed, 229.9 V at 2026-11-28T04:35:00.643Z.')).toBe('On supply: relay closed, 229.9 V at 2026-11-28 05:35:00 UTC+1.');
    expect(timesIn('low use, 2026-11-20T00:00:00Z to 2026-11-21T00:00:00+00:00: check')).toBe('low use, 2026-11-20 01:00:00 UTC+1 to 2026-11-21 01:00:00 UTC+1: check');
    expect(timesIn('no time here')).toBe('no time here');
  });
});
