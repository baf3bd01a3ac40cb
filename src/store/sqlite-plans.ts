import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { PlanFacts } from '../domain/policy/meter-facts.js';
import type { OrderState } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import type { SqliteAuditLog } from './sqlite-audit-log.js';
import { planFromRows, planOrderRequests } from './store-rows.js';
import type { OrderRequest, PlanDraft, PlanView, SubmitContext, SubmitOutcome } from './store.js';

/**
 * Disconnect plans, maker–checker (DOMAIN.md rule 7, seed 004 §2.2): an operator or the billing system drafts a
 * list of meters and a window; a supervisor who is not the author approves it, and only then do its disconnect
 * orders exist. Each order still passes every rule before its command is sent.
 */
type Row = Record<string, unknown>;

export class SqlitePlans {
  constructor(
    private readonly db: Database.Database,
    private readonly audit: SqliteAuditLog,
    private readonly submit: (requests: readonly OrderRequest[], ctx: SubmitContext) => SubmitOutcome[],
    /** Tell the change feed about an order this module moved itself. */
    private readonly orderChanged: (orderId: string, at: number) => void,
    /** Record an event of an order's history (the store writes it with its batch's). */
    private readonly event: (orderId: string, at: number, from: OrderState, to: OrderState, reason: string) => void,
  ) {}

  facts(planId: string): PlanFacts | undefined {
    const r = this.db.prepare('SELECT id, status, window_from, window_to FROM plans WHERE id = ?').get(planId) as Row | undefined;
    return r ? { id: r.id as string, status: r.status as PlanFacts['status'], windowFrom: r.window_from as number, windowTo: r.window_to as number } : undefined;
  }

  create(draft: PlanDraft, actor: string, now: number): PlanView {
    if (draft.windowTo <= draft.windowFrom) throw new MeterlineError('E_VALIDATION', 'the plan window must end after it starts');
    const known = this.db.prepare('SELECT 1 FROM meters WHERE meter_id = ?');
    const missing = draft.meterIds.map((meterId, index) => ({ index, meterId })).filter((m) => !known.get(m.meterId));
    if (missing.length > 0) throw new MeterlineError('E_METER_NOT_FOUND', `${missing.length} meter(s) in the plan are not registered; nothing was created`, { missing: missing.slice(0, 100) });
    const dupes = draft.meterIds.filter((m, i) => draft.meterIds.indexOf(m) !== i);
    if (dupes.length > 0) throw new MeterlineError('E_VALIDATION', `meters listed twice in the plan: ${[...new Set(dupes)].slice(0, 20).join(', ')}`);
    const id = `plan_${now.toString(36)}${randomBytes(4).toString('hex')}`;
    this.db
      .prepare('INSERT INTO plans (id, reason, note, author, created_at, window_from, window_to, status, limit_w) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(id, draft.reason, draft.note, actor, now, draft.windowFrom, draft.windowTo, 'draft', draft.limitW ?? null);
    const item = this.db.prepare('INSERT INTO plan_meters (plan_id, position, meter_id) VALUES (?, ?, ?)');
    draft.meterIds.forEach((m, i) => item.run(id, i, m));
    this.audit.append(now, actor, 'plan.draft', id, { after: { reason: draft.reason, limitW: draft.limitW ?? null, windowFrom: draft.windowFrom, windowTo: draft.windowTo, meters: draft.meterIds.length, note: draft.note } });
    return this.get(id)!;
  }

  get(planId: string): PlanView | undefined {
    const r = this.db.prepare('SELECT * FROM plans WHERE id = ?').get(planId) as Row | undefined;
    if (!r) return undefined;
    const items = this.db
      .prepare(
        `SELECT pm.meter_id, pm.order_id, o.state, o.state_reason FROM plan_meters pm LEFT JOIN orders o ON o.id = pm.order_id
         WHERE pm.plan_id = ? ORDER BY pm.position`,
      )
      .all(planId) as Row[];
    return planFromRows(r, items);
  }

  list(status?: PlanFacts['status']): PlanView[] {
    const ids = (status
      ? this.db.prepare('SELECT id FROM plans WHERE status = ? ORDER BY created_at DESC LIMIT 200').all(status)
      : this.db.prepare('SELECT id FROM plans ORDER BY created_at DESC LIMIT 200').all()) as { id: string }[];
    return ids.map((r) => this.get(r.id)!);
  }

  decide(planId: string, decision: 'approve' | 'reject' | 'cancel', actor: string, ctx: SubmitContext): PlanView {
    const plan = this.get(planId);
    if (!plan) throw new MeterlineError('E_PLAN_NOT_FOUND', `plan ${planId} does not exist`);
    const now = ctx.now;
    if (decision === 'cancel') {
      if (plan.status === 'cancelled' || plan.status === 'rejected') throw new MeterlineError('E_PLAN_STATE', `plan ${planId} is already ${plan.status}`);
      this.db.prepare('UPDATE plans SET status = ?, decided_by = COALESCE(decided_by, ?), decided_at = COALESCE(decided_at, ?) WHERE id = ?').run('cancelled', actor, now, planId);
      // Open orders of the plan end now; one on the wire is refused by the gate before any retry.
      const open = this.db.prepare(`SELECT id, state FROM orders WHERE plan_id = ? AND state IN ('queued', 'held')`).all(planId) as { id: string; state: OrderState }[];
      const cancel = this.db.prepare(`UPDATE orders SET state = 'cancelled', state_reason = ?, updated_at = ?, completed_at = ? WHERE id = ? AND state = ?`);
      for (const o of open) {
        const why = `plan ${planId} cancelled by ${actor}`;
        cancel.run(why, now, now, o.id, o.state);
        this.event(o.id, now, o.state, 'cancelled', why);
        this.orderChanged(o.id, now);
      }
      this.audit.append(now, actor, 'plan.cancel', planId, { before: { status: plan.status }, after: { status: 'cancelled', ordersCancelled: open.length } });
      return this.get(planId)!;
    }
    if (plan.status !== 'draft') throw new MeterlineError('E_PLAN_STATE', `plan ${planId} is ${plan.status}; only a draft can be approved or rejected`);
    if (plan.author === actor) {
      throw new MeterlineError('E_SELF_APPROVAL', `plan ${planId} was drafted by ${actor}; another supervisor must ${decision} it (maker–checker, DOMAIN.md rule 7)`);
    }
    if (decision === 'reject') {
      this.db.prepare('UPDATE plans SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?').run('rejected', actor, now, planId);
      this.audit.append(now, actor, 'plan.reject', planId, { before: { status: 'draft' }, after: { status: 'rejected' } });
      return this.get(planId)!;
    }
    this.db.prepare('UPDATE plans SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?').run('approved', actor, now, planId);
    const requests = planOrderRequests(plan, actor, now);
    const outcomes = this.submit(requests, ctx);
    const link = this.db.prepare('UPDATE plan_meters SET order_id = ? WHERE plan_id = ? AND position = ?');
    outcomes.forEach((o, i) => link.run(o.order.id, planId, i));
    this.audit.append(now, actor, 'plan.approve', planId, { before: { status: 'draft' }, after: { status: 'approved', orders: outcomes.length } });
    return this.get(planId)!;
  }
}
