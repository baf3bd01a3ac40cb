import { ApiClient, EXIT, usageError } from './api-client.js';
import { followEvents } from './event-stream.js';
import { duration, orderText, type OrderLike } from './format.js';

/**
 * `--wait` and `--watch`: follow an order to its end, or to the field, or until `--timeout` passes. An order that
 * went to a field crew (`escalated`) can stay open for hours, so waiting stops there with its own exit code unless
 * `--wait-field` asks to go on waiting for the crew.
 */

export const SUCCESS = new Set(['done', 'armed', 'done_by_field']);
export const FINAL = new Set(['done', 'armed', 'done_by_field', 'failed', 'cancelled', 'superseded', 'refused']);
const NOT_OK_FINAL = new Set(['cancelled', 'superseded', 'refused']);

/** Options of the commands that wait (parsed by meterline.ts with the rest). */
export const WAIT_OPTIONS = {
  timeout: { type: 'string' },
  'wait-field': { type: 'boolean' },
} as const;

export interface WaitSettings {
  /** Stop waiting after this long; undefined: no limit. */
  timeoutMs: number | undefined;
  /** Go on waiting while the order is with a field crew. */
  waitField: boolean;
}

/** `30s`, `5m`, `2h`, `500ms`, or a bare number of seconds. */
export function parseDuration(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'] : NaN;
  if (!(ms > 0)) throw usageError(`--${name}: "${value}" is not a duration (e.g. 30s, 5m, 2h)`);
  return ms;
}

/** The wait settings of a command line; --timeout and --wait-field mean nothing without --wait or --watch. */
export function waitSettings(v: { wait?: boolean; watch?: boolean; timeout?: string; 'wait-field'?: boolean }): WaitSettings {
  if ((v.timeout !== undefined || v['wait-field']) && !v.wait && !v.watch) throw usageError('--timeout and --wait-field go with --wait (or order/plan show --watch)');
  return { timeoutMs: v.timeout === undefined ? undefined : parseDuration('timeout', v.timeout), waitField: Boolean(v['wait-field']) };
}

/** Whether waiting for an order in this state is over: final, or escalated when the field is not waited for. */
const stopsAt = (state: string, settings: WaitSettings) => FINAL.has(state) || (state === 'escalated' && !settings.waitField);

/**
 * Follow an order until `stopsAt` or the timeout. Exit 0 for done/armed/done_by_field, 3 refused/cancelled/superseded,
 * 1 failed, 7 escalated (without --wait-field), 6 still open when the timeout passed.
 */
export async function watchOrder(
  client: ApiClient,
  io: { err: (text: string) => void },
  print: (json: unknown, text: () => string) => void,
  json: boolean,
  settings: WaitSettings,
  first: OrderLike,
): Promise<number> {
  let last = first.state;
  const say = (state: string, why: string | null) => {
    if (!json) io.err(`${new Date().toISOString()} ${first.id} ${state}${why ? ` (${why})` : ''}`);
  };
  say(first.state, first.stateReason);
  if (!stopsAt(first.state, settings)) {
    const abort = new AbortController();
    await new Promise<void>((resolve, reject) => {
      const check = async () => {
        const o = await client.request<OrderLike>('GET', `/v1/orders/${encodeURIComponent(first.id)}`);
        if (o.state !== last) {
          last = o.state;
          say(o.state, o.stateReason);
        }
        if (stopsAt(o.state, settings)) resolve();
      };
      // Live events say when to look; a slow poll covers a dropped stream.
      void followEvents(client, `?meterId=${encodeURIComponent(first.meterId)}`, { onOrders: (os) => { if (os.some((o) => o.id === first.id)) check().catch(reject); } }, abort.signal);
      const timer = setInterval(() => check().catch(reject), 3000);
      const deadline = settings.timeoutMs === undefined ? undefined : setTimeout(resolve, settings.timeoutMs);
      abort.signal.addEventListener('abort', () => {
        clearInterval(timer);
        clearTimeout(deadline);
      });
      check().catch(reject);
    }).finally(() => abort.abort());
  }
  const full = await client.request<OrderLike>('GET', `/v1/orders/${encodeURIComponent(first.id)}`);
  print(full, () => orderText(full));
  if (SUCCESS.has(full.state)) return EXIT.ok;
  if (NOT_OK_FINAL.has(full.state)) return EXIT.refused;
  if (FINAL.has(full.state)) return EXIT.other;
  if (full.state === 'escalated' && !settings.waitField) {
    if (!json) io.err(`${first.id} went to a field crew (escalated); wait for the crew with: meterline order ${first.id} --watch --wait-field`);
    return EXIT.escalated;
  }
  if (!json) io.err(`${first.id} is still ${full.state} after ${duration((settings.timeoutMs ?? 0) / 1000)} (--timeout)`);
  return EXIT.stillOpen;
}
