import { ApiClient, EXIT, usageError } from './api-client.js';
import { followEvents } from './event-stream.js';
import { duration, orderText, type OrderLike } from './format.js';

/**
 * `--wait` and `--watch`: follow an order to its end, or to the field, or until `--timeout` passes. An order that
 * went to a field crew (`escalated`) can stay open for hours, so waiting stops there with its own exit code unless
 * `--wait-field` asks to go on waiting for the crew.
 */

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

/** The wait settings of a command line; --timeout and --wait-field mean nothing for a command that does not wait. */
export function waitSettings(v: { wait?: boolean; watch?: boolean; timeout?: string; 'wait-field'?: boolean }, waits = Boolean(v.wait || v.watch)): WaitSettings {
  if ((v.timeout !== undefined || v['wait-field']) && !waits) throw usageError('--timeout and --wait-field go with --wait (or order/plan show --watch, or bulk without --detach)');
  return { timeoutMs: v.timeout === undefined ? undefined : parseDuration('timeout', v.timeout), waitField: Boolean(v['wait-field']) };
}

/** Whether waiting for an order in this state is over: final, or escalated when the field is not waited for. */
export const stopsAt = (state: string, settings: WaitSettings) => FINAL.has(state) || (state === 'escalated' && !settings.waitField);

/**
 * The exit code for orders that were waited for, the gravest first: 1 one failed, 3 one refused, cancelled or
 * superseded, 6 one still open (the timeout passed), 7 one with a field crew, else 0.
 */
export function exitForStates(states: readonly string[], settings: WaitSettings): number {
  if (states.includes('failed')) return EXIT.other;
  if (states.some((s) => NOT_OK_FINAL.has(s))) return EXIT.refused;
  if (states.some((s) => !stopsAt(s, settings))) return EXIT.stillOpen;
  if (states.includes('escalated')) return EXIT.escalated;
  return EXIT.ok;
}

/** An order with its attempts and events. */
export const getOrder = (client: ApiClient, orderId: string) => client.ok(client.api.GET('/v1/orders/{orderId}', { params: { path: { orderId } } }));

/** Follow an order until `stopsAt` or the timeout; the exit code as `exitForStates`. */
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
        const o = await getOrder(client, first.id);
        if (o.state !== last) {
          last = o.state;
          say(o.state, o.stateReason);
        }
        if (stopsAt(o.state, settings)) resolve();
      };
      // Live events say when to look; a slow poll covers a dropped stream.
      void followEvents(client, { meterId: first.meterId }, { onOrders: (os) => { if (os.some((o) => o.id === first.id)) check().catch(reject); } }, abort.signal);
      const timer = setInterval(() => check().catch(reject), 3000);
      const deadline = settings.timeoutMs === undefined ? undefined : setTimeout(resolve, settings.timeoutMs);
      abort.signal.addEventListener('abort', () => {
        clearInterval(timer);
        clearTimeout(deadline);
      });
      check().catch(reject);
    }).finally(() => abort.abort());
  }
  const full = await getOrder(client, first.id);
  print(full, () => orderText(full));
  const code = exitForStates([full.state], settings);
  if (json) return code;
  if (code === EXIT.escalated) io.err(`${first.id} went to a field crew (escalated); wait for the crew with: meterline order ${first.id} --watch --wait-field`);
  if (code === EXIT.stillOpen) io.err(`${first.id} is still ${full.state} after ${duration((settings.timeoutMs ?? 0) / 1000)} (--timeout)`);
  return code;
}
