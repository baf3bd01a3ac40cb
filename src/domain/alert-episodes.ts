/**
 * An alert episode: one condition on one meter that lasts, such as a relay-audit exception seen run after run,
 * excessive use over consecutive readings, a register that went down. It alerts once, when it starts, however
 * many times it is seen again, by however many instances, across however many restarts; the store claims it
 * atomically (GatewayStore.claimEpisode). Pure.
 */

/** The kinds of episode (see `alertMetricKind` for the `kind` label of `meterline_alerts_total`). */
export const EPISODE_KINDS = [
  'relay_audit_open_without_order',
  'relay_audit_closed_while_should_be_open',
  'relay_audit_armed_too_long',
  'relay_audit_not_read',
  'consumption_excessive',
  'consumption_continuous',
  'register_discontinuity',
] as const;
export type EpisodeKind = (typeof EPISODE_KINDS)[number];

/**
 * How a sighting is told from a new episode:
 * - `while_open`: the same condition seen again while its episode is open (the relay audit ends an episode when
 *   a run no longer sees it, so a later sighting is a new one);
 * - `overlapping`: the sighting's period starts no later than the open episode's end (findings recomputed from
 *   a meter's reading history: the same episode grown longer, or an old one seen again in the history).
 */
export type EpisodeContinuation = 'while_open' | 'overlapping';

/** Whether a sighting over `from`..`to` belongs to the open episode (no new alert) or starts a new one. */
export function continuesEpisode(open: { to: number } | undefined, sighting: { from: number }, mode: EpisodeContinuation): boolean {
  if (!open) return false;
  return mode === 'while_open' || sighting.from <= open.to;
}

/**
 * The `kind` label an episode's alert counts under in `meterline_alerts_total`: the episode kind, except that both
 * kinds of abnormal consumption keep the label they always had (`abnormal_consumption`), so dashboards keep working.
 */
export function alertMetricKind(kind: EpisodeKind): string {
  return kind === 'consumption_excessive' || kind === 'consumption_continuous' ? 'abnormal_consumption' : kind;
}
