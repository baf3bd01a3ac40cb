import { randomBytes } from 'node:crypto';
import type { WorkOrderPlan } from '../domain/escalation.js';
import type { SwitchAction } from '../domain/relay.js';
import { MeterlineError } from '../errors.js';
import { appendAudit } from './postgres-audit-log.js';
import { breakerFromRow, type Q } from './postgres-db.js';
import { alertActPlan, alertFromRow, workOrderFromRow, workOrderPayload } from './store-rows.js';
import type { AlertAct, AlertRecord, AttemptStatsRow, BreakerScope, CircuitBreaker, FieldOutcome, OrderOutcomeRow, WorkOrder, WorkOrderStatus } from './store.js';

/**
 * Field work orders (DOMAIN.md rule 11), success-rate facts and circuit breakers (rule 16) on PostgreSQL: the
 * same semantics as sqlite-work-orders.ts. Every function runs inside the caller's transaction.
 */
const newId = (prefix: string, now: number): string => `${prefix}_${now.toString(36)}${randomBytes(5).toString('hex')}`;

export async function notify(q: Q, kind: string, meterId: string, orderId: string | null, payload: Record<string, unknown>, now: number, id = newId('ntf', now)): Promise<void> {
  await q.run('INSERT INTO notifications (id, kind, meter_id, order_id, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
    id,
    kind,
    meterId,
    orderId,
    JSON.stringify(payload),
    now,
    now,
  ]);
}

export async function getWorkOrder(q: Q, id: string, lock = false): Promise<WorkOrder | undefined> {
  const r = await q.get(`SELECT * FROM work_orders WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
  return r ? workOrderFromRow(r) : undefined;
}

async function openFor(q: Q, orderId: string): Promise<WorkOrder | undefined> {
  const r = await q.get(`SELECT * FROM work_orders WHERE order_id = $1 AND status IN ('open', 'assigned')`, [orderId]);
  return r ? workOrderFromRow(r) : undefined;
}

/** Raise a work order for the order (once; an open one is returned as is). The caller holds the order's lock. */
export async function raiseWorkOrder(q: Q, order: { id: string; meterId: string; action: SwitchAction; deadline: number | null }, region: string, plan: WorkOrderPlan, now: number): Promise<WorkOrder> {
  const existing = await openFor(q, order.id);
  if (existing) return existing;
  const woId = newId('wo', now);
  await q.run(
    `INSERT INTO work_orders (id, order_id, kind, meter_id, region, action, reason, raised_at, due_at, deadline, priority, status, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12)`,
    [woId, order.id, plan.kind ?? 'switch_order', order.meterId, region, order.action, plan.reason, now, plan.dueAt, order.deadline, plan.priority, now],
  );
  await q.run('UPDATE orders SET escalated_at = COALESCE(escalated_at, $1) WHERE id = $2', [now, order.id]);
  const wo = (await getWorkOrder(q, woId))!;
  await notify(q, 'work_order.created', order.meterId, order.id, workOrderPayload(wo), now);
  await appendAudit(q, now, 'gateway', 'work_order.raise', order.meterId, { after: workOrderPayload(wo) });
  return wo;
}

/** Cancel the order's open work order (the meter was restored remotely, or the order ended otherwise). */
export async function cancelWorkOrderFor(q: Q, orderId: string, why: string, now: number): Promise<WorkOrder | undefined> {
  const wo = await openFor(q, orderId);
  if (!wo) return undefined;
  await q.run(`UPDATE work_orders SET status = 'cancelled', note = $1, completed_at = $2, updated_at = $2 WHERE id = $3`, [why, now, wo.id]);
  const after = (await getWorkOrder(q, wo.id))!;
  await notify(q, 'work_order.cancelled', wo.meterId, orderId, workOrderPayload(after), now);
  await appendAudit(q, now, 'gateway', 'work_order.cancel', wo.meterId, { before: { status: wo.status }, after: { status: 'cancelled', why } });
  return after;
}

export async function listWorkOrders(q: Q, query: { status?: WorkOrderStatus; region?: string; orderId?: string; limit: number }): Promise<WorkOrder[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (query.status) (args.push(query.status), where.push(`status = $${args.length}`));
  if (query.region) (args.push(query.region), where.push(`region = $${args.length}`));
  if (query.orderId) (args.push(query.orderId), where.push(`order_id = $${args.length}`));
  args.push(query.limit);
  const sql = `SELECT * FROM work_orders ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY priority, due_at LIMIT $${args.length}`;
  return (await q.all(sql, args)).map(workOrderFromRow);
}

export async function assignWorkOrder(q: Q, id: string, assignee: string, actor: string, now: number): Promise<WorkOrder> {
  const wo = await getWorkOrder(q, id, true);
  if (!wo) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${id} does not exist`);
  if (wo.status !== 'open' && wo.status !== 'assigned') throw new MeterlineError('E_WORK_ORDER_STATE', `work order ${id} is ${wo.status}`);
  await q.run(`UPDATE work_orders SET status = 'assigned', assigned_to = $1, assigned_at = $2, updated_at = $2 WHERE id = $3`, [assignee, now, id]);
  const after = (await getWorkOrder(q, id))!;
  await appendAudit(q, now, actor, 'work_order.assign', wo.meterId, { workOrderId: id, before: { status: wo.status, assignedTo: wo.assignedTo }, after: { status: 'assigned', assignedTo: assignee } });
  return after;
}

/** Close the work order with the crew's outcome (the caller settles the switch order, and holds its locks). */
export async function completeWorkOrder(q: Q, id: string, outcome: FieldOutcome, note: string | null, actor: string, now: number): Promise<WorkOrder> {
  const wo = await getWorkOrder(q, id, true);
  if (!wo) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${id} does not exist`);
  if (wo.status !== 'open' && wo.status !== 'assigned') throw new MeterlineError('E_WORK_ORDER_STATE', `work order ${id} is already ${wo.status}`);
  await q.run(`UPDATE work_orders SET status = 'done', outcome = $1, note = $2, completed_at = $3, updated_at = $3 WHERE id = $4`, [outcome, note, now, id]);
  const after = (await getWorkOrder(q, id))!;
  await appendAudit(q, now, actor, 'work_order.complete', wo.meterId, { workOrderId: id, before: { status: wo.status }, after: { status: 'done', outcome, note } });
  return after;
}

export async function attemptStats(q: Q, since: number): Promise<AttemptStatsRow[]> {
  return (await q.all(
    `SELECT m.profile_id AS "profileId", m.link AS link, m.region AS region, o.action AS action,
            COUNT(*) AS attempts, COUNT(*) FILTER (WHERE a.outcome = 'ok') AS ok,
            COUNT(*) FILTER (WHERE a.attempt = 1) AS "firstAttempts", COUNT(*) FILTER (WHERE a.attempt = 1 AND a.outcome = 'ok') AS "firstOk",
            COUNT(DISTINCT o.meter_id) FILTER (WHERE a.outcome <> 'ok') AS "failedMeters"
     FROM attempts a JOIN orders o ON o.id = a.order_id JOIN meters m ON m.meter_id = o.meter_id
     WHERE a.ended_at >= $1 AND a.outcome IS NOT NULL AND a.outcome <> 'interrupted'
     GROUP BY m.profile_id, m.link, m.region, o.action`,
    [since],
  )) as unknown as AttemptStatsRow[];
}

export async function orderOutcomeStats(q: Q, since: number): Promise<OrderOutcomeRow[]> {
  return (await q.all(
    `SELECT m.profile_id AS "profileId", m.link AS link, m.region AS region, o.action AS action,
            COUNT(*) AS finished, COUNT(*) FILTER (WHERE o.state IN ('done', 'armed') AND o.escalated_at IS NULL) AS succeeded,
            COUNT(DISTINCT o.meter_id) FILTER (WHERE NOT (o.state IN ('done', 'armed') AND o.escalated_at IS NULL)) AS "failedMeters"
     FROM orders o JOIN meters m ON m.meter_id = o.meter_id
     WHERE (o.completed_at >= $1 AND o.state IN ('done', 'armed', 'failed', 'done_by_field')) OR (o.escalated_at >= $1 AND o.state = 'escalated')
     GROUP BY m.profile_id, m.link, m.region, o.action`,
    [since],
  )) as unknown as OrderOutcomeRow[];
}

export async function openBreaker(q: Q, scope: BreakerScope, key: string, action: SwitchAction, reason: string, now: number): Promise<CircuitBreaker | undefined> {
  // One breaker per population even when two instances see the collapse at once.
  await q.run('SELECT pg_advisory_xact_lock(hashtext($1))', [`meterline:breaker:${scope}:${key}:${action}`]);
  if (await q.get('SELECT 1 FROM breakers WHERE scope = $1 AND key = $2 AND action = $3 AND reset_at IS NULL', [scope, key, action])) return undefined;
  const bid = newId('brk', now);
  await q.run('INSERT INTO breakers (id, scope, key, action, opened_at, reason) VALUES ($1, $2, $3, $4, $5, $6)', [bid, scope, key, action, now, reason]);
  const b = breakerFromRow((await q.get('SELECT * FROM breakers WHERE id = $1', [bid]))!);
  await notify(q, 'alert.circuit_open', '-', null, { breakerId: bid, scope, key, action, reason, openedAt: new Date(now).toISOString() }, now);
  await appendAudit(q, now, 'gateway', 'breaker.open', `${scope}:${key}`, { after: b });
  return b;
}

export async function listBreakers(q: Q, openOnly: boolean): Promise<CircuitBreaker[]> {
  const rows = openOnly ? await q.all('SELECT * FROM breakers WHERE reset_at IS NULL ORDER BY opened_at') : await q.all('SELECT * FROM breakers ORDER BY opened_at DESC LIMIT 500');
  return rows.map(breakerFromRow);
}

export async function resetBreaker(q: Q, id: string, actor: string, now: number): Promise<CircuitBreaker | undefined> {
  const r = await q.get('SELECT * FROM breakers WHERE id = $1 FOR UPDATE', [id]);
  if (!r) return undefined;
  const before = breakerFromRow(r);
  if (before.resetAt === null) {
    await q.run('UPDATE breakers SET reset_at = $1, reset_by = $2 WHERE id = $3', [now, actor, id]);
    await appendAudit(q, now, actor, 'breaker.reset', `${before.scope}:${before.key}`, { before, after: { ...before, resetAt: now, resetBy: actor } });
  }
  return breakerFromRow((await q.get('SELECT * FROM breakers WHERE id = $1', [id]))!);
}

export async function getAlert(q: Q, id: string, lock = false): Promise<AlertRecord | undefined> {
  const r = await q.get(`SELECT * FROM notifications WHERE id = $1 AND kind LIKE 'alert.%'${lock ? ' FOR UPDATE' : ''}`, [id]);
  return r ? alertFromRow(r) : undefined;
}

export async function actOnAlert(q: Q, id: string, act: AlertAct, note: string | null, actor: string, now: number): Promise<AlertRecord> {
  const before = await getAlert(q, id, true);
  const plan = alertActPlan(id, before, act);
  if (plan.set === null) return before!;
  const col = plan.set === 'acknowledged' ? 'acknowledged' : 'cleared';
  await q.run(`UPDATE notifications SET ${col}_at = $1, ${col}_by = $2 WHERE id = $3`, [now, actor, id]);
  await appendAudit(q, now, actor, `alert.${act}`, id, { kind: before!.kind, meterId: before!.meterId, before: before!.state, after: plan.set, note });
  return (await getAlert(q, id))!;
}
