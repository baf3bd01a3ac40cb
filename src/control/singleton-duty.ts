import type { Logger } from 'pino';
import type { GatewayStore } from '../store/store.js';
import type { Clock } from './clock.js';

/** A job that must run on one instance at a time: started when this instance takes the duty, stopped when it loses it. */
export interface DutyJob {
  name: string;
  start(): void;
  stop(): void | Promise<void>;
}

export interface SingletonDutyOptions {
  store: GatewayStore;
  clock: Clock;
  /** This instance's name (`instanceId`). */
  owner: string;
  /** How long the duty stays this instance's without a renewal; renewed every third of it. */
  leaseMs: number;
  logger: Logger;
  jobs: readonly DutyJob[];
}

const DUTY = 'singletons';

/**
 * Several gateway instances share one store, but some work must be done once, not once per instance: the
 * success-rate monitor and its circuit breaker, the scheduled readings, the daily relay audit, billing
 * callbacks (in order per meter) and webhooks. One instance holds the duty under a lease in the store, renewing
 * it every third of `leaseMs`, and runs those jobs; when it dies or loses the store, its lease runs out and
 * another instance takes the duty and starts them. An instance that cannot renew stops its jobs before its lease
 * can have run out, so two instances never run them at once (given clocks that agree to well under the lease).
 */
export class SingletonDuty {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Until when (by this instance's clock) the duty is known to be held. */
  private heldUntil = 0;
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: SingletonDutyOptions) {}

  /** True while this instance runs the singleton jobs. */
  get held(): boolean {
    return this.running;
  }

  /** Try to take the duty now, then keep trying (or renewing) every third of the lease. */
  async start(): Promise<void> {
    await this.keep();
    this.timer = setInterval(() => void this.keep(), Math.max(100, Math.floor(this.options.leaseMs / 3)));
  }

  /** Stop the jobs and give the duty up at once, so another instance takes it without waiting a lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.busy;
    if (this.running) {
      await this.stopJobs();
      await this.options.store.releaseDuty(DUTY, this.options.owner).catch(() => undefined);
    }
  }

  private keep(): Promise<void> {
    this.busy = this.busy.then(() => this.keepOnce());
    return this.busy;
  }

  private async keepOnce(): Promise<void> {
    if (this.stopped) return;
    const { store, clock, owner, leaseMs, logger } = this.options;
    const now = clock.now();
    let held: boolean;
    try {
      held = await store.holdDuty(DUTY, { owner, until: now + leaseMs }, now);
    } catch (err) {
      // The store is unreachable: keep the jobs only while the last renewal surely still holds (a third of the lease to spare).
      held = this.running && clock.now() < this.heldUntil - leaseMs / 3;
      logger.warn({ err, keepingJobs: held }, 'could not renew the singleton duty');
      if (!held && this.running) await this.stopJobs();
      return;
    }
    if (held) {
      this.heldUntil = now + leaseMs;
      if (!this.running) {
        logger.info({ jobs: this.options.jobs.map((j) => j.name) }, 'this instance now runs the singleton jobs');
        this.running = true;
        for (const job of this.options.jobs) job.start();
      }
    } else if (this.running) {
      logger.warn('another instance holds the singleton duty now; stopping the singleton jobs here');
      await this.stopJobs();
    }
  }

  private async stopJobs(): Promise<void> {
    this.running = false;
    for (const job of this.options.jobs) await job.stop();
  }
}
