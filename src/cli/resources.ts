import { type ApiClient, EXIT, asGiven, usageError } from './api-client.js';
import type { BodyOf, QueryOf } from './api-types.js';
import { orderWhat, table, time, type OrderLike } from './format.js';

/**
 * The operators' resources beyond orders, each a thin wrapper of its API: field work (assign, complete), alerts,
 * circuit breakers, API keys (admin) and the audit log (verify, export). What the API does not offer the CLI does
 * not pretend to.
 */

export const RESOURCE_OPTIONS = {
  outcome: { type: 'string' },
  role: { type: 'string' },
  name: { type: 'string' },
  client: { type: 'string' },
  all: { type: 'boolean' },
  actor: { type: 'string' },
  target: { type: 'string' },
} as const;

type Print = (json: unknown, text: () => string) => void;
interface Values {
  to?: string;
  outcome?: string;
  note?: string;
  role?: string;
  state?: string;
  name?: string;
  client?: string;
  all?: boolean;
  limit?: string;
  format?: string;
  from?: string;
  actor?: string;
  target?: string;
}

/** `<command> <sub> <id>`: exactly one id after the sub-command. */
function idOf(args: string[], usage: string): string {
  if (!args[1]) throw usageError(`missing the id: meterline ${usage}`);
  if (args.length > 2) throw usageError(`unexpected argument "${args[2]}": meterline ${usage}`);
  return args[1];
}
const noArgs = (args: string[], from: number, command: string) => {
  if (args.length > from) throw usageError(`unexpected argument "${args[from]}" for ${command}`);
};
const wholeNumber = (name: string, value: string | undefined): number | undefined => {
  if (value !== undefined && !/^\d+$/.test(value)) throw usageError(`--${name}: "${value}" is not a whole number`);
  return value === undefined ? undefined : Number(value);
};
const isoTime = (name: string, value: string | undefined): string | undefined => {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw usageError(`--${name}: "${value}" is not a date and time (use ISO 8601, e.g. 2026-11-24T09:00:00Z)`);
  return new Date(ms).toISOString();
};

type WorkOrder = { id: string; meterId: string; action: string; status: string; assignedTo: string | null; outcome: string | null; note: string | null };
const workOrderLine = (w: WorkOrder) => `work order ${w.id}: ${w.action} ${w.meterId} is ${w.status}${w.assignedTo ? `, assigned to ${w.assignedTo}` : ''}${w.outcome ? `, outcome ${w.outcome}` : ''}${w.note ? ` (${w.note})` : ''}`;

/** `work-orders assign <id> --to <crew>` and `work-orders complete <id> --outcome <outcome> [--note <text>]`. */
export async function workOrderCommand(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === 'assign') {
    const id = idOf(args, 'work-orders assign <workOrderId> --to <crew>');
    if (!v.to) throw usageError('missing the crew: meterline work-orders assign <workOrderId> --to <crew>');
    const w = await client.ok(client.api.POST('/v1/work-orders/{workOrderId}/assign', { params: { path: { workOrderId: id }, header: client.write() }, body: { assignee: v.to } }));
    print(w, () => workOrderLine(w));
    return EXIT.ok;
  }
  const id = idOf(args, 'work-orders complete <workOrderId> --outcome reconnected|disconnected|meter_faulty|no_access|customer_refused');
  if (!v.outcome) throw usageError('missing --outcome reconnected|disconnected|meter_faulty|no_access|customer_refused (what the crew found)');
  const res = await client.ok(
    client.api.POST('/v1/work-orders/{workOrderId}/complete', { params: { path: { workOrderId: id }, header: client.write() }, body: { outcome: asGiven<BodyOf<'/v1/work-orders/{workOrderId}/complete', 'post'>['outcome']>(v.outcome), ...(v.note ? { note: v.note } : {}) } }),
  );
  const order = res.order as OrderLike | null; // the document does not describe it yet (unknown)
  print(res, () => workOrderLine(res.workOrder) + (order ? `\norder ${order.id}: ${orderWhat(order)} ${order.meterId} is ${order.state}` : ''));
  return EXIT.ok;
}

type Alert = { id: string; kind: string; meterId: string; at: string; payload: unknown; delivered: boolean; state: string; acknowledgedBy: string | null; clearedBy: string | null };
const alertLine = (a: Alert) => `alert ${a.id} (${a.kind}${a.meterId !== '-' ? ` ${a.meterId}` : ''}) is ${a.state}${a.acknowledgedBy ? `, acknowledged by ${a.acknowledgedBy}` : ''}${a.clearedBy ? `, cleared by ${a.clearedBy}` : ''}`;

/** `alerts [--state <state>] [--limit <n>]` (newest first), `alerts ack <id> [--note]`, `alerts clear <id> [--note]`. */
export async function alerts(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === 'ack' || sub === 'clear') {
    const id = idOf(args, `alerts ${sub} <alertId> [--note <text>]`);
    const action = { params: { path: { alertId: id }, header: client.write() }, body: v.note ? { note: v.note } : {} };
    const a = await client.ok(sub === 'ack' ? client.api.POST('/v1/alerts/{alertId}/acknowledge', action) : client.api.POST('/v1/alerts/{alertId}/clear', action));
    print(a, () => alertLine(a));
    return EXIT.ok;
  }
  noArgs(args, 0, 'alerts (or alerts ack|clear <alertId>)');
  const res = await client.ok(client.api.GET('/v1/alerts', { params: { query: { limit: wholeNumber('limit', v.limit), state: asGiven<NonNullable<QueryOf<'/v1/alerts', 'get'>['state']>>(v.state) } } }));
  print(res, () =>
    res.items.length === 0
      ? 'no alerts'
      : table(['AT', 'KIND', 'METER', 'STATE', 'BY', 'DELIVERED', 'ID'], res.items.map((a) => [time(a.at), a.kind, a.meterId, a.state, a.clearedBy ?? a.acknowledgedBy ?? '', a.delivered ? 'yes' : 'no', a.id])),
  );
  return EXIT.ok;
}

/** `breakers [--all]` (open ones, or all with --all) and `breakers reset <breakerId>`. */
export async function breakers(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  if (args[0] === 'reset') {
    const b = await client.ok(client.api.POST('/v1/stats/breakers/{breakerId}/reset', { params: { path: { breakerId: idOf(args, 'breakers reset <breakerId>') }, header: client.write() } }));
    print(b, () => `breaker ${b.id} (${b.action} ${b.scope} ${b.key}) reset by ${b.resetBy} at ${time(b.resetAt)}; held disconnects resume`);
    return EXIT.ok;
  }
  noArgs(args, 0, 'breakers (or breakers reset <breakerId>)');
  const res = await client.ok(client.api.GET('/v1/stats/breakers', { params: { query: { open: v.all ? 'false' : 'true' } } }));
  print(res, () =>
    res.items.length === 0
      ? `no ${v.all ? '' : 'open '}circuit breakers`
      : table(['BREAKER', 'ACTION', 'SCOPE', 'KEY', 'OPENED', 'RESET', 'WHY'], res.items.map((b) => [b.id, b.action, b.scope, b.key, time(b.openedAt), b.resetAt ? `${time(b.resetAt)} by ${b.resetBy}` : 'open', b.reason])),
  );
  return EXIT.ok;
}

type ApiKey = { id: string; clientId: string; name: string; role: string; createdBy: string; createdAt: string; revokedAt: string | null; key?: string };
const keyLine = (k: ApiKey) => `key ${k.id}: ${k.role} of ${k.name} (client ${k.clientId})${k.revokedAt ? `, revoked ${time(k.revokedAt)}` : ''}`;
/** A new secret is printed once, on stdout alone, so `… | read -r KEY`-style scripts take it and nothing else. */
const secretText = (k: ApiKey) => `${keyLine(k)}\n${k.key ?? '(no secret: this answer is a replay; rotate the key again with a new --idempotency-key)'}`;

/** `api-keys list|create --role <role> (--name <label> | --client <clientId>)|rotate <keyId>|revoke <keyId>` (admin). */
export async function apiKeys(client: ApiClient, io: { err: (text: string) => void }, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  switch (sub) {
    case 'list': {
      noArgs(args, 1, 'api-keys list');
      const res = await client.ok(client.api.GET('/v1/keys'));
      print(res, () => table(['KEY', 'ROLE', 'CLIENT', 'NAME', 'CREATED', 'REVOKED'], res.items.map((k) => [k.id, k.role, k.clientId, k.name, time(k.createdAt), time(k.revokedAt)])));
      return EXIT.ok;
    }
    case 'create': {
      noArgs(args, 1, 'api-keys create');
      if (!v.role) throw usageError('missing --role (operator, billing, supervisor, field, auditor, admin): meterline api-keys create --role <role> --name <label>');
      if ((v.name === undefined) === (v.client === undefined)) throw usageError('give exactly one of --name <label> (a new client) or --client <clientId> (another key of an existing client)');
      const k = await client.ok(client.api.POST('/v1/keys', { params: { header: client.write() }, body: { role: asGiven<BodyOf<'/v1/keys', 'post'>['role']>(v.role), ...(v.name !== undefined ? { name: v.name } : { clientId: v.client }) } }));
      if (k.key) io.err('the secret is shown this once: the gateway keeps only its hash');
      print(k, () => secretText(k));
      return EXIT.ok;
    }
    case 'rotate': {
      const k = await client.ok(client.api.POST('/v1/keys/{keyId}/rotate', { params: { path: { keyId: idOf(args, 'api-keys rotate <keyId>') }, header: client.write() } }));
      if (k.key) io.err('the old secret stopped working; the new one is shown this once');
      print(k, () => secretText(k));
      return EXIT.ok;
    }
    case 'revoke': {
      const k = await client.ok(client.api.DELETE('/v1/keys/{keyId}', { params: { path: { keyId: idOf(args, 'api-keys revoke <keyId>') }, header: client.write() } }));
      print(k, () => keyLine(k));
      return EXIT.ok;
    }
    default:
      throw usageError(`api-keys needs one of: list, create, rotate, revoke (got ${sub ?? 'nothing'})`);
  }
}

type ExportFormat = NonNullable<QueryOf<'/v1/audit/export', 'get'>['format']>;
const isExportFormat = (format: string): format is ExportFormat => format === 'ndjson' || format === 'csv';

/**
 * `audit verify`: the gateway checks its audit chain; exit 0 intact, 3 tampered (as the offline `audit-verify`).
 * `audit export [--format ndjson|csv] [--from] [--to] [--actor] [--target] [--limit]`: the entries, as the API sends them.
 */
export async function audit(client: ApiClient, io: { out: (text: string) => void }, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === 'verify') {
    noArgs(args, 1, 'audit verify');
    const r = await client.ok(client.api.GET('/v1/audit/verify'));
    print(r, () =>
      r.ok
        ? `audit log: ${r.entries} entries, chain intact${r.anchorsChecked ? `, reaches all ${r.anchorsChecked} anchors` : ''} (last hash ${r.lastHash ?? '-'})`
        : `audit log: TAMPERED${r.badSeq !== undefined ? ` at entry ${r.badSeq}` : ''}: ${r.problem ?? 'unknown problem'} (${r.entries} entries read)`,
    );
    return r.ok ? EXIT.ok : EXIT.refused;
  }
  if (sub === 'export') {
    noArgs(args, 1, 'audit export');
    const format = v.format ?? 'ndjson';
    if (!isExportFormat(format)) throw usageError(`--format: "${format}" is not ndjson or csv`);
    const query = { format, from: isoTime('from', v.from), to: isoTime('to', v.to), actor: v.actor, target: v.target, limit: wholeNumber('limit', v.limit) };
    io.out((await client.ok(client.api.GET('/v1/audit/export', { params: { query }, parseAs: 'text' }))) ?? '');
    return EXIT.ok;
  }
  throw usageError(`audit needs one of: verify, export (got ${sub ?? 'nothing'})`);
}
