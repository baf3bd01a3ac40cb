import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { WorkOrderPlan } from '../domain/escalation.js';
import type { SwitchAction } from '../domain/relay.js';
import { MeterlineError } from '../errors.js';
import type { SqliteAuditLog } from './sqlite-audit-log.js';
import { alertActPlan, alertFromRow, breakerFromRow, workOrderFromRow, workOrderPayload } from './store-rows.js';
import type { AlertAct, AlertRecord, AttemptStatsRow, BreakerScope, CircuitBreaker, FieldOutcome, OrderOutcomeRow, WorkOrder, WorkOrderStatus } from './store.js';

/**
 * Field work orders (DOMAIN.md rule 11) and success-rate facts (rule 16): the rows, their notifications to the
 * field-service system (outbox kinds `work_order.*`), and the circuit breakers. Synchronous, called inside the
 * SQLite store's transactions.
 */
type Row = Record<string, unknown>;
const id = (prefix: string, now: number): string => `${prefix}_${now.toString(36)}${randomBytes(5).toString('hex')}`;

/**
 * The success-rate statements (exported for their plans in the periodic-queries bench and tests). They run every
 * `successRates.evaluateEveryMs` for every window, over every attempt and order of the window (100,000 in the last
 * hour at fleet rate), so each reads the window's index entries only: attempts_ended carries the outcome, attempt
 * and order, orders_completed and orders_escalated the meter and action. The orders one is two range scans (finished,
 * escalated: disjoint by state) in one UNION ALL, where an OR let the planner walk every meter's orders (with ANALYZE
 * statistics) or orders_state_seq (without). INDEXED BY, as the store keeps no statistics. Same rows as the plain
 * join (tests/store/success-rate-stats.test.ts).
 */
export const SQLITE_RATE_SQL = {
  attempts: `SELECT m.profile_id AS profileId, m.link AS link, m.region AS region, o.action AS action,
                    COUNT(*) AS attempts, SUM(a.outcome = 'ok') AS ok,
                    SUM(a.attempt = 1) AS firstAttempts, SUM(a.attempt = 1 AND a.outcome = 'ok') AS firstOk,
                    COUNT(DISTINCT CASE WHEN a.outcome != 'ok' THEN o.meter_id END) AS failedMeters
             FROM attempts a INDEXED BY attempts_ended JOIN orders o ON o.id = a.order_id JOIN meters m ON m.meter_id = o.meter_id
             WHERE a.ended_at >= ? AND a.outcome IS NOT NULL AND a.outcome != 'interrupted'
             GROUP BY m.profile_id, m.link, m.region, o.action`,
  orders: `SELECT m.profile_id AS profileId, m.link AS link, m.region AS region, x.action AS action,
                  COUNT(*) AS finished, SUM(x.ok) AS succeeded, COUNT(DISTINCT CASE WHEN NOT x.ok THEN x.meter_id END) AS failedMeters
           FROM (SELECT o.meter_id AS meter_id, o.action AS action, o.state IN ('done', 'armed') AND o.escalated_at IS NULL AS ok
                 FROM orders o INDEXED BY orders_completed WHERE o.completed_at >= ? AND o.state IN ('done', 'armed', 'failed', 'done_by_field')
                 UNION ALL
                 SELECT o.meter_id, o.action, 0 FROM orders o INDEXED BY orders_escalated WHERE o.escalated_at >= ? AND o.state = 'escalated') x
           JOIN meters m ON m.meter_id = x.meter_id
           GROUP BY m.profile_id, m.link, m.region, x.action`,
};

export class SqliteWorkOrders {
  constructor(
    private readonly db: Database.Database,
    private readonly audit: SqliteAuditLog,
  ) {}

  private notify(kind: string, meterId: string, orderId: string | null, payload: Record<string, unknown>, now: number): void {
    this.db
      .prepare('INSERT INTO notifications (id, kind, meter_id, order_id, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(id('ntf', now), kind, meterId, orderId, JSON.stringify(payload), now, now);
  }

  get(workOrderId: string): WorkOrder | undefined {
    const r = this.db.prepare('SELECT * FROM work_orders WHERE id = ?').get(workOrderId) as Row | undefined;
    return r ? workOrderFromRow(r) : undefined;
  }

  openFor(orderId: string): WorkOrder | undefined {
    const r = this.db.prepare(`SELECT * FROM work_orders WHERE order_id = ? AND status IN ('open', 'assigned')`).get(orderId) as Row | undefined;
    return r ? workOrderFromRow(r) : undefined;
  }

  /** Raise a work order for the order (once; an open one is returned as is). */
  raise(order: { id: string; meterId: string; action: SwitchAction; deadline: number | null }, region: string, plan: WorkOrderPlan, now: number): WorkOrder {
    const existing = this.openFor(order.id);
    if (existing) return existing;
    const woId = id('wo', now);
    this.db
      .prepare(
        `INSERT INTO work_orders (id, order_id, kind, meter_id, region, action, reason, raised_at, due_at, deadline, priority, status, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)`,
      )
      .run(woId, order.id, plan.kind ?? 'switch_order', order.meterId, region, order.action, plan.reason, now, plan.dueAt, order.deadline, plan.priority, now);
    this.db.prepare('UPDATE orders SET escalated_at = COALESCE(escalated_at, ?) WHERE id = ?').run(now, order.id);
    const wo = this.get(woId)!;
    this.notify('work_order.created', order.meterId, order.id, workOrderPayload(wo), now);
    this.audit.append(now, 'gateway', 'work_order.raise', order.meterId, { after: workOrderPayload(wo) });
    return wo;
  }

  /** Cancel the order's open work order (the meter was restored remotely, or the order ended otherwise). */
  cancelFor(orderId: string, why: string, now: number): WorkOrder | undefined {
    const wo = this.openFor(orderId);
    if (!wo) return undefined;
    this.db.prepare(`UPDATE work_orders SET status = 'cancelled', note = ?, completed_at = ?, updated_at = ? WHERE id = ?`).run(why, now, now, wo.id);
    const after = this.get(wo.id)!;
    this.notify('work_order.cancelled', wo.meterId, orderId, workOrderPayload(after), now);
    this.audit.append(now, 'gateway', 'work_order.cancel', wo.meterId, { before: { status: wo.status }, after: { status: 'cancelled', why } });
    return after;
  }

  list(q: { status?: WorkOrderStatus; region?: string; orderId?: string; limit: number }): WorkOrder[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.status) (where.push('status = ?'), args.push(q.status));
    if (q.region) (where.push('region = ?'), args.push(q.region));
    if (q.orderId) (where.push('order_id = ?'), args.push(q.orderId));
    const sql = `SELECT * FROM work_orders ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY priority, due_at LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit) as Row[]).map(workOrderFromRow);
  }

  assign(workOrderId: string, assignee: string, actor: string, now: number): WorkOrder {
    const wo = this.get(workOrderId);
    if (!wo) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${workOrderId} does not exist`);
    if (wo.status !== 'open' && wo.status !== 'assigned') throw new MeterlineError('E_WORK_ORDER_STATE', `work order ${workOrderId} is ${wo.status}`);
    this.db.prepare(`UPDATE work_orders SET status = 'assigned', assigned_to = ?, assigned_at = ?, updated_at = ? WHERE id = ?`).run(assignee, now, now, workOrderId);
    const after = this.get(workOrderId)!;
    this.audit.append(now, actor, 'work_order.assign', wo.meterId, { workOrderId, before: { status: wo.status, assignedTo: wo.assignedTo }, after: { status: 'assigned', assignedTo: assignee } });
    return after;
  }

  /** Close the work order with the crew's outcome (the caller settles the switch order). */
  complete(workOrderId: string, outcome: FieldOutcome, note: string | null, actor: string, now: number): WorkOrder {
    const wo = this.get(workOrderId);
    if (!wo) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${workOrderId} does not exist`);
    if (wo.status !== 'open' && wo.status !== 'assigned') throw new MeterlineError('E_WORK_ORDER_STATE', `work order ${workOrderId} is already ${wo.status}`);
    this.db.prepare(`UPDATE work_orders SET status = 'done', outcome = ?, note = ?, completed_at = ?, updated_at = ? WHERE id = ?`).run(outcome, note, now, now, workOrderId);
    const after = this.get(workOrderId)!;
    this.audit.append(now, actor, 'work_order.complete', wo.meterId, { workOrderId, before: { status: wo.status }, after: { status: 'done', outcome, note } });
    return after;
  }

  attemptStats(since: number): AttemptStatsRow[] {
    return (this.db.prepare(SQLITE_RATE_SQL.attempts).all(since) as AttemptStatsRow[]).map((r) => ({
      ...r,
      ok: r.ok ?? 0,
      firstAttempts: r.firstAttempts ?? 0,
      firstOk: r.firstOk ?? 0,
      failedMeters: r.failedMeters ?? 0,
    }));
  }

  orderOutcomeStats(since: number): OrderOutcomeRow[] {
    return this.db.prepare(SQLITE_RATE_SQL.orders).all(since, since) as OrderOutcomeRow[];
  }

  openBreaker(scope: BreakerScope, key: string, action: SwitchAction, reason: string, now: number): CircuitBreaker | undefined {
    const open = this.db.prepare('SELECT 1 FROM breakers WHERE scope = ? AND key = ? AND action = ? AND reset_at IS NULL').get(scope, key, action);
    if (open) return undefined;
    const bid = id('brk', now);
    this.db.prepare('INSERT INTO breakers (id, scope, key, action, opened_at, reason) VALUES (?, ?, ?, ?, ?, ?)').run(bid, scope, key, action, now, reason);
    const b = breakerFromRow(this.db.prepare('SELECT * FROM breakers WHERE id = ?').get(bid) as Row);
    this.notify('alert.circuit_open', '-', null, { breakerId: bid, scope, key, action, reason, openedAt: new Date(now).toISOString() }, now);
    this.audit.append(now, 'gateway', 'breaker.open', `${scope}:${key}`, { after: b });
    return b;
  }

  breakers(openOnly: boolean): CircuitBreaker[] {
    const rows = (openOnly ? this.db.prepare('SELECT * FROM breakers WHERE reset_at IS NULL ORDER BY opened_at').all() : this.db.prepare('SELECT * FROM breakers ORDER BY opened_at DESC LIMIT 500').all()) as Row[];
    return rows.map(breakerFromRow);
  }

  resetBreaker(breakerId: string, actor: string, now: number): CircuitBreaker | undefined {
    const r = this.db.prepare('SELECT * FROM breakers WHERE id = ?').get(breakerId) as Row | undefined;
    if (!r) return undefined;
    const before = breakerFromRow(r);
    if (before.resetAt === null) {
      this.db.prepare('UPDATE breakers SET reset_at = ?, reset_by = ? WHERE id = ?').run(now, actor, breakerId);
      this.audit.append(now, actor, 'breaker.reset', `${before.scope}:${before.key}`, { before, after: { ...before, resetAt: now, resetBy: actor } });
    }
    return breakerFromRow(this.db.prepare('SELECT * FROM breakers WHERE id = ?').get(breakerId) as Row);
  }

  recordAlert(kind: string, payload: Record<string, unknown>, now: number): void {
    this.notify(kind, typeof payload.meterId === 'string' ? payload.meterId : '-', null, payload, now);
  }

  getAlert(alertId: string): AlertRecord | undefined {
    const r = this.db.prepare(`SELECT * FROM notifications WHERE id = ? AND kind LIKE 'alert.%'`).get(alertId) as Row | undefined;
    return r ? alertFromRow(r) : undefined;
  }

  actOnAlert(alertId: string, act: AlertAct, note: string | null, actor: string, now: number): AlertRecord {
    const before = this.getAlert(alertId);
    const plan = alertActPlan(alertId, before, act);
    if (plan.set === null) return before!;
    const col = plan.set === 'acknowledged' ? 'acknowledged' : 'cleared';
    this.db.prepare(`UPDATE notifications SET ${col}_at = ?, ${col}_by = ? WHERE id = ?`).run(now, actor, alertId);
    this.audit.append(now, actor, `alert.${act}`, alertId, { kind: before!.kind, meterId: before!.meterId, before: before!.state, after: plan.set, note });
    return this.getAlert(alertId)!;
  }
}
