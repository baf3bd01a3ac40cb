import { randomBytes } from 'node:crypto';
import type { PlanFacts } from '../domain/policy/meter-facts.js';
import { MeterlineError } from '../errors.js';
import { appendAudit } from './postgres-audit-log.js';
import type { Q } from './postgres-db.js';
import { planFromRows, planOrderRequests } from './store-rows.js';
import type { OrderRequest, PlanDraft, PlanView, SubmitContext, SubmitOutcome } from './store.js';

/**
 * Disconnect plans, maker–checker (DOMAIN.md rule 7), on PostgreSQL: the same semantics as sqlite-plans.ts.
 * A decision locks the plan's row, so two supervisors deciding at once are applied one after the other.
 */
export interface PlanHooks {
  submit: (q: Q, requests: readonly OrderRequest[], ctx: SubmitContext) => Promise<SubmitOutcome[]>;
  /** Tell the change feed about an order this module moved itself. */
  orderChanged: (q: Q, orderId: string, at: number) => Promise<void>;
}

export async function planFacts(q: Q, planId: string): Promise<PlanFacts | undefined> {
  const r = await q.get('SELECT id, status, window_from, window_to FROM plans WHERE id = $1', [planId]);
  return r ? { id: r.id as string, status: r.status as PlanFacts['status'], windowFrom: r.window_from as number, windowTo: r.window_to as number } : undefined;
}

export async function createPlan(q: Q, draft: PlanDraft, actor: string, now: number): Promise<PlanView> {
  if (draft.windowTo <= draft.windowFrom) throw new MeterlineError('E_VALIDATION', 'the plan window must end after it starts');
  const known = new Set((await q.all('SELECT meter_id FROM meters WHERE meter_id = ANY($1::text[])', [draft.meterIds])).map((r) => r.meter_id as string));
  const missing = draft.meterIds.map((meterId, index) => ({ index, meterId })).filter((m) => !known.has(m.meterId));
  if (missing.length > 0) throw new MeterlineError('E_METER_NOT_FOUND', `${missing.length} meter(s) in the plan are not registered; nothing was created`, { missing: missing.slice(0, 100) });
  const dupes = draft.meterIds.filter((m, i) => draft.meterIds.indexOf(m) !== i);
  if (dupes.length > 0) throw new MeterlineError('E_VALIDATION', `meters listed twice in the plan: ${[...new Set(dupes)].slice(0, 20).join(', ')}`);
  const id = `plan_${now.toString(36)}${randomBytes(4).toString('hex')}`;
  await q.run('INSERT INTO plans (id, reason, note, author, created_at, window_from, window_to, status, limit_w) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)', [
    id,
    draft.reason,
    draft.note,
    actor,
    now,
    draft.windowFrom,
    draft.windowTo,
    'draft',
    draft.limitW ?? null,
  ]);
  await q.run('INSERT INTO plan_meters (plan_id, position, meter_id) SELECT $1, p - 1, m FROM unnest($2::text[]) WITH ORDINALITY AS t(m, p)', [id, draft.meterIds]);
  await appendAudit(q, now, actor, 'plan.draft', id, { after: { reason: draft.reason, limitW: draft.limitW ?? null, windowFrom: draft.windowFrom, windowTo: draft.windowTo, meters: draft.meterIds.length, note: draft.note } });
  return (await getPlan(q, id))!;
}

export async function getPlan(q: Q, planId: string, lock = false): Promise<PlanView | undefined> {
  const r = await q.get(`SELECT * FROM plans WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [planId]);
  if (!r) return undefined;
  const items = await q.all(
    `SELECT pm.meter_id, pm.order_id, o.state, o.state_reason FROM plan_meters pm LEFT JOIN orders o ON o.id = pm.order_id
     WHERE pm.plan_id = $1 ORDER BY pm.position`,
    [planId],
  );
  return planFromRows(r, items);
}

export async function listPlans(q: Q, status?: PlanFacts['status']): Promise<PlanView[]> {
  const ids = status ? await q.all('SELECT id FROM plans WHERE status = $1 ORDER BY created_at DESC LIMIT 200', [status]) : await q.all('SELECT id FROM plans ORDER BY created_at DESC LIMIT 200');
  const out: PlanView[] = [];
  for (const r of ids) out.push((await getPlan(q, r.id as string))!);
  return out;
}

export async function decidePlan(q: Q, hooks: PlanHooks, planId: string, decision: 'approve' | 'reject' | 'cancel', actor: string, ctx: SubmitContext): Promise<PlanView> {
  const plan = await getPlan(q, planId, true);
  if (!plan) throw new MeterlineError('E_PLAN_NOT_FOUND', `plan ${planId} does not exist`);
  const now = ctx.now;
  if (decision === 'cancel') {
    if (plan.status === 'cancelled' || plan.status === 'rejected') throw new MeterlineError('E_PLAN_STATE', `plan ${planId} is already ${plan.status}`);
    await q.run('UPDATE plans SET status = $1, decided_by = COALESCE(decided_by, $2), decided_at = COALESCE(decided_at, $3) WHERE id = $4', ['cancelled', actor, now, planId]);
    // Open orders of the plan end now; one on the wire is refused by the gate before any retry.
    // Their meters are locked first (the order every change to an order takes its locks in).
    const meters = await q.all(`SELECT DISTINCT meter_id FROM orders WHERE plan_id = $1 AND state IN ('queued', 'held') ORDER BY meter_id`, [planId]);
    await q.all('SELECT 1 FROM meters WHERE meter_id = ANY($1::text[]) ORDER BY meter_id FOR UPDATE', [meters.map((m) => m.meter_id)]);
    const open = await q.all(`SELECT id, state FROM orders WHERE plan_id = $1 AND state IN ('queued', 'held') ORDER BY seq FOR UPDATE`, [planId]);
    let cancelled = 0;
    for (const o of open) {
      const why = `plan ${planId} cancelled by ${actor}`;
      if ((await q.run(`UPDATE orders SET state = 'cancelled', state_reason = $1, updated_at = $2, completed_at = $2 WHERE id = $3 AND state = $4`, [why, now, o.id, o.state])) !== 1) continue;
      await q.run('INSERT INTO order_events (order_id, at, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5)', [o.id, now, o.state, 'cancelled', why]);
      await hooks.orderChanged(q, o.id as string, now);
      cancelled++;
    }
    await appendAudit(q, now, actor, 'plan.cancel', planId, { before: { status: plan.status }, after: { status: 'cancelled', ordersCancelled: cancelled } });
    return (await getPlan(q, planId))!;
  }
  if (plan.status !== 'draft') throw new MeterlineError('E_PLAN_STATE', `plan ${planId} is ${plan.status}; only a draft can be approved or rejected`);
  if (plan.author === actor) {
    throw new MeterlineError('E_SELF_APPROVAL', `plan ${planId} was drafted by ${actor}; another supervisor must ${decision} it (maker–checker, DOMAIN.md rule 7)`);
  }
  if (decision === 'reject') {
    await q.run('UPDATE plans SET status = $1, decided_by = $2, decided_at = $3 WHERE id = $4', ['rejected', actor, now, planId]);
    await appendAudit(q, now, actor, 'plan.reject', planId, { before: { status: 'draft' }, after: { status: 'rejected' } });
    return (await getPlan(q, planId))!;
  }
  await q.run('UPDATE plans SET status = $1, decided_by = $2, decided_at = $3 WHERE id = $4', ['approved', actor, now, planId]);
  const requests = planOrderRequests(plan, actor, now);
  const outcomes = await hooks.submit(q, requests, ctx);
  await q.run(
    'UPDATE plan_meters pm SET order_id = t.order_id FROM unnest($2::text[]) WITH ORDINALITY AS t(order_id, p) WHERE pm.plan_id = $1 AND pm.position = t.p - 1',
    [planId, outcomes.map((o) => o.order.id)],
  );
  await appendAudit(q, now, actor, 'plan.approve', planId, { before: { status: 'draft' }, after: { status: 'approved', orders: outcomes.length } });
  return (await getPlan(q, planId))!;
}
