import { randomBytes } from 'node:crypto';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { relayAuditExceptions, type AuditedMeter } from '../domain/relay-audit.js';
import type { GatewayStore, RelayAuditRun } from '../store/store.js';
import type { Clock } from './clock.js';

/**
 * The daily relay audit (DOMAIN.md rule 17): every meter's last observed relay state (kept fresh by the
 * scheduled reads) against the state its orders asked for. A relay open with no order behind it, closed while it
 * should be open, armed for too long or not read at all is an exception for a person to look at.
 */
export class RelayAuditRunner {
  private task: ScheduledTask | undefined;
  private running: Promise<RelayAuditRun> | undefined;

  constructor(
    private readonly store: GatewayStore,
    private readonly clock: Clock,
    private readonly config: { cron: string; maxObservationAgeHours: number },
    private readonly logger: Logger,
  ) {
    if (!cron.validate(config.cron)) throw new Error(`relayAudit.cron: "${config.cron}" is not a valid cron expression`);
  }

  start(): void {
    this.task = cron.schedule(this.config.cron, () => void this.run().catch((err: unknown) => this.logger.error({ err }, 'relay audit failed')));
  }

  async stop(): Promise<void> {
    await this.task?.stop();
  }

  /** One audit over all meters (one at a time; a second call while one runs gets that run). */
  run(): Promise<RelayAuditRun> {
    this.running ??= this.audit().finally(() => (this.running = undefined));
    return this.running;
  }

  private async audit(): Promise<RelayAuditRun> {
    const now = this.clock.now();
    const exceptions: unknown[] = [];
    let meters = 0;
    for (let after: string | null = null; ; ) {
      const page = await this.store.listMeters(after, 1000);
      if (page.length === 0) break;
      const facts = await this.store.relayAuditFacts(page.map((m) => m.meterId));
      const audited: AuditedMeter[] = page.map((m) => {
        const f = facts.get(m.meterId)!;
        return {
          meterId: m.meterId,
          observed: m.observed ? { relay: m.observed.relay, at: m.observed.at } : null,
          desiredRelay: m.desiredRelay,
          hasOpenOrder: f.hasOpenOrder,
          lastDisconnectDone: f.lastDisconnectDone,
          armedSince: f.armedSince,
        };
      });
      exceptions.push(...relayAuditExceptions(audited, now, this.config.maxObservationAgeHours * 3_600_000));
      meters += page.length;
      after = page[page.length - 1]!.meterId;
    }
    const run: RelayAuditRun = { id: `audit_${now.toString(36)}${randomBytes(3).toString('hex')}`, ranAt: now, meters, exceptions };
    await this.store.saveRelayAudit(run);
    this.logger.info({ meters, exceptions: exceptions.length, runId: run.id }, 'relay audit done');
    return run;
  }
}
