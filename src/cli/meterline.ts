#!/usr/bin/env node
import { readFileSync, realpathSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiClient, CliError, EXIT, asGiven, usageError } from './api-client.js';
import type { AnswerOf, BodyOf, QueryOf } from './api-types.js';
import { followEvents } from './event-stream.js';
import { bar, duration, minutes, orderText, table, time, type OrderLike } from './format.js';
import { FINAL, WAIT_OPTIONS, exitForStates, getOrder, stopsAt, waitSettings, watchOrder } from './wait.js';
import { CONTEXT_OPTIONS, contextCommand, login, resolveTarget } from './contexts.js';
import { readSecret } from './secret-input.js';
import { COMMANDS } from './command-table.js';
import { completionScript } from './completion.js';
import { duplicateWarnings, nameUnknownMeters } from './bulk-checks.js';
import { RESOURCE_OPTIONS, alerts, apiKeys, audit, breakers, workOrderCommand } from './resources.js';

/**
 * `meterline`: the gateway's operations for scripts and terminals, through the same API and rules as the console.
 * Human output by default, `--json` for scripts; exit codes in USAGE.
 */
export const USAGE = `Usage: meterline <command> [arguments] [options]

Switching
  reconnect <meter> [--reason payment|top_up|customer_request|safety_cleared|operator]
                    [--payment-at <ISO time>] [--urgent] [--note <text>] [--wait]
  disconnect <meter> --reason customer_request|vacant_premises|safety --reference <ref>
                    [--note <text>] [--not-before <ISO time>] [--wait]
                                     the reasons your key may use are those \`whoami\` lists; the
                                     reference is the request, the move-out record or the incident
                                     (arrears go through plans; credit cut-offs are credit control's)
  limit <meter> <watts> --reason arrears|customer_request|safety [--reference <ref>]
                    [--note <text>] [--not-before <ISO time>] [--wait]
  limit <meter> --remove [--reason payment|top_up|operator|customer_request] [--wait]
                                     set or remove the meter's demand limit (rule 10: the step before
                                     a cut for arrears); done only when the meter reads it back
  approve <orderId>                  a supervisor approves one disconnect waiting for approval
                                     (a protected customer's request or move-out; safety at a
                                     medical-equipment customer); never the one who asked for it
  order <orderId> [--watch]          an order with its attempts and events; --watch follows it to its end
                                     (or to the field; see --timeout, --wait-field)
  cancel <orderId> --reason <text>   withdraw an order not on the wire (queued, held, escalated); audited
  orders [--limit <n>] [--after <cursor>] [--oldest-first] [--meter <id>] [--state <state>[,<state>…]]
         [--action <action>] [--reason <reason>] [--requested-by <client>] [--note <text>]
         [--from <ISO>] [--to <ISO>] [--id <order id or its start>]
                                     orders, newest first, a page at a time (100 unless --limit, up to
                                     1000); the last line gives the next page's --after; --json prints
                                     the page as the API returns it ({items, next})
  bulk <file.csv|file.json> --action reconnect|disconnect [--reason <reason>] [--reference <ref>]
                    [--detach | --timeout <duration> [--wait-field]]
                                     one order per meter in the file (CSV with a meterId column, or one id
                                     per line; JSON: ["M-1", …] or [{"meterId": "M-1", …}]); shows a live
                                     progress bar until every order has finished or gone to the
                                     field, unless --detach
  queue                              orders by state and attempts on the wire per link

Meters and the field
  supply <meter> [--cached]          "fault or disconnect?" (reads the meter live unless --cached)
  timeline <meter> [--limit <n>]     orders, attempts, notices, notifications, readings and audit
  work-orders [--status open|assigned|done|cancelled] [--region <region>]
  work-orders assign <workOrderId> --to <crew>
  work-orders complete <workOrderId> --outcome reconnected|disconnected|meter_faulty|no_access|customer_refused
                    [--note <text>]  what the crew found on site; settles the switch order
                                     (done_by_field, or failed)

Monitoring
  alerts [--state open|acknowledged|cleared] [--limit <n>]
                                     alerts, newest first, with who acknowledged or cleared them
  alerts ack <alertId> [--note <text>]    acknowledge: seen, being handled (operator, supervisor)
  alerts clear <alertId> [--note <text>]  clear: over; a cleared alert cannot be acted on (exit 3)
  breakers [--all]                   open disconnect circuit breakers (--all: reset ones too)
  breakers reset <breakerId>         reset a breaker once the cause is fixed; held disconnects resume
  audit verify                       the gateway checks its audit chain: exit 0 intact, 3 tampered
  audit export [--format ndjson|csv] [--from <ISO>] [--to <ISO>] [--actor <id>] [--target <id>] [--limit <n>]
                                     the audit entries with their chain hashes, to stdout
  success-rates [--kind final|first_attempt|attempt] [--window <minutes>] [--fresh]

Plans (disconnects for non-payment)
  plan draft --reason arrears --from <ISO> --to <ISO> (--meters M-1,M-2 | --file <file>) [--note <text>]
  plan approve|reject|cancel <planId>
  plan show <planId> [--watch [--timeout <duration>]]
  plan list [--status draft|approved|rejected|cancelled]

Meter keys (admin)
  keys import <file> [--format csv|json] [--wrapped-with-env <NAME>] [--replace]
                                     import a manufacturer's key file (meter id, system title, GUEK,
                                     GAK, optional KEK); keys wrapped (RFC 3394) under the transport
                                     key the gateway holds in its environment variable NAME
                                     (METERLINE_TRANSPORT_KEY_…); all rows or none
  keys list <meter>                  a meter's key sets: ids, states and times (never key bytes)
  keys renew <meter>                 new keys to the meter (global_key_transfer, wrapped under its KEK),
                                     proved by an association with them; prints the new key set id and
                                     its state (current, or pending when the proof did not come back)

API keys (admin)
  api-keys list                      the API keys (never their secrets)
  api-keys create --role <role> (--name <label> | --client <clientId>)
                                     a key for a new client or another key of an existing one; the
                                     secret is printed once, on the last line of stdout
  api-keys rotate <keyId>            a new secret (printed once); the old one stops working at once
  api-keys revoke <keyId>            the key is refused from the next request on

  whoami                             the key's client (label, id), role and permissions

Contexts (a gateway URL and API key per name, in $XDG_CONFIG_HOME/meterline/contexts.json, else
~/.config/meterline/contexts.json; mode 0600, never printed)
  login [--context <name>] --url <url>
                                     reads the key from stdin (piped) or a prompt, never from the
                                     arguments; checks it (whoami), stores it and makes the context
                                     current (default name: default)
  context list                       the contexts, the current one marked *
  context use <name>                 make a context current
  context remove <name>              forget a context and its key

  completion bash|zsh                a shell completion script (bash: eval "$(meterline completion bash)")

Options
  --url <url>              the gateway
  --key <key>              the API key
  --context <name>         use this stored context; the gateway and key are taken from, in this order:
                           --url/--key, --context, $METERLINE_URL/$METERLINE_KEY, the current context
                           (URL default http://127.0.0.1:8080)
  --json                   print the API's JSON answer (one JSON document) instead of text
  --idempotency-key <key>  the Idempotency-Key of the write (default: a new random key); re-running a
                           command with the same key returns the first result instead of acting twice
  --timeout <duration>     with --wait/--watch: stop waiting after this long (500ms, 30s, 5m, 2h; a bare
                           number is seconds); exit 6 when the order is still open then
  --wait-field             with --wait/--watch: go on waiting while the order is with a field crew
                           (escalated); without it, waiting stops there with exit 7
  -h, --help               this text

Exit codes
  0  done (with --wait/--watch: the order ended done, armed or done_by_field)
  1  other error (gateway unreachable, internal error; with --wait/--watch: the order failed)
  2  usage error: bad arguments, or the gateway found the request invalid (400, 413, 422)
  3  refused by a rule or a conflict (409: E_PLAN_REQUIRED, E_RECONNECT_PENDING, E_IDEMPOTENCY_CONFLICT, …,
     and E_SELF_APPROVAL); with --wait/--watch: the order ended refused, cancelled or superseded;
     bulk: at least one order refused or not successful; audit verify: the audit chain is tampered
  4  not found (unknown meter, order, plan, work order, context)
  5  authentication or permission: no key, unknown or revoked key (401), or the key's role may not do
     this (403 E_FORBIDDEN, E_REASON_NOT_ALLOWED, E_CREDIT_CUTOFF_RESERVED); the contexts file is open to
     others (E_CONTEXT_FILE_MODE)
  6  still open: with --wait/--watch (or bulk) and --timeout, the timeout passed before the order (or
     plan, or every order of the bulk) ended
  7  escalated: with --wait/--watch (or bulk), the order (or one of the bulk's) went to a field crew, which
     can take hours (--wait-field waits for the crew)
`;

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  errIsTty: boolean;
  readSecret: (prompt: string) => Promise<string>;
}

const OPTIONS = {
  ...WAIT_OPTIONS,
  ...CONTEXT_OPTIONS,
  ...RESOURCE_OPTIONS,
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  'idempotency-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  reason: { type: 'string' },
  reference: { type: 'string' },
  'payment-at': { type: 'string' },
  urgent: { type: 'boolean' },
  note: { type: 'string' },
  'not-before': { type: 'string' },
  wait: { type: 'boolean' },
  watch: { type: 'boolean' },
  meter: { type: 'string' },
  state: { type: 'string' },
  limit: { type: 'string' },
  action: { type: 'string' },
  detach: { type: 'boolean' },
  status: { type: 'string' },
  region: { type: 'string' },
  kind: { type: 'string' },
  window: { type: 'string' },
  fresh: { type: 'boolean' },
  cached: { type: 'boolean' },
  from: { type: 'string' },
  to: { type: 'string' },
  meters: { type: 'string' },
  file: { type: 'string' },
  format: { type: 'string' },
  'wrapped-with-env': { type: 'string' },
  replace: { type: 'boolean' },
  remove: { type: 'boolean' },
  after: { type: 'string' },
  'requested-by': { type: 'string' },
  id: { type: 'string' },
  'oldest-first': { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parse>['values'];
const parse = (argv: string[]) => parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });

function isoOption(name: string, value: string): string;
function isoOption(name: string, value: string | undefined): string | undefined;
function isoOption(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw usageError(`--${name}: "${value}" is not a date and time (use ISO 8601, e.g. 2026-11-24T09:00:00Z)`);
  return new Date(ms).toISOString();
}
const intOption = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw usageError(`--${name}: "${value}" is not a whole number`);
  return Number(value);
};
const need = (value: string | undefined, what: string): string => {
  if (!value) throw usageError(`missing ${what}; see meterline --help`);
  return value;
};

export async function main(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`meterline: ${(err as Error).message} (see meterline --help)`);
    return EXIT.usage;
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    io.out(USAGE);
    return EXIT.ok;
  }
  if (positionals.length === 0) {
    io.err(USAGE);
    return EXIT.usage;
  }
  const print = (json: unknown, text: () => string) => io.out(v.json ? JSON.stringify(json, null, 2) : text());
  try {
    const [command, ...args] = positionals;
    if (!Object.hasOwn(COMMANDS, command!)) throw usageError(`unknown command "${command}"`);
    // Commands about the CLI's own set-up run without a gateway target.
    if (command === 'completion') {
      io.out(completionScript(args, OPTIONS));
      return EXIT.ok;
    }
    if (command === 'login') return await login(v, args, env, io);
    if (command === 'context') return contextCommand(v, args, env, io);
    const client = new ApiClient({ ...resolveTarget(v, env, io.err), idempotencyKey: v['idempotency-key'] });
    return await run(positionals, v, client, io, print);
  } catch (err) {
    if (err instanceof CliError) {
      if (v.json) io.out(JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } }, null, 2));
      io.err(`meterline: ${err.code}: ${err.message}${err.exitCode === EXIT.usage && err.code === 'E_USAGE' ? ' (meterline --help)' : ''}`);
      return err.exitCode;
    }
    io.err(`meterline: ${(err as Error).stack ?? String(err)}`);
    return EXIT.other;
  }
}

type Print = (json: unknown, text: () => string) => void;

async function run(positionals: string[], v: Values, client: ApiClient, io: Io, print: Print): Promise<number> {
  const [command, ...args] = positionals;
  waitSettings(v, Boolean(v.wait || v.watch) || (command === 'bulk' && !v.detach)); // a bad --timeout is refused before anything is sent
  const arg = (i: number, what: string) => need(args[i], what);
  const noExtra = (count: number) => {
    if (args.length > count) throw usageError(`unexpected argument "${args[count]}" for ${command}`);
  };
  switch (command) {
    case 'whoami': {
      noExtra(0);
      const who = await client.ok(client.api.GET('/v1/whoami'));
      print(who, () => `${who.name} (${who.role}), client ${who.clientId}\n  may: ${who.permissions.join(', ')}\n  disconnect reasons: ${who.disconnectReasons.length > 0 ? who.disconnectReasons.join(', ') : 'none'}`);
      return EXIT.ok;
    }
    case 'reconnect': {
      const meter = arg(0, 'the meter id: meterline reconnect <meter>');
      noExtra(1);
      const body: BodyOf<'/v1/meters/{meterId}/reconnect', 'post'> = {
        reason: asGiven(v.reason ?? 'payment'),
        ...(v['payment-at'] ? { paymentReceivedAt: isoOption('payment-at', v['payment-at']) } : {}),
        ...(v.urgent ? { urgent: true } : {}),
        ...(v.note ? { note: v.note } : {}),
      };
      return submitOrder(client, io, print, v, await client.ok(client.api.POST('/v1/meters/{meterId}/reconnect', { params: { path: { meterId: meter }, header: client.write() }, body })));
    }
    case 'disconnect': {
      const meter = arg(0, 'the meter id: meterline disconnect <meter> --reason <reason>');
      noExtra(1);
      // Only the reasons this key may use are offered (DOMAIN.md rule 7); the gateway checks them again.
      if (!v.reason) {
        const who = await client.ok(client.api.GET('/v1/whoami'));
        if (who.disconnectReasons.length === 0) throw new CliError(EXIT.auth, 'E_REASON_NOT_ALLOWED', `the ${who.role} role may not disconnect meters directly`);
        throw usageError(`--reason: one of ${who.disconnectReasons.join(', ')} (the reasons your key may use), with --reference`);
      }
      const body: BodyOf<'/v1/meters/{meterId}/disconnect', 'post'> = {
        reason: asGiven(v.reason),
        ...(v.reference ? { reference: v.reference } : {}),
        ...(v.note ? { note: v.note } : {}),
        ...(v['not-before'] ? { notBefore: isoOption('not-before', v['not-before']) } : {}),
      };
      return submitOrder(client, io, print, v, await client.ok(client.api.POST('/v1/meters/{meterId}/disconnect', { params: { path: { meterId: meter }, header: client.write() }, body })));
    }
    case 'limit': {
      const meter = arg(0, 'the meter id: meterline limit <meter> <watts> --reason <reason>, or meterline limit <meter> --remove');
      if (v.remove && args[1] !== undefined) throw usageError('give either the watts or --remove, not both');
      const given = v.remove ? null : arg(1, 'the limit in watts (or --remove)');
      if (given !== null && !/^\d+$/.test(given)) throw usageError(`the limit "${given}" is not a whole number of watts`);
      const watts = given === null ? null : Number(given);
      noExtra(v.remove ? 1 : 2);
      const body: BodyOf<'/v1/meters/{meterId}/limit', 'post'> = {
        limitW: watts,
        reason: asGiven(v.reason ?? (v.remove ? 'operator' : need(undefined, '--reason arrears|customer_request|safety'))),
        ...(v.reference ? { reference: v.reference } : {}),
        ...(v.note ? { note: v.note } : {}),
        ...(v['not-before'] ? { notBefore: isoOption('not-before', v['not-before']) } : {}),
      };
      return submitOrder(client, io, print, v, await client.ok(client.api.POST('/v1/meters/{meterId}/limit', { params: { path: { meterId: meter }, header: client.write() }, body })));
    }
    case 'approve': {
      const id = arg(0, 'the order id: meterline approve <orderId>');
      noExtra(1);
      const order = await client.ok(client.api.POST('/v1/orders/{orderId}/approve', { params: { path: { orderId: id }, header: client.write() } }));
      print(order, () => orderText(order));
      return EXIT.ok;
    }
    case 'order': {
      const id = arg(0, 'the order id: meterline order <orderId>');
      noExtra(1);
      const order = await getOrder(client, id);
      if (!v.watch) {
        print(order, () => orderText(order));
        return EXIT.ok;
      }
      return watchOrder(client, io, print, Boolean(v.json), waitSettings(v), order);
    }
    case 'cancel': {
      const id = arg(0, 'the order id: meterline cancel <orderId> --reason <text>');
      noExtra(1);
      const reason = need(v.reason, '--reason (why the order is withdrawn; it is audited)');
      const order = await client.ok(client.api.POST('/v1/orders/{orderId}/cancel', { params: { path: { orderId: id }, header: client.write() }, body: { reason } }));
      print(order, () => orderText(order));
      return EXIT.ok;
    }
    case 'orders': {
      noExtra(0);
      type Query = QueryOf<'/v1/orders', 'get'>;
      const query: Query = {
        meterId: v.meter,
        state: asGiven<Query['state']>(v.state?.split(',').map((st) => st.trim())),
        action: asGiven(v.action),
        reason: asGiven(v.reason),
        requestedBy: v['requested-by'],
        note: v.note,
        createdFrom: isoOption('from', v.from),
        createdTo: isoOption('to', v.to),
        q: v.id,
        order: v['oldest-first'] ? 'asc' : undefined,
        after: v.after,
        limit: intOption('limit', v.limit),
      };
      const res = await client.ok(client.api.GET('/v1/orders', { params: { query } }));
      print(res, () =>
        table(
          ['ORDER', 'METER', 'ACTION', 'STATE', 'CREATED', 'WHY'],
          res.items.map((o) => [o.id, o.meterId, o.action, o.state, time(o.createdAt), o.stateReason ?? '']),
        ) + (res.next ? `\nnext page: --after ${res.next}` : '\n(last page)'),
      );
      return EXIT.ok;
    }
    case 'queue': {
      noExtra(0);
      const q = await client.ok(client.api.GET('/v1/queue'));
      print(q, () => table(['STATE', 'ORDERS'], Object.entries(q.byState).map(([s, n]) => [s, n])) + `\non the wire: ${JSON.stringify(q.inFlightByLink)}`);
      return EXIT.ok;
    }
    case 'bulk':
      return bulk(client, io, print, v, arg(0, 'the file: meterline bulk <file.csv|file.json> --action reconnect|disconnect'), args.length);
    case 'supply': {
      const meter = arg(0, 'the meter id: meterline supply <meter>');
      noExtra(1);
      const s = await client.ok(client.api.GET('/v1/meters/{meterId}/supply', { params: { path: { meterId: meter }, query: { refresh: v.cached ? 'false' : 'true' } } }));
      print(s, () => `${s.meterId}: ${s.status}\n  ${s.sentence}\n  live read: ${s.liveRead}${s.liveReadDetail ? ` (${s.liveReadDetail})` : ''}${s.observed ? `; last observed ${s.observed.relay} at ${time(s.observed.at)}` : ''}`);
      return EXIT.ok;
    }
    case 'timeline': {
      const meter = arg(0, 'the meter id: meterline timeline <meter>');
      noExtra(1);
      const t = await client.ok(client.api.GET('/v1/meters/{meterId}/timeline', { params: { path: { meterId: meter }, query: { limit: intOption('limit', v.limit) } } }));
      print(t, () => table(['WHEN', 'KIND', 'WHAT', 'ORDER'], t.items.map((i) => [time(i.at), i.kind, i.summary, i.orderId ?? ''])));
      return EXIT.ok;
    }
    case 'work-orders': {
      if (args[0] === 'assign' || args[0] === 'complete') return workOrderCommand(client, print, v, args);
      noExtra(0);
      const res = await client.ok(client.api.GET('/v1/work-orders', { params: { query: { status: asGiven<QueryOf<'/v1/work-orders', 'get'>['status']>(v.status), region: v.region, limit: 1000 } } }));
      const items = res.items.slice().sort((a, b) => (a.timeLeftMinutes ?? Infinity) - (b.timeLeftMinutes ?? Infinity));
      print({ items }, () => table(['TIME LEFT', 'DEADLINE', 'DUE', 'METER', 'REGION', 'ACTION', 'P', 'STATUS', 'ID', 'WHY'], items.map((w) => [minutes(w.timeLeftMinutes), time(w.deadline), time(w.dueAt), w.meterId, w.region, w.action, w.priority, w.status, w.id, w.reason])));
      return EXIT.ok;
    }
    case 'success-rates': {
      noExtra(0);
      const kind = v.kind ?? 'final';
      const windowMinutes = intOption('window', v.window);
      const report = await client.ok(client.api.GET('/v1/stats/success-rates', { params: { query: { fresh: v.fresh ? 'true' : undefined } } }));
      const rates = report.rates.filter((r) => r.kind === kind && (windowMinutes === undefined || r.windowMinutes === windowMinutes));
      const alerting = new Set(report.alerting.map((r) => `${r.windowMinutes}|${r.scope}|${r.key}|${r.action}|${r.kind}`));
      const threshold = typeof report.alertBelow === 'number' ? report.alertBelow : undefined;
      print(report, () =>
        (rates.length === 0
          ? `no ${kind} rates yet (nothing switched in the windows)`
          : table(
              ['WINDOW', 'SCOPE', 'KEY', 'ACTION', 'RATE', 'OK/TOTAL', 'ALERT'],
              rates
                .sort((a, b) => a.windowMinutes - b.windowMinutes || a.scope.localeCompare(b.scope) || a.key.localeCompare(b.key) || a.action.localeCompare(b.action))
                .map((r) => [`${r.windowMinutes}m`, r.scope, r.key, r.action, `${(r.rate * 100).toFixed(1)}%`, `${r.ok}/${r.total}`, alerting.has(`${r.windowMinutes}|${r.scope}|${r.key}|${r.action}|${r.kind}`) ? 'BELOW THRESHOLD' : '']),
            )) + `\nkind ${kind}, evaluated ${time(report.at)}${threshold !== undefined ? `, alert below ${(threshold * 100).toFixed(0)}%` : ''}`,
      );
      return EXIT.ok;
    }
    case 'plan':
      return plan(client, io, print, v, args);
    case 'keys':
      return meterKeys(client, print, v, args);
    case 'alerts':
      return alerts(client, print, v, args);
    case 'breakers':
      return breakers(client, print, v, args);
    case 'api-keys':
      return apiKeys(client, io, print, v, args);
    case 'audit':
      return audit(client, io, print, v, args);
    default:
      throw usageError(`unknown command "${command}"`);
  }
}

/** Print the order a write created, or follow it with --wait. */
async function submitOrder(client: ApiClient, io: Io, print: Print, v: Values, order: OrderLike): Promise<number> {
  if (!v.wait) {
    print(order, () => `${orderText(order)}\nfollow it: meterline order ${order.id} --watch`);
    return EXIT.ok;
  }
  return watchOrder(client, io, print, Boolean(v.json), waitSettings(v), order);
}

interface BulkItem {
  meterId: string;
  [field: string]: unknown;
}

/** Orders from a CSV (header with meterId and optional reason, reference, paymentReceivedAt, urgent, note; or one id per line) or JSON file. */
export function readBulkFile(path: string): BulkItem[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (extname(path).toLowerCase() === '.json' || /^\s*[[{]/.test(text)) {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw usageError(`${path} is not valid JSON: ${(err as Error).message}`);
    }
    const list = Array.isArray(data) ? data : ((data as { orders?: unknown[]; meters?: unknown[] }).orders ?? (data as { meters?: unknown[] }).meters);
    if (!Array.isArray(list)) throw usageError(`${path}: expected a JSON array of meter ids or of {"meterId": …} objects`);
    return list.map((x, i) => {
      if (typeof x === 'string') return { meterId: x };
      if (x && typeof x === 'object' && typeof (x as BulkItem).meterId === 'string') return x as BulkItem;
      throw usageError(`${path}: item ${i} has no meterId`);
    });
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) return [];
  const header = lines[0]!.split(',').map((c) => c.trim());
  const col = header.findIndex((c) => /^meter_?id$/i.test(c));
  if (col < 0) return lines.map((l) => ({ meterId: l.split(',')[0]!.trim() }));
  return lines.slice(1).map((l) => {
    const cells = l.split(',').map((c) => c.trim());
    const item: BulkItem = { meterId: cells[col]! };
    header.forEach((h, i) => {
      const value = cells[i];
      if (i === col || !value) return;
      if (h === 'urgent') item.urgent = value === 'true' || value === '1' || value === 'yes';
      else if (['reason', 'reference', 'paymentReceivedAt', 'note', 'notBefore'].includes(h)) item[h] = value;
    });
    return item;
  });
}

async function bulk(client: ApiClient, io: Io, print: Print, v: Values, file: string, argCount: number): Promise<number> {
  if (argCount > 1) throw usageError('bulk takes one file');
  const action = need(v.action, '--action reconnect|disconnect');
  if (action !== 'reconnect' && action !== 'disconnect') throw usageError(`--action must be reconnect or disconnect, not "${action}"`);
  const items = readBulkFile(file);
  if (items.length === 0) throw usageError(`${file} names no meters`);
  for (const line of duplicateWarnings(file, items.map((i) => i.meterId))) io.err(line);
  const orders = items.map((i) => ({
    ...i,
    action,
    ...(i.reason === undefined ? { reason: v.reason ?? (action === 'reconnect' ? 'payment' : need(undefined, '--reason for a bulk disconnect (or a reason column)')) } : {}),
    ...(action === 'disconnect' && i.reference === undefined && v.reference ? { reference: v.reference } : {}),
  }));

  const states = new Map<string, string>();
  const early = new Map<string, string>();
  const finishedAt: number[] = [];
  const abort = new AbortController();
  let onChange = () => {};
  const record = (id: string, state: string) => {
    const before = states.get(id);
    if (before === undefined) return void early.set(id, state);
    if (before === state) return;
    states.set(id, state);
    if (FINAL.has(state) && !FINAL.has(before)) finishedAt.push(Date.now());
    onChange();
  };
  // Subscribe before submitting, so no change between the answer and the subscription is missed.
  if (!v.detach) {
    await Promise.race([
      new Promise<void>((resolve) => void followEvents(client, {}, { onOpen: resolve, onOrders: (os) => os.forEach((o) => record(o.id, o.state)) }, abort.signal)),
      new Promise<void>((resolve) => setTimeout(resolve, 3000)),
    ]);
  }
  let res: AnswerOf<'/v1/orders/bulk', 'post', 202>;
  try {
    res = await client.ok(client.api.POST('/v1/orders/bulk', { params: { header: client.write() }, body: { orders: orders as BodyOf<'/v1/orders/bulk', 'post'>['orders'] } }));
  } catch (err) {
    abort.abort();
    throw nameUnknownMeters(err, orders.map((o) => o.meterId));
  }
  for (const r of res.results) states.set(r.order.id, r.order.state);
  for (const [id, state] of early) if (states.has(id)) record(id, state);
  const startedAt = Date.now();
  if (!v.json) io.err(`bulk ${action}: ${res.created} created, ${res.replayed} replayed, ${res.refused} refused`);
  if (v.detach) {
    print(res, () => res.results.map((r) => `${r.order.meterId}\t${r.order.id}\t${r.order.state}`).join('\n'));
    return res.refused > 0 ? EXIT.refused : EXIT.ok;
  }

  const progress = () => {
    const all = [...states.values()];
    const finished = all.filter((s) => FINAL.has(s)).length;
    const counts: Record<string, number> = {};
    for (const s of all) counts[s] = (counts[s] ?? 0) + 1;
    const now = Date.now();
    const recent = finishedAt.filter((t) => t >= now - 30_000).length;
    const perSecond = recent / Math.max(1, Math.min(30, (now - startedAt) / 1000));
    const left = all.length - finished;
    const eta = left === 0 ? 'done' : perSecond > 0 ? `ETA ${duration(left / perSecond)}` : 'ETA ?';
    return { finished, total: all.length, counts, line: `${bar(finished, all.length)}  ${Object.entries(counts).map(([s, n]) => `${s} ${n}`).join(', ')}  ${(perSecond * 60).toFixed(0)}/min  ${eta}` };
  };
  let lastPrinted = 0;
  const draw = (force = false) => {
    if (v.json) return;
    const now = Date.now();
    if (io.errIsTty) {
      if (force || now - lastPrinted > 100) io.err(`\r\x1b[2K${progress().line}`);
    } else if (force || now - lastPrinted > 5000) io.err(progress().line);
    else return;
    lastPrinted = now;
  };
  // Waiting ends when every order is final or with a field crew (unless --wait-field), or at --timeout.
  const settings = waitSettings(v, true);
  await new Promise<void>((resolve) => {
    const done = () => {
      if ([...states.values()].every((s) => stopsAt(s, settings))) resolve();
    };
    const giveUp = settings.timeoutMs === undefined ? undefined : setTimeout(resolve, settings.timeoutMs);
    abort.signal.addEventListener('abort', () => clearTimeout(giveUp));
    onChange = () => {
      draw();
      done();
    };
    draw(true);
    done();
    // Redraw the ETA, and now and then ask the API about orders that have not moved (a stream may drop).
    let quiet = 0;
    const timer = setInterval(() => {
      draw();
      quiet += 1;
      if (quiet % 10 !== 0) return;
      const open = [...states.entries()].filter(([, s]) => !FINAL.has(s)).slice(0, 50);
      void Promise.all(open.map(([id]) => getOrder(client, id).then((o) => record(o.id, o.state)).catch(() => undefined)));
    }, 1000);
    abort.signal.addEventListener('abort', () => clearInterval(timer));
  }).finally(() => abort.abort());
  draw(true);
  if (!v.json && io.errIsTty) io.err('\n');
  const p = progress();
  const summary = { created: res.created, replayed: res.replayed, refused: res.refused, total: p.total, byState: p.counts, orders: res.results.map((r) => ({ meterId: r.order.meterId, orderId: r.order.id, state: states.get(r.order.id) })) };
  print(summary, () => table(['STATE', 'ORDERS'], Object.entries(p.counts).map(([s, n]) => [s, n])));
  return exitForStates(Object.keys(p.counts), settings);
}

async function plan(client: ApiClient, io: Io, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub, id, extra] = args;
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}" for plan ${sub}`);
  type Plan = AnswerOf<'/v1/plans/{planId}', 'get'>;
  const planText = (p: Plan) =>
    `plan ${p.id}: ${p.status} (${p.reason}), by ${p.author}${p.decidedBy ? `, decided by ${p.decidedBy}` : ''}\n  window ${time(p.windowFrom)} – ${time(p.windowTo)}\n  ${Object.entries(p.summary).map(([s, n]) => `${s} ${n}`).join(', ')}\n` +
    table(['METER', 'STATE', 'ORDER', 'WHY'], p.items.map((i) => [i.meterId, i.state ?? 'not created', i.orderId ?? '-', i.why ?? '']));
  switch (sub) {
    case 'draft': {
      if (id !== undefined) throw usageError('plan draft takes no positional argument; name meters with --meters or --file');
      const meters = v.file ? readBulkFile(v.file).map((i) => i.meterId) : v.meters ? v.meters.split(',').map((m) => m.trim()).filter(Boolean) : [];
      if (meters.length === 0) throw usageError('name the meters with --meters M-1,M-2 or --file <file>');
      const body: BodyOf<'/v1/plans', 'post'> = { reason: asGiven(need(v.reason, '--reason arrears|credit_exhausted')), windowFrom: isoOption('from', need(v.from, '--from <ISO time>')), windowTo: isoOption('to', need(v.to, '--to <ISO time>')), meters, ...(v.note ? { note: v.note } : {}) };
      const p = await client.ok(client.api.POST('/v1/plans', { params: { header: client.write() }, body }));
      print(p, () => `${planText(p)}\nnext: a supervisor runs meterline plan approve ${p.id}`);
      return EXIT.ok;
    }
    case 'approve':
    case 'reject':
    case 'cancel': {
      const action = { params: { path: { planId: need(id, `the plan id: meterline plan ${sub} <planId>`) }, header: client.write() } };
      const p = await client.ok(
        sub === 'approve' ? client.api.POST('/v1/plans/{planId}/approve', action) : sub === 'reject' ? client.api.POST('/v1/plans/{planId}/reject', action) : client.api.POST('/v1/plans/{planId}/cancel', action),
      );
      print(p, () => planText(p));
      return EXIT.ok;
    }
    case 'show': {
      const planId = need(id, 'the plan id: meterline plan show <planId>');
      const getPlan = () => client.ok(client.api.GET('/v1/plans/{planId}', { params: { path: { planId } } }));
      let p = await getPlan();
      if (v.watch) {
        const { timeoutMs } = waitSettings(v);
        const giveUpAt = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
        for (;;) {
          const open = p.items.filter((i) => !i.state || !FINAL.has(i.state)).length;
          if (!v.json) io.err(`${bar(p.items.length - open, p.items.length)}  ${Object.entries(p.summary).map(([s, n]) => `${s} ${n}`).join(', ')}`);
          if (open === 0 || p.status === 'rejected' || p.status === 'cancelled') break;
          if (Date.now() >= giveUpAt) {
            print(p, () => planText(p));
            return EXIT.stillOpen;
          }
          await new Promise((r) => setTimeout(r, 2000));
          p = await getPlan();
        }
      }
      print(p, () => planText(p));
      return EXIT.ok;
    }
    case 'list': {
      const res = await client.ok(client.api.GET('/v1/plans', { params: { query: { status: asGiven<QueryOf<'/v1/plans', 'get'>['status']>(v.status) } } }));
      print(res, () => table(['PLAN', 'STATUS', 'REASON', 'METERS', 'AUTHOR', 'WINDOW'], res.items.map((p) => [p.id, p.status, p.reason, p.items.length, p.author, `${time(p.windowFrom)} – ${time(p.windowTo)}`])));
      return EXIT.ok;
    }
    default:
      throw usageError(`plan needs one of: draft, approve, reject, cancel, show, list (got ${sub ?? 'nothing'})`);
  }
}

const isKeyFileFormat = (format: string): format is BodyOf<'/v1/meter-keys/import', 'post'>['format'] => format === 'csv' || format === 'json';

/** `keys import`, `keys list` and `keys renew`: the file's text goes to the gateway; a transport key is named, never sent. */
async function meterKeys(client: ApiClient, print: Print, v: Values, args: string[]): Promise<number> {
  const [sub, target, extra] = args;
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}" for keys ${sub}`);
  if (sub === 'import') {
    const path = need(target, 'the key file: meterline keys import <file>');
    let content: string;
    try {
      content = readFileSync(path, 'utf8');
    } catch (e) {
      throw usageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const format = v.format ?? (extname(path).toLowerCase() === '.json' ? 'json' : 'csv');
    if (!isKeyFileFormat(format)) throw usageError(`--format: "${format}" is not csv or json`);
    const body: BodyOf<'/v1/meter-keys/import', 'post'> = { format, content, ...(v['wrapped-with-env'] ? { wrappedWithEnv: v['wrapped-with-env'] } : {}), ...(v.replace ? { replace: true } : {}) };
    const res = await client.ok(client.api.POST('/v1/meter-keys/import', { params: { header: client.write() }, body }));
    print(res, () =>
      [`${res.imported} meter(s): ${res.created} created, ${res.unchanged} unchanged, ${res.replaced} replaced`, ...res.keySets.map((k) => `  ${k.meterId}  ${k.keySetId}  ${k.result}`)].join('\n'),
    );
    return EXIT.ok;
  }
  if (sub === 'list') {
    const meter = need(target, 'the meter id: meterline keys list <meter>');
    const res = await client.ok(client.api.GET('/v1/meters/{meterId}/keys', { params: { path: { meterId: meter } } }));
    print(res, () => (res.keySets.length === 0 ? `meter ${meter} has no keys` : res.keySets.map((k) => `${k.keySetId}  ${k.state.padEnd(8)}  created ${k.createdAt}${k.retiredAt ? `  retired ${k.retiredAt}` : ''}`).join('\n')));
    return EXIT.ok;
  }
  if (sub === 'renew') {
    const meter = need(target, 'the meter id: meterline keys renew <meter>');
    const res = await client.ok(client.api.POST('/v1/meters/{meterId}/keys/renew', { params: { path: { meterId: meter }, header: client.write() } }));
    print(res, () =>
      [
        ...(res.settled ? [`an earlier renewal's key set ${res.settled.keySetId} was ${res.settled.result} first`] : []),
        res.state === 'current' ? `meter ${res.meterId}: keys renewed and proved: ${res.keySetId} current (${res.previousKeySetId} retired)` : `meter ${res.meterId}: key set ${res.keySetId} pending, ${res.previousKeySetId} kept: ${res.detail ?? ''}`,
      ].join('\n'),
    );
    return EXIT.ok;
  }
  throw usageError('keys import <file> | keys list <meter> | keys renew <meter>');
}

// Run when executed as a program (not when imported by a test).
// (npm installs the bin as a symlink, so compare real paths.)
if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  const code = await main(process.argv.slice(2), process.env, {
    out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => process.stderr.write(t.startsWith('\r') || t === '\n' ? t : `${t}\n`),
    errIsTty: Boolean(process.stderr.isTTY),
    readSecret,
  });
  process.exitCode = code;
}
