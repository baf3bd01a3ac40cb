import type { Logger } from 'pino';
import type { OrderAction } from '../domain/relay.js';
import type { AttemptStatsRow, BreakerScope, GatewayStore, OrderOutcomeRow } from '../store/store.js';
import type { Clock } from './clock.js';

/**
 * Rolling success rates of remote disconnect and reconnect (DOMAIN.md rule 16) per firmware profile, link and
 * region, over configurable windows: per attempt, first attempt, and final (the order ended well remotely). A rate
 * below the threshold with enough samples is an alert (log, metric, outbox `alert.success_rate`), not a statistic
 * for next month. A scope alerts only when its failures span `minDistinctMeters` meters (a few dead meters are
 * meter faults, not a link's), and one episode (the scope's rates below the threshold, until none is) is one alert
 * per scope, key and action, however many windows and kinds of rate show it. A collapse of disconnect success opens a circuit breaker for that population: its new
 * disconnects are held by the policy gate until an operator resets it; its reconnects go on and escalate.
 */

export type RateKind = 'attempt' | 'first_attempt' | 'final';

export interface SuccessRate {
  windowMinutes: number;
  scope: BreakerScope;
  key: string;
  /** Limits are measured too (a limiter that will not take its limit is a fault like a relay that will not move). */
  action: OrderAction;
  kind: RateKind;
  ok: number;
  total: number;
  rate: number;
  /** Distinct meters whose attempts (or orders, for `final`) failed in the window. */
  failingMeters: number;
}

export interface SuccessRateConfig {
  windowMinutes: number[];
  alertBelow: number;
  minSamples: number;
  /** A scope alerts only when its failures span at least this many distinct meters. */
  minDistinctMeters: number;
  breakerBelow: number;
  breakerMinSamples: number;
  evaluateEveryMs: number;
}

export interface SuccessRateReport {
  at: number;
  rates: SuccessRate[];
  /** Alerts active now (rate below threshold with enough samples). */
  alerting: SuccessRate[];
}

const SCOPES: { scope: BreakerScope; keyOf: (r: { profileId: string; link: string; region: string }) => string }[] = [
  { scope: 'profile', keyOf: (r) => r.profileId },
  { scope: 'link', keyOf: (r) => r.link },
  { scope: 'region', keyOf: (r) => r.region },
];

/** Sum the store's rows into rates per scope, key, action and kind. Pure. */
export function aggregateRates(windowMinutes: number, attempts: readonly AttemptStatsRow[], orders: readonly OrderOutcomeRow[]): SuccessRate[] {
  const acc = new Map<string, SuccessRate>();
  // A meter has one profile, link and region, so the store's rows hold disjoint sets of meters: their distinct
  // failing meters add up. (`first_attempt` counts the meters of every failed attempt: an upper bound.)
  const add = (scope: BreakerScope, key: string, action: OrderAction, kind: RateKind, ok: number, total: number, failingMeters: number) => {
    const id = `${scope}\u0000${key}\u0000${action}\u0000${kind}`;
    const cur = acc.get(id) ?? { windowMinutes, scope, key, action, kind, ok: 0, total: 0, rate: 0, failingMeters: 0 };
    cur.ok += ok;
    cur.total += total;
    cur.failingMeters += failingMeters;
    acc.set(id, cur);
  };
  for (const { scope, keyOf } of SCOPES) {
    for (const r of attempts) {
      add(scope, keyOf(r), r.action, 'attempt', r.ok, r.attempts, r.failedMeters);
      add(scope, keyOf(r), r.action, 'first_attempt', r.firstOk, r.firstAttempts, r.failedMeters);
    }
    for (const r of orders) add(scope, keyOf(r), r.action, 'final', r.succeeded, r.finished, r.failedMeters);
  }
  return [...acc.values()].filter((r) => r.total > 0).map((r) => ({ ...r, rate: r.ok / r.total }));
}

/** A success-rate alert episode is one scope, key and action: its windows and kinds of rate are one problem. */
function episodeId(r: Pick<SuccessRate, 'scope' | 'key' | 'action'>): string {
  return `${r.scope}|${r.key}|${r.action}`;
}

export class SuccessRateMonitor {
  private timer: NodeJS.Timeout | undefined;
  private last: SuccessRateReport = { at: 0, rates: [], alerting: [] };
  private readonly active = new Set<string>();
  /** Whether `active` has been read back from the alerts already sent (after a start, a restart or a duty handover). */
  private seeded = false;
  private inProgress: Promise<SuccessRateReport> | undefined;

  constructor(
    private readonly store: GatewayStore,
    private readonly clock: Clock,
    private readonly config: SuccessRateConfig,
    private readonly logger: Logger,
    private readonly onAlert?: (kind: string) => void,
  ) {}

  start(): void {
    this.seeded = false;
    this.timer = setInterval(() => void this.evaluate().catch((err: unknown) => this.logger.error({ err }, 'success-rate evaluation failed')), this.config.evaluateEveryMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  latest(): SuccessRateReport {
    return this.last;
  }

  /** Evaluate now; a call while an evaluation runs gets that evaluation's result, not an older one. */
  evaluate(): Promise<SuccessRateReport> {
    this.inProgress ??= this.evaluateOnce().finally(() => (this.inProgress = undefined));
    return this.inProgress;
  }

  private async evaluateOnce(): Promise<SuccessRateReport> {
    if (!this.seeded) await this.seedEpisodes();
    const now = this.clock.now();
    const rates: SuccessRate[] = [];
    for (const minutes of this.config.windowMinutes) {
      const since = now - minutes * 60_000;
      rates.push(...aggregateRates(minutes, await this.store.attemptStats(since), await this.store.orderOutcomeStats(since)));
    }
    const alerting = rates.filter((r) => r.total >= this.config.minSamples && r.rate < this.config.alertBelow && r.failingMeters >= this.config.minDistinctMeters);
    await this.raiseAlerts(alerting, rates, now);
    await this.tripBreakers(rates, now);
    this.last = { at: now, rates, alerting };
    return this.last;
  }


  /**
   * The episodes open now, as the alerts already sent tell (the latest of each scope's `alert.success_rate` and
   * `alert.success_rate_recovered`): a restarted gateway, or the instance that takes the duty over, does not alert
   * again for an episode already alerted.
   */
  private async seedEpisodes(): Promise<void> {
    const latest = new Set<string>();
    this.active.clear();
    for (const a of await this.store.listAlerts(1000)) {
      if (a.kind !== 'alert.success_rate' && a.kind !== 'alert.success_rate_recovered') continue;
      const p = a.payload as Partial<Pick<SuccessRate, 'scope' | 'key' | 'action'>> | null;
      if (!p?.scope || p.key === undefined || !p.action) continue;
      const id = episodeId({ scope: p.scope, key: p.key, action: p.action });
      if (latest.has(id)) continue;
      latest.add(id);
      if (a.kind === 'alert.success_rate') this.active.add(id);
    }
    this.seeded = true;
  }

  /**
   * One alert when a scope's episode starts (the worst of its rates below the threshold heads it, the others are
   * listed), one `recovered` when none of its rates is below any more: not one per window and kind of rate.
   */
  private async raiseAlerts(alerting: SuccessRate[], all: SuccessRate[], now: number): Promise<void> {
    const episodes = new Map<string, SuccessRate[]>();
    for (const r of alerting) episodes.set(episodeId(r), [...(episodes.get(episodeId(r)) ?? []), r]);
    for (const [id, below] of episodes) {
      if (this.active.has(id)) continue;
      this.active.add(id);
      const r = below.reduce((worst, x) => (x.rate < worst.rate ? x : worst));
      const message = `${r.kind.replace('_', ' ')} ${r.action} success for ${r.scope} ${r.key} is ${(r.rate * 100).toFixed(1)}% over ${r.windowMinutes} min (${r.ok}/${r.total}, failures on ${r.failingMeters} meters), below ${(this.config.alertBelow * 100).toFixed(0)}%`;
      this.logger.warn({ alert: 'success_rate', ...r }, message);
      this.onAlert?.('success_rate');
      await this.store.recordAlert('alert.success_rate', { ...r, threshold: this.config.alertBelow, below, message, at: new Date(now).toISOString() }, now);
    }
    for (const id of [...this.active]) {
      if (episodes.has(id)) continue;
      this.active.delete(id);
      const scopeRates = all.filter((x) => episodeId(x) === id);
      const r = scopeRates.reduce<SuccessRate | undefined>((worst, x) => (!worst || x.rate < worst.rate ? x : worst), undefined);
      if (r) await this.store.recordAlert('alert.success_rate_recovered', { ...r, at: new Date(now).toISOString() }, now);
    }
  }

  /**
   * Disconnect success per attempt, over the shortest window, counting only attempts since the population's last
   * breaker reset (so a reset is not undone by the failures that caused it). Judged on the rates this evaluation
   * reports, so a breaker never opens on figures its own report does not show.
   */
  private async tripBreakers(rates: readonly SuccessRate[], now: number): Promise<void> {
    const minutes = Math.min(...this.config.windowMinutes);
    const windowStart = now - minutes * 60_000;
    const breakers = await this.store.listBreakers(false);
    const open = new Set(breakers.filter((b) => b.resetAt === null).map((b) => `${b.scope}|${b.key}`));
    const lastReset = new Map<string, number>();
    for (const b of breakers) if (b.resetAt !== null) lastReset.set(`${b.scope}|${b.key}`, Math.max(lastReset.get(`${b.scope}|${b.key}`) ?? 0, b.resetAt));
    for (const r of rates) {
      if (r.windowMinutes !== minutes || r.action !== 'disconnect' || r.kind !== 'attempt' || open.has(`${r.scope}|${r.key}`)) continue;
      let rate = r;
      const reset = lastReset.get(`${r.scope}|${r.key}`);
      if (reset !== undefined && reset > windowStart) {
        const fresh = aggregateRates(minutes, await this.store.attemptStats(reset), []).find((x) => x.scope === r.scope && x.key === r.key && x.action === 'disconnect' && x.kind === 'attempt');
        if (!fresh) continue;
        rate = fresh;
      }
      if (rate.total < this.config.breakerMinSamples || rate.rate >= this.config.breakerBelow) continue;
      const reason = `disconnect success ${(rate.rate * 100).toFixed(1)}% (${rate.ok}/${rate.total} attempts over ${minutes} min) below ${(this.config.breakerBelow * 100).toFixed(0)}%`;
      const opened = await this.store.openBreaker(r.scope, r.key, 'disconnect', reason, now);
      if (opened) {
        this.logger.error({ alert: 'circuit_open', breakerId: opened.id, scope: r.scope, key: r.key }, `new disconnects for ${r.scope} ${r.key} stopped: ${reason}`);
        this.onAlert?.('circuit_open');
      }
    }
  }
}
