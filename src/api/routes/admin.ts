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

const KeyView = z.object({
  id: z.string(),
  clientId: z.string().describe('The client (billing system, person) the key acts as: its payments, callback URL, change feed, plans and Idempotency-Keys'),
  name: z.string().describe('The client’s label; decides nothing (two clients may carry the same one)'),
  role: z.enum(ROLES),
  createdBy: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable().describe('When the key last authenticated a request (to the minute); null: not since this was kept'),
});
/** The new secret: in the first answer only. A replay (same Idempotency-Key) answers the key without it: it is never stored. */
const KeyWithSecret = KeyView.extend({
  key: z.string().optional().describe('The new secret, shown once: only in the first answer; a replay with the same Idempotency-Key returns the key without it'),
});
const SECRET_ONCE =
  'The secret is in this answer only: the gateway stores its SHA-256, never the secret, not even in the answer it keeps for the Idempotency-Key. ' +
  'A replay (same Idempotency-Key and body) answers the same key (`idempotent-replayed: true`) without `key`; a secret that was lost is replaced by rotating the key again with a new Idempotency-Key.';
const NewKeyBody = z
  .object({
    role: z.enum(ROLES),
    clientId: z.string().min(1).max(100).optional().describe('An existing client: the key acts as it (a person’s second key with another role, a billing system’s next key)'),
    name: z.string().min(1).max(100).optional().describe('A new client with this label; a label only: a client that already carries it is another client'),
  })
  .strict()
  .refine((b) => (b.clientId === undefined) !== (b.name === undefined), { message: 'give exactly one of clientId (a key for an existing client) or name (a new client)' })
  .meta({ examples: [{ name: 'crew-east-2', role: 'field' }, { clientId: 'cli_5f0c2a9e81d4b7a3', role: 'supervisor' }] });
const KeyIdParam = z.object({ keyId: z.string().min(1).max(64) });
const AuditView = z.object({ seq: z.number(), at: z.string(), actor: z.string(), action: z.string(), target: z.string(), details: z.unknown(), hash: z.string() });
const AuditQuery = z.object({
  target: z.string().optional(),
  actor: z.string().optional(),
  action: z.string().max(100).optional().describe('An action (`alert.clear`), or every action under a prefix ending in a dot (`alert.`)'),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  afterSeq: z.coerce.number().int().min(0).optional(),
  beforeSeq: z.coerce.number().int().min(0).optional().describe('Entries before this seq: the next page of a newest-first list'),
  order: z.enum(['asc', 'desc']).default('asc').describe('asc: oldest first (page with afterSeq); desc: newest first (page with beforeSeq)'),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
});
const WeatherView = z.object({ id: z.string(), kind: z.string(), from: z.string(), to: z.string(), regions: z.array(z.string()).nullable() });

const keyView = (k: { id: string; clientId: string; name: string; role: string; createdBy: string; createdAt: number; revokedAt: number | null; lastUsedAt: number | null }) => ({
  id: k.id,
  clientId: k.clientId,
  name: k.name,
  role: k.role as (typeof ROLES)[number],
  createdBy: k.createdBy,
  createdAt: new Date(k.createdAt).toISOString(),
  revokedAt: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(),
  lastUsedAt: k.lastUsedAt === null ? null : new Date(k.lastUsedAt).toISOString(),
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
      summary: 'Create an API key for an existing client (clientId) or a new one (name); the key is shown once, only its SHA-256 is stored',
      description: SECRET_ONCE,
      tags: ['keys'],
      headers: IdempotencyHeaders,
      body: NewKeyBody,
      response: { 201: KeyWithSecret, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const key = newApiKey(req.body.role.slice(0, 3));
        const client = req.body.clientId !== undefined ? { id: req.body.clientId } : { name: req.body.name! };
        const rec = await deps.store.createApiKey({ client, role: req.body.role, sha256: sha256Hex(key) }, req.principal!.clientId, now());
        return { status: 201, body: { ...keyView(rec), key }, replayBody: keyView(rec) };
      });
    },
  });
  r.post('/v1/keys/:keyId/rotate', {
    schema: {
      summary: 'Rotate a key: a new secret, shown once; the old one stops working at once; the key stays its client’s',
      description: SECRET_ONCE,
      tags: ['keys'],
      params: KeyIdParam,
      headers: IdempotencyHeaders,
      response: { 200: KeyWithSecret, 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const current = (await deps.store.listApiKeys()).find((k) => k.id === req.params.keyId);
        if (!current || current.revokedAt !== null) throw new MeterlineError('E_KEY_NOT_FOUND', `key ${req.params.keyId} does not exist or is revoked`);
        const key = newApiKey(current.role.slice(0, 3));
        const rec = await deps.store.rotateApiKey(req.params.keyId, sha256Hex(key), req.principal!.clientId, now());
        if (!rec) throw new MeterlineError('E_KEY_NOT_FOUND', `key ${req.params.keyId} does not exist or is revoked`);
        return { status: 200, body: { ...keyView(rec), key }, replayBody: keyView(rec) };
      });
    },
  });
  r.delete('/v1/keys/:keyId', {
    schema: { summary: 'Revoke a key; it is refused from the next request on', tags: ['keys'], params: KeyIdParam, headers: IdempotencyHeaders, response: { 200: KeyView, 401: ErrorView, 403: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'key:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const rec = await deps.store.revokeApiKey(req.params.keyId, req.principal!.clientId, now());
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
    ...(q.action ? { action: q.action } : {}),
    ...(q.afterSeq !== undefined ? { afterSeq: q.afterSeq } : {}),
    ...(q.beforeSeq !== undefined ? { beforeSeq: q.beforeSeq } : {}),
    ...(q.order === 'desc' ? { newestFirst: true } : {}),
    limit: q.limit,
  });
  r.get('/v1/audit', {
    schema: { summary: 'Audit entries, filtered by target, actor, action and time (oldest first, paged with afterSeq; or order=desc, newest first, paged with beforeSeq)', tags: ['audit'], querystring: AuditQuery, response: { 200: z.object({ items: z.array(AuditView) }), 401: ErrorView, 403: ErrorView }, security: [{ bearerAuth: [] }] },
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
      summary: 'Verify the audit chain: every link under the audit key (any entry changed, inserted, removed or recomputed), and that the log still reaches each anchor in the anchor file (a cut-off tail)',
      tags: ['audit'],
      response: {
        200: z.object({
          ok: z.boolean(),
          entries: z.number(),
          badSeq: z.number().optional(),
          problem: z.string().optional(),
          lastHash: z.string().optional(),
          /** The id of the key the chain is keyed with (never the key). */
          keyId: z.string().optional(),
          /** The first entry linked under the key; earlier ones have the unkeyed links of older releases. */
          keyedFrom: z.number().optional(),
          anchorsChecked: z.number().optional(),
        }),
        401: ErrorView,
        403: ErrorView,
      },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'audit:read'),
    handler: async () => deps.store.verifyAudit({ anchors: deps.auditAnchors?.() ?? [] }),
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
        const w = await deps.store.declareWeather({ kind: req.body.kind, from: Date.parse(req.body.from), to: Date.parse(req.body.to), regions: req.body.regions }, req.principal!.clientId, now());
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
        const w = await deps.store.liftWeather(req.params.periodId, req.principal!.clientId, now());
        deps.controller.wake(); // the disconnects it held are due now
        if (!w) throw new MeterlineError('E_NOT_FOUND', `no weather period ${req.params.periodId}`);
        return { status: 200, body: weatherView(w) };
      });
    },
  });
}
