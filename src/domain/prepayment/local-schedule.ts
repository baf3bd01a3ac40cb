import { z } from 'zod';
import { localParts, type LocalParts, type Weekday } from '../policy/calendar.js';

/**
 * Walking real time against a weekly schedule written in local wall-clock time (tariff bands, friendly hours).
 * Shared by tariff.ts and friendly-hours.ts. Pure.
 *
 * A weekly schedule can change only at one of its own HH:MM boundaries, at local midnight, or when the
 * zone's UTC offset changes (DST). `nextScheduleChange` returns the first such instant after `t`, so a caller
 * steps from change to change instead of minute by minute, and never steps over a DST jump: in London on the
 * last Sunday of March, 00:30 + "9 h 30 min to 10:00" would land on 11:00 BST and skip 10:00–11:00.
 */

export const WEEKDAYS: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
export const MINUTE_MS = 60_000;
const DAY_MINUTES = 24 * 60;

export const timeZoneSchema = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone such as Europe/London');

/** "HH:MM", 00:00 to 24:00 ("24:00" is the end of the day). */
export const hhmmSchema = z.string().regex(/^(([01]\d|2[0-3]):[0-5]\d|24:00)$/, 'HH:MM, 00:00 to 24:00');

export const toMinutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

const floorMinute = (t: number): number => t - (((t % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);

/** Local wall-clock minus UTC, in ms, at `t` (whole minutes: every zone in use today has a whole-minute offset). */
export function utcOffsetMs(t: number, timeZone: string): number {
  const lp = localParts(t, timeZone);
  const [y, m, d] = lp.date.split('-').map(Number) as [number, number, number];
  return Date.UTC(y, m - 1, d) + lp.minutes * MINUTE_MS - floorMinute(t);
}

/**
 * The first instant after `t` at which the local day, a schedule boundary or the UTC offset is reached.
 * `boundaries` gives the schedule's boundaries (minutes after local midnight) for a local day.
 */
export function nextScheduleChange(t: number, timeZone: string, boundaries: (local: LocalParts) => readonly number[]): number {
  const start = floorMinute(t);
  const local = localParts(t, timeZone);
  const next = boundaries(local).reduce((best, b) => (b > local.minutes && b < best ? b : best), DAY_MINUTES);
  const candidate = start + (next - local.minutes) * MINUTE_MS;
  const offset = utcOffsetMs(t, timeZone);
  if (utcOffsetMs(candidate, timeZone) === offset) return candidate;
  // A DST transition lies between: find the first whole minute with the new offset (binary search, one
  // transition per day at most).
  let lo = start; // offset here is `offset`
  let hi = candidate; // offset here differs
  while (hi - lo > MINUTE_MS) {
    const mid = floorMinute(lo + (hi - lo) / 2);
    if (utcOffsetMs(mid, timeZone) === offset) lo = mid;
    else hi = mid;
  }
  return hi;
}
