import { randomBytes } from 'node:crypto';
import type { WeatherPeriod } from '../domain/policy/calendar.js';
import type { MeterFlags, NoticeRecord } from '../domain/policy/meter-facts.js';
import { MeterlineError } from '../errors.js';
import { appendAudit } from './postgres-audit-log.js';
import type { Q } from './postgres-db.js';
import { noticeFromRow, parseFlags, refuseNoticeWithoutEvidence, weatherFromRow } from './sqlite-meter-facts.js';
import type { MeterFactsRow } from './store.js';

/**
 * Customer and meter facts (flags, notices, weather periods) on PostgreSQL: the same semantics
 * and error codes as sqlite-meter-facts.ts. Every function runs inside the caller's
 * transaction; those that change a meter's facts lock its row first.
 */
const newId = (prefix: string): string => `${prefix}_${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;

async function lockedFlags(q: Q, meterId: string): Promise<MeterFlags | undefined> {
  const r = await q.get('SELECT flags FROM meters WHERE meter_id = $1 FOR UPDATE', [meterId]);
  return r ? parseFlags(r.flags) : undefined;
}

export async function setFlags(q: Q, meterId: string, patch: Partial<MeterFlags>, actor: string, now: number): Promise<MeterFlags> {
  const before = await lockedFlags(q, meterId);
  if (!before) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered`, { meterId });
  const after: MeterFlags = { ...before, ...patch };
  if (after.prepaymentMode && !after.prepaymentAgreementRef) {
    throw new MeterlineError('E_NO_PREPAYMENT_AGREEMENT', `meter ${meterId} cannot be put in prepayment mode without a prepayment agreement on record (prepaymentAgreementRef) (DOMAIN.md rule 8)`, { meterId });
  }
  await q.run('UPDATE meters SET flags = $1, updated_at = $2 WHERE meter_id = $3', [JSON.stringify(after), now, meterId]);
  await appendAudit(q, now, actor, 'meter.flags', meterId, { before, after });
  return after;
}

export async function addNotice(q: Q, n: Omit<NoticeRecord, 'id' | 'recordedAt'>, now: number): Promise<NoticeRecord> {
  refuseNoticeWithoutEvidence(n);
  if (!(await q.get('SELECT 1 FROM meters WHERE meter_id = $1', [n.meterId]))) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${n.meterId} is not registered`, { meterId: n.meterId });
  const notice: NoticeRecord = { ...n, id: newId('ntc'), recordedAt: now };
  await q.run('INSERT INTO notices (id, meter_id, channel, served_at, delivery, receipt_ref, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
    notice.id,
    notice.meterId,
    notice.channel,
    notice.servedAt,
    notice.delivery,
    notice.receiptRef,
    notice.recordedBy,
    notice.recordedAt,
  ]);
  await appendAudit(q, now, n.recordedBy, 'meter.notice', n.meterId, { after: notice });
  return notice;
}

export async function notices(q: Q, meterId: string): Promise<NoticeRecord[]> {
  return (await q.all('SELECT * FROM notices WHERE meter_id = $1 ORDER BY served_at', [meterId])).map(noticeFromRow);
}

export async function importFacts(q: Q, rows: readonly MeterFactsRow[], actor: string, now: number): Promise<{ meters: number; notices: number }> {
  const ids = [...new Set(rows.map((r) => r.meterId))].sort();
  // Lock the meters in one order, so two imports (or an import and an admission) cannot deadlock.
  const known = new Set((await q.all('SELECT meter_id FROM meters WHERE meter_id = ANY($1::text[]) ORDER BY meter_id FOR UPDATE', [ids])).map((r) => r.meter_id as string));
  const missing = rows.map((r, i) => ({ row: i + 1, meterId: r.meterId })).filter((r) => !known.has(r.meterId));
  if (missing.length > 0) {
    throw new MeterlineError('E_IMPORT_INVALID', `${missing.length} row(s) name meters that are not registered; nothing was imported`, {
      errors: missing.slice(0, 200).map((m) => ({ row: m.row, field: 'meterId', problem: `meter ${m.meterId} is not registered` })),
    });
  }
  let count = 0;
  for (const r of rows) {
    if (r.region !== undefined) {
      const before = (await q.get('SELECT region FROM meters WHERE meter_id = $1', [r.meterId]))!.region as string;
      if (before !== r.region) {
        await q.run('UPDATE meters SET region = $1, updated_at = $2 WHERE meter_id = $3', [r.region, now, r.meterId]);
        await appendAudit(q, now, actor, 'meter.region', r.meterId, { before, after: r.region });
      }
    }
    if (r.flags && Object.keys(r.flags).length > 0) await setFlags(q, r.meterId, r.flags, actor, now);
    if (r.notice) {
      await addNotice(q, { ...r.notice, meterId: r.meterId, recordedBy: actor }, now);
      count++;
    }
  }
  return { meters: ids.length, notices: count };
}

export async function declareWeather(q: Q, p: Omit<WeatherPeriod, 'id'>, actor: string, now: number): Promise<WeatherPeriod> {
  const period: WeatherPeriod = { ...p, id: newId('wx') };
  await q.run('INSERT INTO weather_periods (id, kind, from_ms, to_ms, regions, declared_by, declared_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
    period.id,
    period.kind,
    period.from,
    period.to,
    period.regions ? JSON.stringify(period.regions) : null,
    actor,
    now,
  ]);
  await appendAudit(q, now, actor, 'policy.weather.declare', period.id, { after: period });
  return period;
}

export async function liftWeather(q: Q, id: string, actor: string, now: number): Promise<WeatherPeriod | undefined> {
  const r = await q.get('SELECT * FROM weather_periods WHERE id = $1 FOR UPDATE', [id]);
  if (!r) return undefined;
  const before = weatherFromRow(r);
  const to = Math.min(before.to, now);
  await q.run('UPDATE weather_periods SET to_ms = $1 WHERE id = $2', [to, id]);
  await appendAudit(q, now, actor, 'policy.weather.lift', id, { before, after: { ...before, to } });
  return { ...before, to };
}

/** Periods not yet over at `activeAt` (future ones included: they decide when a hold lifts). */
export async function weather(q: Q, activeAt?: number): Promise<WeatherPeriod[]> {
  const rows = activeAt === undefined ? await q.all('SELECT * FROM weather_periods ORDER BY from_ms') : await q.all('SELECT * FROM weather_periods WHERE to_ms > $1 ORDER BY from_ms', [activeAt]);
  return rows.map(weatherFromRow);
}
