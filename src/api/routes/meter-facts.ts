import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { parseCsv } from '../../csv-parse-lazy.js';
import { z } from 'zod';
import { deliveredNoticeProblem, NOTICE_CHANNELS, NOTICE_DELIVERY } from '../../domain/policy/meter-facts.js';
import { MeterlineError } from '../../errors.js';
import type { MeterFactsRow } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { bulkBodyLimit, MAX_JSON_DEPTH } from '../request-body.js';
import { ErrorView, IdempotencyHeaders, MeterIdParam } from '../schemas.js';

/**
 * Customer and meter facts the disconnect rules depend on: protection flags, protected mode, prepayment
 * agreement, load limiter (DOMAIN.md 6, 8, 9, 10), notices with delivery evidence (rule 1), and a bulk import
 * (JSON or CSV) that is validated row by row and applied all or nothing.
 */

const iso = z.iso.datetime({ offset: true });

export const FlagsPatch = z
  .object({
    vulnerable: z.boolean(),
    medicalEquipment: z.boolean(),
    priorityRegister: z.boolean(),
    protectedMode: z.boolean(),
    prepaymentMode: z.boolean(),
    prepaymentAgreementRef: z.string().min(1).max(100).nullable(),
    hasLoadLimiter: z.boolean(),
    loadLimitedSince: iso.nullable(),
  })
  .partial()
  .strict()
  .meta({ examples: [{ medicalEquipment: true }, { prepaymentMode: true, prepaymentAgreementRef: 'PPA-2026-0042' }] });

export const FlagsView = z.object({
  vulnerable: z.boolean(),
  medicalEquipment: z.boolean(),
  priorityRegister: z.boolean(),
  protectedMode: z.boolean(),
  prepaymentMode: z.boolean(),
  prepaymentAgreementRef: z.string().nullable(),
  hasLoadLimiter: z.boolean(),
  loadLimitedSince: z.string().nullable(),
});

export const NoticeBody = z
  .object({
    channel: z.enum(NOTICE_CHANNELS),
    servedAt: iso,
    delivery: z.enum(NOTICE_DELIVERY).describe('Only "delivered" with its reference counts as evidence; an SMS without a receipt must be followed by a phone call or hand delivery'),
    receiptRef: z
      .string()
      .max(200)
      .nullable()
      .default(null)
      .describe('Required when delivery is "delivered" (400 E_NOTICE_NO_EVIDENCE otherwise): the SMS or e-mail delivery receipt, the letter\'s tracking or proof-of-posting number, the signed slip of a hand delivery, the call record'),
  })
  .strict()
  .meta({ examples: [{ channel: 'letter', servedAt: '2026-11-20T09:00:00Z', delivery: 'delivered', receiptRef: 'RM-123456' }] });

export const NoticeView = z.object({
  id: z.string(),
  meterId: z.string(),
  channel: z.enum(NOTICE_CHANNELS),
  servedAt: z.string(),
  delivery: z.enum(NOTICE_DELIVERY),
  receiptRef: z.string().nullable(),
  recordedBy: z.string(),
  recordedAt: z.string(),
});

/** One import row, as JSON; CSV columns have the same names (booleans as true/false, empty = unchanged). */
const ImportRow = z
  .object({
    meterId: MeterIdParam.shape.meterId,
    region: z.string().min(1).max(100).optional(),
    vulnerable: z.boolean().optional(),
    medicalEquipment: z.boolean().optional(),
    priorityRegister: z.boolean().optional(),
    protectedMode: z.boolean().optional(),
    prepaymentMode: z.boolean().optional(),
    prepaymentAgreementRef: z.string().min(1).max(100).nullable().optional(),
    hasLoadLimiter: z.boolean().optional(),
    loadLimitedSince: iso.nullable().optional(),
    noticeChannel: z.enum(NOTICE_CHANNELS).optional(),
    noticeServedAt: iso.optional(),
    noticeDelivery: z.enum(NOTICE_DELIVERY).optional(),
    noticeReceiptRef: z.string().max(200).optional(),
  })
  .strict()
  .refine((r) => (r.noticeChannel === undefined) === (r.noticeServedAt === undefined) && (r.noticeChannel === undefined) === (r.noticeDelivery === undefined), {
    message: 'noticeChannel, noticeServedAt and noticeDelivery go together',
  })
  .superRefine((r, ctx) => {
    if (r.noticeChannel === undefined || r.noticeDelivery === undefined) return;
    const problem = deliveredNoticeProblem({ channel: r.noticeChannel, delivery: r.noticeDelivery, receiptRef: r.noticeReceiptRef ?? null });
    if (problem) ctx.addIssue({ code: 'custom', path: ['noticeReceiptRef'], message: `E_NOTICE_NO_EVIDENCE: ${problem}` });
  });
type ImportRowT = z.infer<typeof ImportRow>;

export const IMPORT_LIMIT = 100_000;
/**
 * One import row on average, JSON or CSV. A typical row (a meter id and a few flags) is under 200 bytes; a row with
 * every field at its longest is about 850, so a file of such rows goes in parts of up to 50,000.
 */
const IMPORT_ROW_BYTES = 512;

const ms = (v: string | null | undefined): number | null | undefined => (v === undefined ? undefined : v === null ? null : Date.parse(v));

export function flagsView(f: import('../../domain/policy/meter-facts.js').MeterFlags): z.infer<typeof FlagsView> {
  return { ...f, loadLimitedSince: f.loadLimitedSince === null ? null : new Date(f.loadLimitedSince).toISOString() };
}

function toFactsRow(r: ImportRowT): MeterFactsRow {
  const flags: MeterFactsRow['flags'] = {};
  for (const k of ['vulnerable', 'medicalEquipment', 'priorityRegister', 'protectedMode', 'prepaymentMode', 'hasLoadLimiter'] as const) if (r[k] !== undefined) flags[k] = r[k];
  if (r.prepaymentAgreementRef !== undefined) flags.prepaymentAgreementRef = r.prepaymentAgreementRef;
  const since = ms(r.loadLimitedSince);
  if (since !== undefined) flags.loadLimitedSince = since;
  return {
    meterId: r.meterId,
    ...(r.region !== undefined ? { region: r.region } : {}),
    flags,
    ...(r.noticeChannel && r.noticeServedAt && r.noticeDelivery
      ? { notice: { channel: r.noticeChannel, servedAt: Date.parse(r.noticeServedAt), delivery: r.noticeDelivery, receiptRef: r.noticeReceiptRef ?? null } }
      : {}),
  };
}

/** CSV cells are text: booleans and empty cells become what the JSON form would carry. */
function csvRows(text: string): Record<string, unknown>[] {
  let records: Record<string, string>[];
  try {
    records = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
  } catch (e) {
    throw new MeterlineError('E_IMPORT_INVALID', `the CSV cannot be read: ${(e as Error).message}; nothing was imported`);
  }
  const bools = new Set(['vulnerable', 'medicalEquipment', 'priorityRegister', 'protectedMode', 'prepaymentMode', 'hasLoadLimiter']);
  return records.map((rec) => {
    const row: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rec)) {
      if (v === '') continue;
      row[k] = bools.has(k) ? (v === 'true' ? true : v === 'false' ? false : v) : v;
    }
    return row;
  });
}

export async function meterFactsRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  r.put('/v1/meters/:meterId/flags', {
    schema: {
      summary: 'Set protection flags, protected mode, prepayment mode and agreement, load limiter',
      description: 'Only the fields sent change. Putting a meter in prepayment mode needs prepaymentAgreementRef (DOMAIN.md rule 8). Audited with before and after.',
      tags: ['customer facts'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: FlagsPatch,
      response: { 200: FlagsView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'facts:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const { loadLimitedSince, ...rest } = req.body;
        const patch = { ...rest, ...(loadLimitedSince !== undefined ? { loadLimitedSince: ms(loadLimitedSince) as number | null } : {}) };
        const flags = await deps.store.setMeterFlags(req.params.meterId, patch, req.principal!.clientId, now());
        deps.controller.wake(); // the meter's held disconnects are looked at again now
        return { status: 200, body: flagsView(flags) };
      });
    },
  });

  r.post('/v1/meters/:meterId/notices', {
    schema: {
      summary: 'Record a disconnection notice served to the customer, with its delivery evidence',
      tags: ['customer facts'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: NoticeBody,
      response: { 201: NoticeView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'facts:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const n = await deps.store.addNotice(
          { meterId: req.params.meterId, channel: req.body.channel, servedAt: Date.parse(req.body.servedAt), delivery: req.body.delivery, receiptRef: req.body.receiptRef, recordedBy: req.principal!.clientId },
          now(),
        );
        return { status: 201, body: { ...n, servedAt: new Date(n.servedAt).toISOString(), recordedAt: new Date(n.recordedAt).toISOString() } };
      });
    },
  });

  r.get('/v1/meters/:meterId/notices', {
    schema: { summary: 'Notices recorded for a meter', tags: ['customer facts'], params: MeterIdParam, response: { 200: z.object({ items: z.array(NoticeView) }), 401: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => ({
      items: (await deps.store.listNotices(req.params.meterId)).map((n) => ({ ...n, servedAt: new Date(n.servedAt).toISOString(), recordedAt: new Date(n.recordedAt).toISOString() })),
    }),
  });

  // JSON `{"rows": [...]}` or `text/csv` with a header row; all rows valid or nothing imported.
  const importLimit = bulkBodyLimit(IMPORT_LIMIT, IMPORT_ROW_BYTES);
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: importLimit }, (_req, body, done) => done(null, { csv: body as string }));
  r.post('/v1/meters/facts/import', {
    bodyLimit: importLimit,
    schema: {
      summary: `Import customer and meter facts in bulk (JSON or CSV, up to ${IMPORT_LIMIT} rows): all rows or none`,
      description: `Columns/fields: meterId, region, vulnerable, medicalEquipment, priorityRegister, protectedMode, prepaymentMode, prepaymentAgreementRef, hasLoadLimiter, loadLimitedSince, noticeChannel, noticeServedAt, noticeDelivery, noticeReceiptRef. A bad row is reported with its row number and field, and nothing is imported. A body over ${importLimit} bytes: 413 E_BODY_TOO_LARGE; JSON nested deeper than ${MAX_JSON_DEPTH} levels: 400 E_BODY_TOO_DEEP.`,
      tags: ['customer facts'],
      headers: IdempotencyHeaders,
      body: z
        .union([z.object({ rows: z.array(z.record(z.string(), z.unknown())).min(1) }).strict(), z.object({ csv: z.string() })])
        .meta({ examples: [{ rows: [{ meterId: 'SIM-000007', vulnerable: true, noticeChannel: 'phone_call', noticeServedAt: '2026-11-20T10:00:00Z', noticeDelivery: 'delivered', noticeReceiptRef: 'CALL-99812' }] }] }),
      response: { 200: z.object({ rows: z.number(), meters: z.number(), notices: z.number() }), 400: ErrorView, 401: ErrorView, 403: ErrorView, 422: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'facts:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const raw = 'csv' in req.body ? csvRows(req.body.csv) : req.body.rows;
        if (raw.length === 0) throw new MeterlineError('E_IMPORT_INVALID', 'the import has no rows');
        if (raw.length > IMPORT_LIMIT) throw new MeterlineError('E_IMPORT_INVALID', `${raw.length} rows; import at most ${IMPORT_LIMIT} per request`);
        const errors: { row: number; field: string; problem: string }[] = [];
        const rows: MeterFactsRow[] = [];
        raw.forEach((row, i) => {
          const parsed = ImportRow.safeParse(row);
          if (parsed.success) rows.push(toFactsRow(parsed.data));
          else for (const issue of parsed.error.issues) errors.push({ row: i + 1, field: issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '(row)'), problem: issue.message });
        });
        if (errors.length > 0) {
          throw new MeterlineError('E_IMPORT_INVALID', `${new Set(errors.map((e) => e.row)).size} row(s) are invalid; nothing was imported. First: row ${errors[0]!.row}, ${errors[0]!.field}: ${errors[0]!.problem}`, {
            errors: errors.slice(0, 500),
          });
        }
        const result = await deps.store.importMeterFacts(rows, req.principal!.clientId, now());
        deps.controller.wake();
        return { status: 200, body: { rows: rows.length, ...result } };
      });
    },
  });
}
