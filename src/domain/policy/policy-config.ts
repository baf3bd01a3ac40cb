import { z } from 'zod';
import { FriendlyHoursConfigSchema } from '../prepayment/friendly-hours.js';

/**
 * The disconnect rules of DOMAIN.md as configuration, each with a safe default. Every refusal or hold names
 * the rule (`RULES` in disconnect-gate.ts) that caused it.
 */
const hhmm = z.string().regex(/^([01]\d|2[0-4]):[0-5]\d$/, 'HH:MM, 00:00 to 24:00');
const range = z
  .string()
  .regex(/^([01]\d|2[0-4]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$/, 'HH:MM-HH:MM')
  .refine((r) => r.split('-').every((t) => Number(t.slice(3)) % 5 === 0), 'minutes in multiples of 5');
const day = z.array(range);
const isoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD');

export const PolicyConfigSchema = z
  .object({
    notice: z
      .object({
        /** Rule 1: a delivered notice at least this many days old (default 3, at most 7)... */
        minLeadDays: z.number().min(0).max(7),
        /** ...and at most this many days old (default 7). */
        maxLeadDays: z.number().min(1).max(60),
        /** Rule 2: the pre-disconnect notification goes out at least this long before the command. */
        secondNoticeMinutes: z.number().int().min(30).max(24 * 60),
        /**
         * A delivered pre-disconnect notification announces an imminent disconnect only this long: an order held
         * past it (a window closed, the cap was used) sends a new one before its command.
         */
        secondNoticeValidMinutes: z.number().int().min(30).max(24 * 60),
      })
      .strict()
      .refine((n) => n.maxLeadDays >= n.minLeadDays, 'maxLeadDays must be >= minLeadDays')
      .refine((n) => n.secondNoticeValidMinutes >= n.secondNoticeMinutes + 30, 'secondNoticeValidMinutes must leave at least 30 minutes after secondNoticeMinutes'),
    /** Rule 3: the billing system's "is this account still in arrears?" hook. */
    paymentRecheck: z
      .object({
        url: z.string().url().nullable(),
        timeoutMs: z.number().int().min(100).max(60_000),
        /** An unreachable hook holds the order this long before asking again. */
        retryAfterMs: z.number().int().min(1000).max(24 * 3_600_000),
      })
      .strict(),
    /** Rule 4: disconnects per day, per region and overall; orders over the cap wait for the next day. */
    dailyCap: z
      .object({
        overall: z.number().int().min(0),
        perRegion: z.record(z.string(), z.number().int().min(0)),
        defaultPerRegion: z.number().int().min(0),
      })
      .strict(),
    /** Rule 5: when disconnects for non-payment may run, in the utility's local time. */
    windows: z
      .object({
        timezone: z.string().refine((tz) => {
          try {
            new Intl.DateTimeFormat('en-GB', { timeZone: tz });
            return true;
          } catch {
            return false;
          }
        }, 'an IANA time zone such as Europe/London'),
        weekly: z.object({ mon: day, tue: day, wed: day, thu: day, fri: day, sat: day, sun: day }).strict(),
        holidays: z.array(isoDate),
        /** On the eve of a holiday, nothing after this local time (e.g. "12:00"). */
        holidayEveCutoff: hhmm.nullable(),
      })
      .strict(),
    /** Rule 7 (seed 004 §2.2): disconnects for non-payment only through a supervisor-approved plan. */
    nonPaymentRequiresPlan: z.boolean(),
    /** Prepayment: a meter out of credit is not cut off inside friendly-credit hours (UK licence condition 27A). */
    creditCutOff: z.object({ friendlyHours: FriendlyHoursConfigSchema }).strict(),
    /** Rule 10: where the meter has a load limiter, limit before cutting. */
    limitBeforeCut: z
      .object({
        enabled: z.boolean(),
        /** The meter must have been limited at least this many days. */
        days: z.number().int().min(1).max(90),
        /**
         * Rule 6 for limits: protected customers (vulnerable, medical equipment, priority register) may be limited,
         * though never cut for arrears. Absent or false: they are not limited either (E_PROTECTED_CUSTOMER).
         */
        protectedCustomers: z.boolean().optional(),
      })
      .strict(),
  })
  .strict();

export type PolicyConfig = z.infer<typeof PolicyConfigSchema>;
