import type { Logger } from 'pino';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import { abnormalConsumption, registerDiscontinuities, type ConsumptionLimits } from '../domain/consumption.js';
import type { GatewayStore } from '../store/store.js';

/** Readings and swaps looked at per check. */
const HISTORY_READINGS = 500;
const HISTORY_SWAPS = 50;

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * Abnormal consumption (DOMAIN.md rule 20): after each reading with an energy register (read, read back or pushed
 * by the meter), the meter's recent readings, split at its recorded swaps, are checked for excessive or
 * never-stopping use (a leak, a fault) and for a register that went down with no swap recorded. Each finding is
 * claimed as an episode in the store: only a new episode alerts (`alert.abnormal_consumption`, or
 * `alert.register_discontinuity`, which is not a consumption alert), so a restart, or another instance checking
 * the same meter, never tells the customer twice.
 */
export class ConsumptionWatch {
  constructor(
    private readonly store: GatewayStore,
    private readonly limits: ConsumptionLimits,
    private readonly logger: Logger,
    /** Called once per new episode, with its kind. */
    private readonly onAlert?: (kind: EpisodeKind) => void,
  ) {}

  async check(meterId: string, now: number): Promise<void> {
    const [history, swaps] = await Promise.all([this.store.energyReadings(meterId, HISTORY_READINGS), this.store.listMeterSwaps(meterId, HISTORY_SWAPS)]);
    // Both findings are about the change between readings (a swap's own two count as readings): with fewer than two
    // and no swap there is none (a meter's first reading), and the analyses would only build empty runs (issue 19).
    if (history.length < 2 && swaps.length === 0) return;
    // Only a finding needs the time as text (nearly every reading has none: issue 19, work per order).
    let atText: string | undefined;
    const at = (): string => (atText ??= iso(now));
    for (const episode of abnormalConsumption(history, this.limits, swaps)) {
      const kind: EpisodeKind = episode.kind === 'excessive' ? 'consumption_excessive' : 'consumption_continuous';
      const period = { from: iso(episode.from), to: iso(episode.to) };
      const claimed = await this.store.claimEpisode(
        {
          meterId,
          kind,
          from: episode.from,
          to: episode.to,
          whPerHour: episode.whPerHour,
          message: episode.message,
          details: { limitWhPerHour: episode.kind === 'excessive' ? this.limits.maxWhPerHour : this.limits.continuousMinWhPerHour },
          continues: 'overlapping',
          alert: { kind: 'alert.abnormal_consumption', payload: { meterId, kind: episode.kind, whPerHour: episode.whPerHour, message: episode.message, ...period, at: at() } },
        },
        now,
      );
      if (!claimed.opened) continue;
      this.logger.warn({ meterId, alert: 'abnormal_consumption', kind: episode.kind, whPerHour: episode.whPerHour, ...period, episodeId: claimed.episode.id }, episode.message);
      this.onAlert?.(kind);
    }
    for (const drop of registerDiscontinuities(history, swaps)) {
      const period = { from: iso(drop.from), to: iso(drop.to) };
      const claimed = await this.store.claimEpisode(
        {
          meterId,
          kind: 'register_discontinuity',
          from: drop.from,
          to: drop.to,
          whPerHour: null,
          message: drop.message,
          details: { beforeWh: drop.beforeWh, afterWh: drop.afterWh },
          continues: 'overlapping',
          alert: { kind: 'alert.register_discontinuity', payload: { meterId, beforeWh: drop.beforeWh, afterWh: drop.afterWh, message: drop.message, ...period, at: at() } },
        },
        now,
      );
      if (!claimed.opened) continue;
      this.logger.warn({ meterId, alert: 'register_discontinuity', beforeWh: drop.beforeWh, afterWh: drop.afterWh, ...period, episodeId: claimed.episode.id }, drop.message);
      this.onAlert?.('register_discontinuity');
    }
  }
}
