import { randomBytes } from 'node:crypto';
import { continuesEpisode, type EpisodeKind } from '../domain/alert-episodes.js';
import { MeterlineError } from '../errors.js';
import { episodeFromRow, meterSwapFromRow, workOrderFromRow, workOrderPayload, type Row } from './store-rows.js';
import type { WorkOrderPlan } from '../domain/escalation.js';
import type { AlertEpisode, EpisodeClaim, MeterSwap, WorkOrder } from './store.js';

/**
 * Writes described once for both stores (STYLE.md: "statements built from one description"). A script is a
 * generator that yields the steps of one transaction and gets each statement's rows back; each store runs it its
 * own way: SQLite synchronously inside its write batch, PostgreSQL awaiting each statement inside a transaction
 * that it runs again on a deadlock. Only the dialect differs: SQL is written with `?` placeholders (numbered for
 * PostgreSQL by `pgPlaceholders`), the audit chain is each store's own, and a `lock` step is a transaction-scoped
 * advisory lock on PostgreSQL and nothing on SQLite (whose single writer already serialises writes).
 */
export type Step =
  | { sql: string; args: readonly unknown[] }
  | { lock: string }
  | { audit: { at: number; actor: string; action: string; target: string; details: unknown } };

export type Script<T> = Generator<Step, T, Row[]>;

/** `?` placeholders as PostgreSQL's `$1, $2, …` (shared statements carry no `?` inside literals). */
export function pgPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

export function runScriptSync<T>(script: Script<T>, run: (step: Step) => Row[]): T {
  for (let next = script.next(); ; ) {
    if (next.done) return next.value;
    next = script.next(run(next.value));
  }
}

export async function runScriptAsync<T>(script: Script<T>, run: (step: Step) => Promise<Row[]>): Promise<T> {
  for (let next = script.next(); ; ) {
    if (next.done) return next.value;
    next = script.next(await run(next.value));
  }
}

export const sql = (text: string, ...args: unknown[]): Step => ({ sql: text, args });
/** A LIKE pattern for names starting with `prefix`, its `_` and `%` taken literally (escaped with a backslash). */
const startsWith = (prefix: string): string => `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
const newId = (prefix: string, now: number): string => `${prefix}_${now.toString(36)}${randomBytes(5).toString('hex')}`;

function* notify(kind: string, meterId: string, orderId: string | null, payload: Record<string, unknown>, now: number): Script<void> {
  yield sql('INSERT INTO notifications (id, kind, meter_id, order_id, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)', newId('ntf', now), kind, meterId, orderId, JSON.stringify(payload), now, now);
}

/**
 * Revise the switch order's open work order to a plan found after it was raised (a close refused for voltage on the
 * load side, rule 14): its kind and reason become the plan's, its priority and due time the more urgent of the two.
 * Told to the field-service system (`work_order.updated`) and audited with before and after. Nothing open: nothing.
 */
export function* reviseOpenWorkOrder(orderId: string, plan: WorkOrderPlan, now: number): Script<WorkOrder | undefined> {
  const [row] = yield sql(`SELECT * FROM work_orders WHERE order_id = ? AND status IN ('open', 'assigned')`, orderId);
  if (!row) return undefined;
  const before = workOrderFromRow(row);
  yield sql(
    'UPDATE work_orders SET kind = ?, reason = ?, priority = ?, due_at = ?, updated_at = ? WHERE id = ?',
    plan.kind ?? before.kind,
    plan.reason,
    Math.min(before.priority, plan.priority),
    Math.min(before.dueAt, plan.dueAt),
    now,
    before.id,
  );
  const [revised] = yield sql('SELECT * FROM work_orders WHERE id = ?', before.id);
  const after = workOrderFromRow(revised!);
  yield* notify('work_order.updated', after.meterId, orderId, workOrderPayload(after), now);
  yield { audit: { at: now, actor: 'gateway', action: 'work_order.revise', target: after.meterId, details: { before: workOrderPayload(before), after: workOrderPayload(after) } } };
  return after;
}

function* getEpisode(id: string): Script<AlertEpisode> {
  const [row] = yield sql('SELECT * FROM episodes WHERE id = ?', id);
  return episodeFromRow(row!);
}

/** An inspection work order: no switch order behind it (rule 17), told to the field-service system and audited. */
function* raiseInspection(meterId: string, plan: NonNullable<EpisodeClaim['inspection']>, now: number): Script<WorkOrder> {
  const id = newId('wo', now);
  yield sql(
    `INSERT INTO work_orders (id, order_id, kind, meter_id, region, action, reason, raised_at, due_at, deadline, priority, status, updated_at)
     VALUES (?, NULL, 'inspection', ?, ?, 'inspect', ?, ?, ?, NULL, ?, 'open', ?)`,
    id,
    meterId,
    plan.region,
    plan.reason,
    now,
    plan.dueAt,
    plan.priority,
    now,
  );
  const [row] = yield sql('SELECT * FROM work_orders WHERE id = ?', id);
  const wo = workOrderFromRow(row!);
  yield* notify('work_order.created', meterId, null, workOrderPayload(wo), now);
  yield { audit: { at: now, actor: 'gateway', action: 'work_order.raise', target: meterId, details: { after: workOrderPayload(wo) } } };
  return wo;
}

/** GatewayStore.claimEpisode: continue the open episode, or open a new one with its alert (and inspection). */
export function* claimEpisode(claim: EpisodeClaim, now: number): Script<{ episode: AlertEpisode; opened: boolean }> {
  yield { lock: `meterline:episode:${claim.meterId}:${claim.kind}` };
  const [openRow] = yield sql('SELECT * FROM episodes WHERE meter_id = ? AND kind = ? AND ended_at IS NULL', claim.meterId, claim.kind);
  const open = openRow ? episodeFromRow(openRow) : undefined;
  if (open && continuesEpisode(open, claim, claim.continues)) {
    // The latest evidence describes the episode (its end, its rate); an older sighting changes nothing.
    if (claim.to > open.to) {
      yield sql('UPDATE episodes SET to_at = ?, wh_per_hour = ?, message = ?, details = ? WHERE id = ?', claim.to, claim.whPerHour, claim.message, JSON.stringify(claim.details), open.id);
    }
    return { episode: yield* getEpisode(open.id), opened: false };
  }
  if (open) yield sql('UPDATE episodes SET ended_at = ? WHERE id = ?', now, open.id);
  const id = newId('epi', now);
  yield sql(
    `INSERT INTO episodes (id, meter_id, kind, opened_at, from_at, to_at, wh_per_hour, message, details, ended_at, work_order_id)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
    id,
    claim.meterId,
    claim.kind,
    now,
    claim.from,
    claim.to,
    claim.whPerHour,
    claim.message,
    JSON.stringify(claim.details),
  );
  let workOrderId: string | null = null;
  if (claim.inspection) {
    workOrderId = (yield* raiseInspection(claim.meterId, claim.inspection, now)).id;
    yield sql('UPDATE episodes SET work_order_id = ? WHERE id = ?', workOrderId, id);
  }
  yield* notify(claim.alert.kind, claim.meterId, null, { ...claim.alert.payload, episodeId: id, workOrderId }, now);
  return { episode: yield* getEpisode(id), opened: true };
}

/** GatewayStore.endEpisodes. */
export function* endEpisodes(kindPrefix: string, keep: readonly { meterId: string; kind: EpisodeKind }[], now: number): Script<AlertEpisode[]> {
  const kept = new Set(keep.map((k) => `${k.meterId}\u0000${k.kind}`));
  const open = (yield sql(`SELECT * FROM episodes WHERE ended_at IS NULL AND kind LIKE ? ESCAPE '\\' ORDER BY opened_at`, startsWith(kindPrefix))).map(episodeFromRow);
  const ended: AlertEpisode[] = [];
  for (const e of open) {
    if (kept.has(`${e.meterId}\u0000${e.kind}`)) continue;
    yield sql('UPDATE episodes SET ended_at = ? WHERE id = ? AND ended_at IS NULL', now, e.id);
    ended.push({ ...e, endedAt: now });
  }
  return ended;
}

/** GatewayStore.listEpisodes (newest first). */
export function* listEpisodes(q: { meterId?: string; kindPrefix?: string; openOnly?: boolean; limit: number }): Script<AlertEpisode[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.meterId !== undefined) (where.push('meter_id = ?'), args.push(q.meterId));
  if (q.kindPrefix !== undefined) (where.push(`kind LIKE ? ESCAPE '\\'`), args.push(startsWith(q.kindPrefix)));
  if (q.openOnly) where.push('ended_at IS NULL');
  const rows = yield sql(`SELECT * FROM episodes ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY opened_at DESC, id DESC LIMIT ?`, ...args, q.limit);
  return rows.map(episodeFromRow);
}

/** GatewayStore.recordMeterSwap. */
export function* recordMeterSwap(swap: Omit<MeterSwap, 'id' | 'recordedAt'>, now: number): Script<MeterSwap> {
  const [meter] = yield sql('SELECT meter_id FROM meters WHERE meter_id = ?', swap.meterId);
  if (!meter) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${swap.meterId} is not registered`);
  const id = newId('swp', now);
  yield sql(
    `INSERT INTO meter_swaps (id, meter_id, at, old_final_wh, new_first_wh, new_serial, reference, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    id,
    swap.meterId,
    swap.at,
    swap.oldFinalWh,
    swap.newFirstWh,
    swap.newSerial,
    swap.reference,
    swap.recordedBy,
    now,
  );
  const [row] = yield sql('SELECT * FROM meter_swaps WHERE id = ?', id);
  const recorded = meterSwapFromRow(row!);
  yield { audit: { at: now, actor: swap.recordedBy, action: 'meter.swap', target: swap.meterId, details: { after: { ...recorded, at: new Date(recorded.at).toISOString() } } } };
  return recorded;
}

/** GatewayStore.listMeterSwaps (oldest first). */
export function* listMeterSwaps(meterId: string, limit: number): Script<MeterSwap[]> {
  const rows = yield sql('SELECT * FROM meter_swaps WHERE meter_id = ? ORDER BY at DESC, recorded_at DESC LIMIT ?', meterId, limit);
  return rows.map(meterSwapFromRow).reverse();
}
