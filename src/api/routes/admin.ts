import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { csvField } from '../../domain/csv-field.js';
import { MeterlineError } from '../../errors.js';
import type { AuditEntry } from '../../store/store.js';
import { newApiKey, requirePermission, ROLES, sha256Hex } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { ErrorView, IdempotencyHeaders } from '../schemas.js';

/** API keys (admin), the audit log (auditor, supervisor, admin) and declared extreme-weather periods (rule 5). */

const KeyView = z.object({ id: z.string(), name: z.string(), role: z.enum(ROLES), createdBy: z.string(), createdAt: z.string(), revokedAt: z.string().nullable() });
const KeyIdParam = z.object({ keyId: z.string().min(1).max(64) });
const AuditView = z.object({ seq: z.number(), at: z.string(), actor: z.string(), action: z.string(), target: z.string(), details: z.unknown(), hash: z.string() });
const AuditQuery = z.object({
  target: z.string().optional(),
  actor: z.string().optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  afterSeq: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
});
const WeatherView = z.object({ id: z.string(), kind: z.string(), from: z.string(), to: z.string(), regions: z.array(z.string()).nullable() });

const keyView = (k: { id: string; name: string; role: string; createdBy: string; createdAt: number; revokedAt: number | null }) => ({
  id: k.id,
  name: k.name,
  role: k.role as (typeof ROLES)[number],
  createdBy: k.createdBy,
  createdAt: new Date(k.createdAt).toISOString(),
  revokedAt: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(),
});
const auditView = (e: AuditEntry) => ({ ...e, at: new Date(e.at).toISOString() });
/** An audit value as one CSV field: text and numbers as they are, anything else (details) as JSON; escaped by csvField. */
const csvCell = (v: unknown): string => csvField(typeof v === 'string' || typeof v === 'number' ? v : v === undefined ? null : JSON.stringify(v));

export async function adminRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  // ---- keys ----
  r.get('/v1/keys', {
    schema: { summary: 'API keys (never their secrets)', tags: ['keys'], response: { 200: z.object({ items: z.array(KeyView) }), 401: ErrorView, 403: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async () => ({ items: (await deps.store.listApiKeys()).map(keyView) }),
  });
  r.post('/v1/keys', {
    schema: {
      summary: 'Create an API key; the key is shown once, only its SHA-256 is stored',
      tags: ['keys'],
      headers: IdempotencyHeaders,
      body: z.object({ name: z.string().min(1).max(100), role: z.enum(ROLES) }).strict().meta({ examples: [{ name: 'crew-east-2', role: 'field' }] }),
      response: { 201: KeyView.extend({ key: z.string() }), 400: ErrorView, 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const key = newApiKey(req.body.role.slice(0, 3));
        const rec = await deps.store.createApiKey({ name: req.body.name, role: req.body.role, sha256: sha256Hex(key) }, req.principal!.name, now());
        return { status: 201, body: { ...keyView(rec), key } };
      });
    },
  });
  r.post('/v1/keys/:keyId/rotate', {
    schema: {
      summary: 'Rotate a key: a new secret, shown once; the old one stops working at once',
      tags: ['keys'],
      params: KeyIdParam,
      headers: IdempotencyHeaders,
      response: { 200: KeyView.extend({ key: z.string() }), 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const current = (await deps.store.listApiKeys()).find((k) => k.id === req.params.keyId);
        if (!current || current.revokedAt !== null) throw new MeterlineError('E_KEY_NOT_FOUND', `key ${req.params.keyId} does not exist or is revoked`);
        const key = newApiKey(current.role.slice(0, 3));
        const rec = await deps.store.rotateApiKey(req.params.keyId, sha256Hex(key), req.principal!.name, now());
        if (!rec) throw new MeterlineError('E_KEY_NOT_FOUND', `key ${req.params.keyId} does not exist or is revoked`);
        return { status: 200, body: { ...keyView(rec), key } };
      });
    },
  });
  r.delete('/v1/keys/:keyId', {
    schema: { summary: 'Revoke a key; it is refused from the next request on', tags: ['keys'], params: KeyIdParam, headers: IdempotencyHeaders, response: { 200: KeyView, 401: ErrorView, 403: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const rec = await deps.store.revokeApiKey(req.params.keyId, req.principal!.name, now());
        if (!rec) throw new MeterlineError('E_KEY_NOT_FOUND', `key ${req.params.keyId} does not exist`);
        return { status: 200, body: keyView(rec) };
      });
    },
  });

  // ---- audit ----
  const toQuery = (q: z.infer<typeof AuditQuery>) => ({
    ...(q.target ? { target: q.target } : {}),
    ...(q.actor ? { actor: q.actor } : {}),
    ...(q.from ? { from: Date.parse(q.from) } : {}),
    ...(q.to ? { to: Date.parse(q.to) } : {}),
    ...(q.afterSeq !== undefined ? { afterSeq: q.afterSeq } : {}),
    limit: q.limit,
  });
  r.get('/v1/audit', {
    schema: { summary: 'Audit entries (oldest first; page with afterSeq)', tags: ['audit'], querystring: AuditQuery, response: { 200: z.object({ items: z.array(AuditView) }), 401: ErrorView, 403: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'audit:read'),
    handler: async (req) => ({ items: (await deps.store.listAudit(toQuery(req.query))).map(auditView) }),
  });
  r.get('/v1/audit/export', {
    schema: {
      summary: 'Export audit entries as NDJSON or CSV, with their chain hashes',
      tags: ['audit'],
      querystring: AuditQuery.extend({ format: z.enum(['ndjson', 'csv']).default('ndjson'), limit: z.coerce.number().int().min(1).max(1_000_000).default(100_000) }),
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'audit:read'),
    handler: async (req, reply) => {
      const entries = (await deps.store.listAudit(toQuery(req.query))).map(auditView);
      if (req.query.format === 'csv') {
        const lines = ['seq,at,actor,action,target,details,hash', ...entries.map((e) => [e.seq, e.at, e.actor, e.action, e.target, e.details, e.hash].map(csvCell).join(','))];
        return reply.type('text/csv').send(lines.join('\n') + '\n');
      }
      return reply.type('application/x-ndjson').send(entries.map((e) => JSON.stringify(e)).join('\n') + '\n');
    },
  });
  r.get('/v1/audit/verify', {
    schema: {
      summary: 'Verify the audit hash chain: any entry changed, inserted or removed in the database is reported',
      tags: ['audit'],
      response: { 200: z.object({ ok: z.boolean(), entries: z.number(), badSeq: z.number().optional(), problem: z.string().optional(), lastHash: z.string().optional() }), 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'audit:read'),
    handler: async () => deps.store.verifyAudit(),
  });

  // ---- extreme weather (rule 5) ----
  const weatherView = (w: { id: string; kind: string; from: number; to: number; regions: string[] | null }) => ({ ...w, from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() });
  r.get('/v1/policy/weather', {
    schema: { summary: 'Declared extreme-weather periods not yet over (no disconnects for non-payment during them)', tags: ['policy'], response: { 200: z.object({ items: z.array(WeatherView) }), 401: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'policy:read'),
    handler: async () => ({ items: (await deps.store.listWeather(now())).map(weatherView) }),
  });
  r.post('/v1/policy/weather', {
    schema: {
      summary: 'Declare an extreme-weather period (freeze, heat advisory) for some regions or everywhere',
      tags: ['policy'],
      headers: IdempotencyHeaders,
      body: z
        .object({ kind: z.string().min(1).max(50), from: z.iso.datetime({ offset: true }), to: z.iso.datetime({ offset: true }), regions: z.array(z.string().min(1)).min(1).nullable().default(null) })
        .strict()
        .refine((b) => Date.parse(b.to) > Date.parse(b.from), 'to must be after from')
        .meta({ examples: [{ kind: 'freeze', from: '2026-12-01T00:00:00Z', to: '2026-12-03T00:00:00Z', regions: ['north'] }] }),
      response: { 201: WeatherView, 400: ErrorView, 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'policy:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const w = await deps.store.declareWeather({ kind: req.body.kind, from: Date.parse(req.body.from), to: Date.parse(req.body.to), regions: req.body.regions }, req.principal!.name, now());
        deps.controller.wake();
        return { status: 201, body: weatherView(w) };
      });
    },
  });
  r.delete('/v1/policy/weather/:periodId', {
    schema: { summary: 'Lift a declared period now', tags: ['policy'], params: z.object({ periodId: z.string() }), headers: IdempotencyHeaders, response: { 200: WeatherView, 401: ErrorView, 403: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'policy:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const w = await deps.store.liftWeather(req.params.periodId, req.principal!.name, now());
        deps.controller.wake(); // the disconnects it held are due now
        if (!w) throw new MeterlineError('E_NOT_FOUND', `no weather period ${req.params.periodId}`);
        return { status: 200, body: weatherView(w) };
      });
    },
  });
}
