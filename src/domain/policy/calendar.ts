import type { PolicyConfig } from './policy-config.js';

/**
 * Permitted windows for disconnects (DOMAIN.md rule 5): weekly hours in the utility's time zone, holidays and
 * their eves, and declared extreme-weather periods. Pure: the instant is an argument.
 */

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';
const WEEKDAYS: Record<string, Weekday> = { Mon: 'mon', Tue: 'tue', Wed: 'wed', Thu: 'thu', Fri: 'fri', Sat: 'sat', Sun: 'sun' };

export interface WeatherPeriod {
  id: string;
  kind: string;
  from: number;
  to: number;
  /** Regions it covers; null = everywhere. */
  regions: string[] | null;
}

export interface LocalParts {
  date: string;
  weekday: Weekday;
  minutes: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

export function localParts(ms: number, timeZone: string): LocalParts {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, weekday: WEEKDAYS[p.weekday!]!, minutes: Number(p.hour) * 60 + Number(p.minute) };
}

export function addDays(date: string, days: number): string {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

const toMinutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

export type WindowVerdict = { ok: true } | { ok: false; why: 'holiday' | 'closed_day' | 'holiday_eve' | 'outside_hours' | 'extreme_weather'; message: string };

export function windowVerdict(ms: number, windows: PolicyConfig['windows'], weather: readonly WeatherPeriod[], region: string): WindowVerdict {
  const storm = weather.find((w) => w.from <= ms && ms < w.to && (w.regions === null || w.regions.includes(region)));
  if (storm) return { ok: false, why: 'extreme_weather', message: `declared ${storm.kind} period ${storm.id} until ${new Date(storm.to).toISOString()}` };
  const local = localParts(ms, windows.timezone);
  if (windows.holidays.includes(local.date)) return { ok: false, why: 'holiday', message: `${local.date} is a public holiday` };
  const ranges = windows.weekly[local.weekday];
  if (ranges.length === 0) return { ok: false, why: 'closed_day', message: `no disconnects on ${local.weekday} (${local.date})` };
  const eveCutoff = windows.holidayEveCutoff !== null && windows.holidays.includes(addDays(local.date, 1)) ? toMinutes(windows.holidayEveCutoff) : 24 * 60;
  const inRange = ranges.some((r) => {
    const [a, b] = r.split('-') as [string, string];
    return local.minutes >= toMinutes(a) && local.minutes < Math.min(toMinutes(b), eveCutoff);
  });
  if (inRange) return { ok: true };
  if (eveCutoff < 24 * 60 && local.minutes >= eveCutoff) return { ok: false, why: 'holiday_eve', message: `eve of a holiday, after ${windows.holidayEveCutoff} local time` };
  return { ok: false, why: 'outside_hours', message: `${String(Math.floor(local.minutes / 60)).padStart(2, '0')}:${String(local.minutes % 60).padStart(2, '0')} local time is outside ${ranges.join(', ')}` };
}

const STEP_MS = 5 * 60_000;

/** The next instant (on a 5-minute boundary) when a disconnect is permitted, within 60 days; null if none. */
export function nextPermitted(ms: number, windows: PolicyConfig['windows'], weather: readonly WeatherPeriod[], region: string): number | null {
  let t = Math.ceil(ms / STEP_MS) * STEP_MS;
  const limit = ms + 60 * 24 * 3_600_000;
  for (; t <= limit; t += STEP_MS) if (windowVerdict(t, windows, weather, region).ok) return t;
  return null;
}
