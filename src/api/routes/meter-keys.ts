import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { KEY_MASTER_ENV, KEY_MASTER_FILE_ENV } from '../../keys/key-envelope.js';
import { KEY_FILE_MAX_ROWS } from '../../keys/key-file.js';
import { importKeyFile } from '../../keys/key-import.js';
import { MeterlineError } from '../../errors.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { bulkBodyLimit } from '../request-body.js';
import { ErrorView, IdempotencyHeaders, MeterIdParam } from '../schemas.js';

/**
 * Per-meter DLMS keys (issue 15 item 3), admin only: importing a manufacturer's key file, and a meter's key sets by
 * id, state and time. No answer, error or audit entry carries a key: only meter ids and key set ids.
 */

const KeySetView = z.object({
  keySetId: z.string(),
  state: z.enum(['current', 'pending', 'retired']),
  createdBy: z.string(),
  createdAt: z.string(),
  confirmedAt: z.string().nullable(),
  retiredAt: z.string().nullable(),
});

const ImportBody = z
  .object({
    format: z.enum(['csv', 'json']).describe('csv: a header row, then one meter per row; json: an array of objects with the same names'),
    content: z.string().min(1).describe('The key file as text'),
    wrappedWithEnv: z
      .string()
      .max(100)
      .optional()
      .describe('The keys are wrapped (RFC 3394) under the transport key in this environment variable of the gateway (METERLINE_TRANSPORT_KEY or METERLINE_TRANSPORT_KEY_<NAME>, or <name>_FILE naming a 0600 file); never the key itself'),
    replace: z.boolean().default(false).describe('Meters that have other keys get these (their current and pending key sets are retired); otherwise such a meter is 409 E_KEY_SET_CONFLICT and nothing is imported'),
  })
  .strict()
  .meta({ examples: [{ format: 'csv', content: 'meter id,system title,GUEK,GAK,KEK\nM-1,4D4D4D0000BC614E,<32 hex digits>,<32 hex digits>,<32 hex digits>\n' }] });

const ImportView = z.object({
  imported: z.number(),
  created: z.number(),
  unchanged: z.number(),
  replaced: z.number(),
  keySets: z.array(z.object({ meterId: z.string(), keySetId: z.string(), result: z.enum(['created', 'unchanged', 'replaced']), replaced: z.array(z.string()) })),
});

const RenewView = z.object({
  meterId: z.string(),
  keySetId: z.string().describe('The renewed key set'),
  state: z.enum(['current', 'pending']),
  previousKeySetId: z.string(),
  settled: z.object({ keySetId: z.string(), result: z.enum(['confirmed', 'dropped']) }).optional().describe("A pending set left by an earlier renewal, settled first"),
  detail: z.string().optional(),
});

/** A CSV row is about 230 bytes at its longest (a 64-character meter id, a system title, three wrapped keys); 512 leaves room for JSON's names and escapes. */
const KEY_ROW_BYTES = 512;
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export async function meterKeyRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  r.post('/v1/meter-keys/import', {
    bodyLimit: bulkBodyLimit(KEY_FILE_MAX_ROWS, KEY_ROW_BYTES),
    schema: {
      summary: `Import a manufacturer's key file (CSV or JSON, up to ${KEY_FILE_MAX_ROWS} meters): all rows or none`,
      description:
        `Columns: meter id, system title (16 hex digits), GUEK (encryption key), GAK (authentication key), optionally KEK (master key); 32 hex digits each, or 48 when wrapped (RFC 3394) under the transport key named by wrappedWithEnv. ` +
        `Keys are kept envelope-encrypted under the key master (${KEY_MASTER_ENV} or ${KEY_MASTER_FILE_ENV}); without one, 409 E_NO_MASTER_KEY. A bad row: 400 E_KEY_FILE_INVALID naming the row and field. ` +
        'Importing the same file again changes nothing. The answer names meters and key set ids only.',
      tags: ['meter keys'],
      headers: IdempotencyHeaders,
      body: ImportBody,
      response: { 200: ImportView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 409: ErrorView, 413: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meterkeys:import'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const result = await importKeyFile(
          deps.store,
          deps.meterKeys?.master,
          { text: req.body.content, format: req.body.format, wrappedWithEnv: req.body.wrappedWithEnv, replace: req.body.replace, actor: req.principal!.clientId, now: now() },
          deps.meterKeys?.env ?? process.env,
          { store: deps.store, profiles: deps.profiles },
        );
        req.log.info({ imported: result.imported, created: result.created, unchanged: result.unchanged, replaced: result.replaced }, 'meter keys imported');
        return { status: 200, body: result };
      });
    },
  });

  r.post('/v1/meters/:meterId/keys/renew', {
    schema: {
      summary: "Renew a meter's DLMS keys on the meter (global_key_transfer), proved by an association with the new keys",
      description:
        'New random keys are staged (sealed) as the pending key set, sent to the meter wrapped (RFC 3394) under its master key (KEK) by the Security setup ' +
        'global_key_transfer, and proved by a fresh association: 200 with state current (the old set retired). 202 with state pending: the meter took them ' +
        '(or its answer was lost) but the proof failed; both sets are kept and the next association tries the current keys, then the pending ones, so the ' +
        'meter is never locked out. The meter refusing: 502 E_KEY_RENEWAL_FAILED, it keeps its keys. The answer names key set ids only.',
      tags: ['meter keys'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      response: { 200: RenewView, 202: RenewView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView, 502: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meterkeys:renew'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const renew = deps.meterKeys?.renew;
        if (!renew) throw new MeterlineError('E_KEY_RENEWAL_UNSUPPORTED', 'this gateway does not renew meter keys (no DLMS driver wired)');
        const result = await renew(req.params.meterId, req.principal!.clientId);
        req.log.info({ meterId: result.meterId, keySetId: result.keySetId, state: result.state, previousKeySetId: result.previousKeySetId }, 'meter key renewal');
        return { status: result.state === 'current' ? 200 : 202, body: result };
      });
    },
  });

  r.get('/v1/meters/:meterId/keys', {
    schema: {
      summary: "A meter's key sets: ids, states and times (never key bytes)",
      tags: ['meter keys'],
      params: MeterIdParam,
      response: { 200: z.object({ meterId: z.string(), keySets: z.array(KeySetView) }), 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meterkeys:read'),
    handler: async (req) => ({
      meterId: req.params.meterId,
      // Field by field: the sealed material stays in the store.
      keySets: (await deps.store.meterKeySets(req.params.meterId)).map((s) => ({
        keySetId: s.keySetId,
        state: s.state,
        createdBy: s.createdBy,
        createdAt: new Date(s.createdAt).toISOString(),
        confirmedAt: iso(s.confirmedAt),
        retiredAt: iso(s.retiredAt),
      })),
    }),
  });
}
