import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { WeatherPeriod } from '../domain/policy/calendar.js';
import { DEFAULT_FLAGS, deliveredNoticeProblem, type MeterFlags, type NoticeRecord } from '../domain/policy/meter-facts.js';
import { MeterlineError } from '../errors.js';
import type { SqliteAuditLog } from './sqlite-audit-log.js';
import type { MeterFactsRow } from './store.js';

/**
 * Customer and meter facts the disconnect rules read: protection flags, notices with their delivery evidence,
 * and declared extreme-weather periods. Every change is audited with its before and after. Synchronous: the
 * SQLite store calls these inside its transactions.
 */

type Row = Record<string, unknown>;
const newId = (prefix: string): string => `${prefix}_${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;

export function parseFlags(text: unknown): MeterFlags {
  if (typeof text !== 'string' || text === '') return { ...DEFAULT_FLAGS };
  return { ...DEFAULT_FLAGS, ...(JSON.parse(text) as Partial<MeterFlags>) };
}

export function noticeFromRow(r: Row): NoticeRecord {
  return {
    id: r.id as string,
    meterId: r.meter_id as string,
    channel: r.channel as NoticeRecord['channel'],
    servedAt: r.served_at as number,
    delivery: r.delivery as NoticeRecord['delivery'],
    receiptRef: (r.receipt_ref as string | null) ?? null,
    recordedBy: r.recorded_by as string,
    recordedAt: r.recorded_at as number,
  };
}

export function weatherFromRow(r: Row): WeatherPeriod {
  return { id: r.id as string, kind: r.kind as string, from: r.from_ms as number, to: r.to_ms as number, regions: r.regions ? (JSON.parse(r.regions as string) as string[]) : null };
}

export class SqliteMeterFacts {
  constructor(
    private readonly db: Database.Database,
    private readonly audit: SqliteAuditLog,
    /** Told of every meter row this part changes (the store's meter-row cache forgets it). */
    private readonly meterWritten: (meterId: string) => void = () => {},
  ) {}

  flags(meterId: string): MeterFlags | undefined {
    const r = this.db.prepare('SELECT flags FROM meters WHERE meter_id = ?').get(meterId) as { flags: string | null } | undefined;
    return r ? parseFlags(r.flags) : undefined;
  }

  setFlags(meterId: string, patch: Partial<MeterFlags>, actor: string, now: number): MeterFlags {
    const before = this.flags(meterId);
    if (!before) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered`, { meterId });
    const after: MeterFlags = { ...before, ...patch };
    if (after.prepaymentMode && !after.prepaymentAgreementRef) {
      throw new MeterlineError('E_NO_PREPAYMENT_AGREEMENT', `meter ${meterId} cannot be put in prepayment mode without a prepayment agreement on record (prepaymentAgreementRef) (DOMAIN.md rule 8)`, { meterId });
    }
    this.db.prepare('UPDATE meters SET flags = ?, updated_at = ? WHERE meter_id = ?').run(JSON.stringify(after), now, meterId);
    this.meterWritten(meterId);
    this.audit.append(now, actor, 'meter.flags', meterId, { before, after });
    return after;
  }

  addNotice(n: Omit<NoticeRecord, 'id' | 'recordedAt'>, now: number): NoticeRecord {
    refuseNoticeWithoutEvidence(n);
    if (!this.flags(n.meterId)) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${n.meterId} is not registered`, { meterId: n.meterId });
    const notice: NoticeRecord = { ...n, id: newId('ntc'), recordedAt: now };
    this.db
      .prepare('INSERT INTO notices (id, meter_id, channel, served_at, delivery, receipt_ref, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(notice.id, notice.meterId, notice.channel, notice.servedAt, notice.delivery, notice.receiptRef, notice.recordedBy, notice.recordedAt);
    this.audit.append(now, n.recordedBy, 'meter.notice', n.meterId, { after: notice });
    return notice;
  }

  notices(meterId: string): NoticeRecord[] {
    return (this.db.prepare('SELECT * FROM notices WHERE meter_id = ? ORDER BY served_at').all(meterId) as Row[]).map(noticeFromRow);
  }

  import(rows: readonly MeterFactsRow[], actor: string, now: number): { meters: number; notices: number } {
    const known = this.db.prepare('SELECT 1 FROM meters WHERE meter_id = ?');
    const missing = rows.map((r, i) => ({ row: i + 1, meterId: r.meterId })).filter((r) => !known.get(r.meterId));
    if (missing.length > 0) {
      throw new MeterlineError('E_IMPORT_INVALID', `${missing.length} row(s) name meters that are not registered; nothing was imported`, {
        errors: missing.slice(0, 200).map((m) => ({ row: m.row, field: 'meterId', problem: `meter ${m.meterId} is not registered` })),
      });
    }
    let notices = 0;
    const setRegion = this.db.prepare('UPDATE meters SET region = ?, updated_at = ? WHERE meter_id = ?');
    for (const r of rows) {
      if (r.region !== undefined) {
        const before = (this.db.prepare('SELECT region FROM meters WHERE meter_id = ?').get(r.meterId) as { region: string }).region;
        if (before !== r.region) {
          setRegion.run(r.region, now, r.meterId);
          this.meterWritten(r.meterId);
          this.audit.append(now, actor, 'meter.region', r.meterId, { before, after: r.region });
        }
      }
      if (r.flags && Object.keys(r.flags).length > 0) this.setFlags(r.meterId, r.flags, actor, now);
      if (r.notice) {
        this.addNotice({ ...r.notice, meterId: r.meterId, recordedBy: actor }, now);
        notices++;
      }
    }
    return { meters: new Set(rows.map((r) => r.meterId)).size, notices };
  }

  declareWeather(p: Omit<WeatherPeriod, 'id'>, actor: string, now: number): WeatherPeriod {
    const period: WeatherPeriod = { ...p, id: newId('wx') };
    this.db
      .prepare('INSERT INTO weather_periods (id, kind, from_ms, to_ms, regions, declared_by, declared_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(period.id, period.kind, period.from, period.to, period.regions ? JSON.stringify(period.regions) : null, actor, now);
    this.audit.append(now, actor, 'policy.weather.declare', period.id, { after: period });
    return period;
  }

  liftWeather(id: string, actor: string, now: number): WeatherPeriod | undefined {
    const r = this.db.prepare('SELECT * FROM weather_periods WHERE id = ?').get(id) as Row | undefined;
    if (!r) return undefined;
    const before = weatherFromRow(r);
    const to = Math.min(before.to, now);
    this.db.prepare('UPDATE weather_periods SET to_ms = ? WHERE id = ?').run(to, id);
    this.audit.append(now, actor, 'policy.weather.lift', id, { before, after: { ...before, to } });
    return { ...before, to };
  }

  /** Periods not yet over at `activeAt` (future ones included: they decide when a hold lifts). */
  weather(activeAt?: number): WeatherPeriod[] {
    const rows = (activeAt === undefined
      ? this.db.prepare('SELECT * FROM weather_periods ORDER BY from_ms').all()
      : this.db.prepare('SELECT * FROM weather_periods WHERE to_ms > ? ORDER BY from_ms').all(activeAt)) as Row[];
    return rows.map(weatherFromRow);
  }
}

/** Rule 1: a notice recorded as delivered without its reference is refused at input, whatever path it comes by. */
export function refuseNoticeWithoutEvidence(n: Pick<NoticeRecord, 'meterId' | 'channel' | 'delivery' | 'receiptRef'>): void {
  const problem = deliveredNoticeProblem(n);
  if (problem) throw new MeterlineError('E_NOTICE_NO_EVIDENCE', `notice for meter ${n.meterId} refused: ${problem}; record it as "unknown" or "failed" until you have it`, { meterId: n.meterId, channel: n.channel });
}
