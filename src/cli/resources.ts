import { type ApiClient, EXIT, usageError } from './api-client.js';
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

const enc = encodeURIComponent;
const qs = (params: Record<string, string | undefined>): string => {
  const p = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
  return p.size > 0 ? `?${p}` : '';
};
/** `<command> <sub> <id>`: exactly one id after the sub-command. */
function idOf(args: string[], usage: string): string {
  if (!args[1]) throw usageError(`missing the id: meterline ${usage}`);
  if (args.length > 2) throw usageError(`unexpected argument "${args[2]}": meterline ${usage}`);
  return args[1];
}
const noArgs = (args: string[], from: number, command: string) => {
  if (args.length > from) throw usageError(`unexpected argument "${args[from]}" for ${command}`);
};
const wholeNumber = (name: string, value: string | undefined): string | undefined => {
  if (value !== undefined && !/^\d+$/.test(value)) throw usageError(`--${name}: "${value}" is not a whole number`);
  return value;
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
    const w = await client.request<WorkOrder>('POST', `/v1/work-orders/${enc(id)}/assign`, { assignee: v.to });
    print(w, () => workOrderLine(w));
    return EXIT.ok;
  }
  const id = idOf(args, 'work-orders complete <workOrderId> --outcome reconnected|disconnected|meter_faulty|no_access|customer_refused');
  if (!v.outcome) throw usageError('missing --outcome reconnected|disconnected|meter_faulty|no_access|customer_refused (what the crew found)');
  const res = await client.request<{ workOrder: WorkOrder; order: OrderLike | null }>('POST', `/v1/work-orders/${enc(id)}/complete`, { outcome: v.outcome, ...(v.note ? { note: v.note } : {}) });
  print(res, () => workOrderLine(res.workOrder) + (res.order ? `\norder ${res.order.id}: ${orderWhat(res.order)} ${res.order.meterId} is ${res.order.state}` : ''));
  return EXIT.ok;
}

type Alert = { id: string; kind: string; meterId: string; at: string; payload: unknown; delivered: boolean; state: string; acknowledgedBy: string | null; clearedBy: string | null };
const alertLine = (a: Alert) => `alert ${a.id} (${a.kind}${a.meterId !== '-' ? ` ${a.meterId}` : ''}) is ${a.state}${a.acknowledgedBy ? `, acknowledged by ${a.acknowledgedBy}` : ''}${a.clearedBy ? `, cleared by ${a.clearedBy}` : ''}`;

/** `alerts [--state <state>] [--limit <n>]` (newest first), `alerts ack <id> [--note]`, `alerts clear <id> [--note]`. */
export async function alerts(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === 'ack' || sub === 'clear') {
    const id = idOf(args, `alerts ${sub} <alertId> [--note <text>]`);
    const a = await client.request<Alert>('POST', `/v1/alerts/${enc(id)}/${sub === 'ack' ? 'acknowledge' : 'clear'}`, v.note ? { note: v.note } : {});
    print(a, () => alertLine(a));
    return EXIT.ok;
  }
  noArgs(args, 0, 'alerts (or alerts ack|clear <alertId>)');
  const res = await client.request<{ items: Alert[] }>('GET', `/v1/alerts${qs({ limit: wholeNumber('limit', v.limit), state: v.state })}`);
  print(res, () =>
    res.items.length === 0
      ? 'no alerts'
      : table(['AT', 'KIND', 'METER', 'STATE', 'BY', 'DELIVERED', 'ID'], res.items.map((a) => [time(a.at), a.kind, a.meterId, a.state, a.clearedBy ?? a.acknowledgedBy ?? '', a.delivered ? 'yes' : 'no', a.id])),
  );
  return EXIT.ok;
}

type Breaker = { id: string; scope: string; key: string; action: string; openedAt: string; reason: string; resetAt: string | null; resetBy: string | null };

/** `breakers [--all]` (open ones, or all with --all) and `breakers reset <breakerId>`. */
export async function breakers(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  if (args[0] === 'reset') {
    const b = await client.request<Breaker>('POST', `/v1/stats/breakers/${enc(idOf(args, 'breakers reset <breakerId>'))}/reset`);
    print(b, () => `breaker ${b.id} (${b.action} ${b.scope} ${b.key}) reset by ${b.resetBy} at ${time(b.resetAt)}; held disconnects resume`);
    return EXIT.ok;
  }
  noArgs(args, 0, 'breakers (or breakers reset <breakerId>)');
  const res = await client.request<{ items: Breaker[] }>('GET', `/v1/stats/breakers${qs({ open: v.all ? 'false' : 'true' })}`);
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
      const res = await client.request<{ items: ApiKey[] }>('GET', '/v1/keys');
      print(res, () => table(['KEY', 'ROLE', 'CLIENT', 'NAME', 'CREATED', 'REVOKED'], res.items.map((k) => [k.id, k.role, k.clientId, k.name, time(k.createdAt), time(k.revokedAt)])));
      return EXIT.ok;
    }
    case 'create': {
      noArgs(args, 1, 'api-keys create');
      if (!v.role) throw usageError('missing --role (operator, billing, supervisor, field, auditor, admin): meterline api-keys create --role <role> --name <label>');
      if ((v.name === undefined) === (v.client === undefined)) throw usageError('give exactly one of --name <label> (a new client) or --client <clientId> (another key of an existing client)');
      const k = await client.request<ApiKey>('POST', '/v1/keys', { role: v.role, ...(v.name !== undefined ? { name: v.name } : { clientId: v.client }) });
      if (k.key) io.err('the secret is shown this once: the gateway keeps only its hash');
      print(k, () => secretText(k));
      return EXIT.ok;
    }
    case 'rotate': {
      const k = await client.request<ApiKey>('POST', `/v1/keys/${enc(idOf(args, 'api-keys rotate <keyId>'))}/rotate`);
      if (k.key) io.err('the old secret stopped working; the new one is shown this once');
      print(k, () => secretText(k));
      return EXIT.ok;
    }
    case 'revoke': {
      const k = await client.request<ApiKey>('DELETE', `/v1/keys/${enc(idOf(args, 'api-keys revoke <keyId>'))}`);
      print(k, () => keyLine(k));
      return EXIT.ok;
    }
    default:
      throw usageError(`api-keys needs one of: list, create, rotate, revoke (got ${sub ?? 'nothing'})`);
  }
}

/**
 * `audit verify`: the gateway checks its audit chain; exit 0 intact, 3 tampered (as the offline `audit-verify`).
 * `audit export [--format ndjson|csv] [--from] [--to] [--actor] [--target] [--limit]`: the entries, as the API sends them.
 */
export async function audit(client: ApiClient, io: { out: (text: string) => void }, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === 'verify') {
    noArgs(args, 1, 'audit verify');
    const r = await client.request<{ ok: boolean; entries: number; badSeq?: number; problem?: string; lastHash?: string; anchorsChecked?: number }>('GET', '/v1/audit/verify');
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
    if (format !== 'ndjson' && format !== 'csv') throw usageError(`--format: "${format}" is not ndjson or csv`);
    const query = qs({ format, from: isoTime('from', v.from), to: isoTime('to', v.to), actor: v.actor, target: v.target, limit: wholeNumber('limit', v.limit) });
    io.out(await client.text(`/v1/audit/export${query}`));
    return EXIT.ok;
  }
  throw usageError(`audit needs one of: verify, export (got ${sub ?? 'nothing'})`);
}
