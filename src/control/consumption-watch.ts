import type { Logger } from 'pino';
import { abnormalConsumption, type ConsumptionLimits } from '../domain/consumption.js';
import type { GatewayStore } from '../store/store.js';

/**
 * Abnormal consumption (DOMAIN.md rule 20): after each reading with an energy register, the meter's recent
 * readings are checked for excessive or never-stopping use (a leak, a fault); each new episode raises one
 * `alert.abnormal_consumption` for the customer channel.
 */
export class ConsumptionWatch {
  /** The end of the last episode alerted, per meter and kind, so an episode alerts once. */
  private readonly alerted = new Map<string, number>();

  constructor(
    private readonly store: GatewayStore,
    private readonly limits: ConsumptionLimits,
    private readonly logger: Logger,
    private readonly onAlert?: () => void,
  ) {}

  async check(meterId: string, now: number): Promise<void> {
    const history = await this.store.energyReadings(meterId, 500);
    for (const episode of abnormalConsumption(history, this.limits)) {
      const key = `${meterId}|${episode.kind}`;
      const last = this.alerted.get(key);
      // An episode continues from where the alerted one ended: alert again only for a new episode.
      if (last !== undefined && episode.from <= last) {
        this.alerted.set(key, Math.max(last, episode.to));
        continue;
      }
      this.alerted.set(key, episode.to);
      this.logger.warn({ meterId, alert: 'abnormal_consumption', ...episode }, episode.message);
      this.onAlert?.();
      await this.store.recordAlert('alert.abnormal_consumption', { meterId, ...episode, from: new Date(episode.from).toISOString(), to: new Date(episode.to).toISOString(), at: new Date(now).toISOString() }, now);
    }
  }
}
