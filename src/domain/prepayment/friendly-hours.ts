import { z } from 'zod';
import { localParts, type LocalParts } from '../policy/calendar.js';
import { nextScheduleChange, timeZoneSchema, toMinutes } from './local-schedule.js';

/**
 * Friendly-credit hours (DOMAIN.md, prepayment; UK supply licence condition 27A): a prepayment meter that runs
 * out of credit is not cut off inside them, e.g. 16:00–10:00 every day, at weekends and on holidays. Pure: the
 * instant is an argument; periods are in the utility's local time, so they follow DST.
 *
 * Periods do not wrap midnight: "16:00–10:00" is written "16:00-24:00" and "00:00-10:00", and so a friendly
 * evening runs into the next morning's period, the weekend or a holiday without a gap. Friday 17:00 with
 * weekends friendly runs on to Monday 10:00; a holiday Monday to Tuesday 10:00.
 */

const range = z
  .string()
  .regex(/^(([01]\d|2[0-3]):[0-5]\d|24:00)-(([01]\d|2[0-3]):[0-5]\d|24:00)$/, 'HH:MM-HH:MM')
  .refine((r) => {
    const [a, b] = r.split('-') as [string, string];
    return toMinutes(a) < toMinutes(b);
  }, 'start before end; a period over midnight is two ("16:00-24:00" and "00:00-10:00")');
const day = z.array(range);

export const FriendlyHoursConfigSchema = z
  .object({
    timezone: timeZoneSchema,
    /** The friendly periods of each weekday: no credit cut-off inside them. */
    weekly: z.object({ mon: day, tue: day, wed: day, thu: day, fri: day, sat: day, sun: day }).strict(),
    /** Saturday and Sunday are friendly all day. */
    weekendsFriendly: z.boolean(),
    /** Local dates friendly all day. */
    holidays: z.array(z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD')),
  })
  .strict();

export type FriendlyHoursConfig = z.infer<typeof FriendlyHoursConfigSchema>;

/** How far `friendlyHoursEnd` looks ahead. */
export const FRIENDLY_SEARCH_MS = 14 * 24 * 3_600_000;

const wholeDay = (local: LocalParts, config: FriendlyHoursConfig): boolean =>
  config.holidays.includes(local.date) || (config.weekendsFriendly && (local.weekday === 'sat' || local.weekday === 'sun'));

const periods = (local: LocalParts, config: FriendlyHoursConfig): [number, number][] =>
  config.weekly[local.weekday].map((r) => r.split('-').map(toMinutes) as [number, number]);

function friendlyAt(local: LocalParts, config: FriendlyHoursConfig): boolean {
  return wholeDay(local, config) || periods(local, config).some(([a, b]) => a <= local.minutes && local.minutes < b);
}

export function isFriendly(ms: number, config: FriendlyHoursConfig): boolean {
  return friendlyAt(localParts(ms, config.timezone), config);
}

/**
 * The first instant at or after `ms` outside friendly hours: when a credit cut-off may run. `ms` itself when it
 * is not friendly; null when friendly hours do not end within 14 days.
 */
export function friendlyHoursEnd(ms: number, config: FriendlyHoursConfig): number | null {
  const limit = ms + FRIENDLY_SEARCH_MS;
  const edges = (local: LocalParts): number[] => (wholeDay(local, config) ? [] : periods(local, config).flat());
  for (let t = ms; t <= limit; t = nextScheduleChange(t, config.timezone, edges)) {
    if (!isFriendly(t, config)) return t;
  }
  return null;
}

/** `friendlyHoursEnd` for a human: "friendly hours until 2026-03-30 10:00 local". */
export function describeFriendlyEnd(end: number, config: FriendlyHoursConfig): string {
  const l = localParts(end, config.timezone);
  return `${l.date} ${String(Math.floor(l.minutes / 60)).padStart(2, '0')}:${String(l.minutes % 60).padStart(2, '0')} ${config.timezone}`;
}
