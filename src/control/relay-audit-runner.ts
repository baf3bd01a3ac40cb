import { randomBytes } from 'node:crypto';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import { HOUR_MS } from '../domain/deadlines.js';
import { inspectionPlan } from '../domain/escalation.js';
import { relayAuditExceptions, type AuditedMeter, type RelayAuditException, type RelayAuditKind } from '../domain/relay-audit.js';
import type { GatewayStore, MeterView, RelayAuditRun } from '../store/store.js';
import type { Clock } from './clock.js';

export interface RelayAuditConfig {
  cron: string;
  maxObservationAgeHours: number;
  /** A relay armed by our reconnect for longer than this is an exception. */
  maxArmedHours: number;
  /** Raise an inspection work order for a relay open with no order, or closed while it should be open. */
  workOrders: boolean;
  /** An inspection is due this long after the audit that raised it. */
  inspectionDueHours: number;
}

/** The exceptions after which someone must go and look at the customer. */
const NEEDS_INSPECTION: ReadonlySet<RelayAuditKind> = new Set(['open_without_order', 'closed_while_should_be_open']);

/** What a run lists per exception: the exception, its episode, and whether this run raised its alert. */
export type AuditedException = RelayAuditException & { episodeId: string; alerted: boolean; workOrderId: string | null };

/**
 * The daily relay audit (DOMAIN.md rule 17): every meter's last observed relay state (kept fresh by the
 * scheduled reads) against the state its orders asked for. A relay open with no order behind it, closed while it
 * should be open, armed for too long or not read at all is an exception for a person to look at, and it acts:
 * an alert (the outbox, `meterline_alerts_total`, the meter's timeline) and, for an open or bypassed relay, an
 * inspection work order. An exception seen run after run is one episode, kept in the store, so it alerts once
 * whichever instance runs the audit and however often it restarts; a run that no longer sees it ends it.
 */
export class RelayAuditRunner {
  private task: ScheduledTask | undefined;
  private running: Promise<RelayAuditRun> | undefined;

  constructor(
    private readonly store: GatewayStore,
    private readonly clock: Clock,
    private readonly config: RelayAuditConfig,
    private readonly logger: Logger,
    /** Called once per new episode, with its kind (the `kind` label of meterline_alerts_total). */
    private readonly onAlert?: (kind: EpisodeKind) => void,
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
    const limits = { maxObservationAgeMs: this.config.maxObservationAgeHours * HOUR_MS, maxArmedMs: this.config.maxArmedHours * HOUR_MS };
    const exceptions: AuditedException[] = [];
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
      const byId = new Map(page.map((m) => [m.meterId, m]));
      for (const e of relayAuditExceptions(audited, now, limits)) exceptions.push(await this.act(e, byId.get(e.meterId)!, now));
      meters += page.length;
      after = page[page.length - 1]!.meterId;
    }
    const ended = await this.store.endEpisodes(
      'relay_audit_',
      exceptions.map((e) => ({ meterId: e.meterId, kind: episodeKind(e.kind) })),
      now,
    );
    for (const e of ended) this.logger.info({ meterId: e.meterId, kind: e.kind, episodeId: e.id }, 'relay audit exception no longer seen: episode ended');
    const run: RelayAuditRun = { id: `audit_${now.toString(36)}${randomBytes(3).toString('hex')}`, ranAt: now, meters, exceptions };
    await this.store.saveRelayAudit(run);
    this.logger.info({ meters, exceptions: exceptions.length, alerted: exceptions.filter((e) => e.alerted).length, ended: ended.length, runId: run.id }, 'relay audit done');
    return run;
  }

  /** Claim the exception's episode: a new one alerts (and, where someone must look, raises an inspection). */
  private async act(e: RelayAuditException, meter: MeterView, now: number): Promise<AuditedException> {
    const kind = episodeKind(e.kind);
    const inspect = this.config.workOrders && NEEDS_INSPECTION.has(e.kind);
    const { episode, opened } = await this.store.claimEpisode(
      {
        meterId: e.meterId,
        kind,
        from: now,
        to: now,
        whPerHour: null,
        message: e.message,
        details: { exception: e.kind, observed: e.observed, desired: e.desired },
        continues: 'while_open',
        alert: { kind: 'alert.relay_audit', payload: { meterId: e.meterId, exception: e.kind, message: e.message, observed: e.observed, desired: e.desired, at: new Date(now).toISOString() } },
        inspection: inspect ? { ...inspectionPlan(meter.flags, now, this.config.inspectionDueHours * HOUR_MS, `relay audit: ${e.message}`), region: meter.region } : null,
      },
      now,
    );
    if (opened) {
      this.logger.warn({ meterId: e.meterId, alert: kind, episodeId: episode.id, workOrderId: episode.workOrderId }, e.message);
      this.onAlert?.(kind);
    }
    return { ...e, episodeId: episode.id, alerted: opened, workOrderId: episode.workOrderId };
  }
}

export const episodeKind = (kind: RelayAuditKind): EpisodeKind => `relay_audit_${kind}`;
