import type { PolicyConfig } from '../../src/domain/policy/policy-config.js';

/**
 * A policy for tests that are not about the calendar: every hour of every day permitted, a re-check hook URL
 * (tests that reach it run a real HTTP server there), otherwise the shipped defaults.
 */
export function openPolicy(overrides: Partial<PolicyConfig> = {}): PolicyConfig {
  const allDay = ['00:00-24:00'];
  return {
    notice: { minLeadDays: 3, maxLeadDays: 7, secondNoticeMinutes: 30, secondNoticeValidMinutes: 120 },
    paymentRecheck: { url: 'http://127.0.0.1:9/recheck', timeoutMs: 500, retryAfterMs: 60_000 },
    dailyCap: { overall: 1000, perRegion: {}, defaultPerRegion: 1000 },
    windows: { timezone: 'UTC', weekly: { mon: allDay, tue: allDay, wed: allDay, thu: allDay, fri: allDay, sat: allDay, sun: allDay }, holidays: [], holidayEveCutoff: null },
    nonPaymentRequiresPlan: true,
    creditCutOff: { friendlyHours: { timezone: 'UTC', weekly: { mon: [], tue: [], wed: [], thu: [], fri: [], sat: [], sun: [] }, weekendsFriendly: false, holidays: [] } },
    limitBeforeCut: { enabled: false, days: 15 },
    ...overrides,
  };
}
