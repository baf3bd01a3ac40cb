import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../control/clock.js';
import { retryDelay } from '../domain/deadlines.js';
import type { ClientEvent, GatewayStore } from '../store/store.js';

/**
 * Delivers each billing client's change feed to its callback URL: `POST` with the event as JSON,
 * `X-Meterline-Signature: sha256=<HMAC-SHA256 of the body with the client's secret>` and
 * `X-Meterline-Event-Seq` (the event's number in this client's feed: 1, 2, 3, … with no gaps, so a receiver that
 * misses a number knows it lost one; delivery is at least once, so it drops a number it already has). In order
 * per meter: a meter's next event waits until the one before it was delivered;
 * meters do not wait for each other. A failed delivery is retried with backoff (capped at `maxRetryDelayMs`); the
 * feed lives in the store, so an endpoint that is down loses nothing and gets every event, in order, when it is back.
 */
export class CallbackDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly store: GatewayStore,
    private readonly clock: Clock,
    private readonly options: { pollMs: number; concurrency: number; timeoutMs: number; maxRetryDelayMs: number },
    private readonly logger: Logger,
    private readonly onDelivered?: (ok: boolean) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.deliverDue(), this.options.pollMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async deliverDue(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    let delivered = 0;
    try {
      for (const sub of await this.store.listCallbacks()) {
        const pending = await this.store.pendingClientEvents(sub.client, 5000);
        const byMeter = new Map<string, ClientEvent[]>();
        for (const e of pending) byMeter.set(e.meterId, [...(byMeter.get(e.meterId) ?? []), e]);
        const queues = [...byMeter.values()];
        const worker = async () => {
          for (let events = queues.shift(); events; events = queues.shift()) {
            for (const e of events) {
              if (e.nextAttemptAt > this.clock.now()) break; // this meter waits for its retry
              if (!(await this.deliver(sub.url, sub.secret, e))) break; // keep this meter's order
              delivered++;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(this.options.concurrency, queues.length) }, worker));
      }
    } catch (err) {
      this.logger.error({ err }, 'callback delivery round failed');
    } finally {
      this.running = false;
    }
    return delivered;
  }

  private async deliver(url: string, secret: string, e: ClientEvent): Promise<boolean> {
    const body = JSON.stringify({ seq: e.seq, kind: e.kind, meterId: e.meterId, orderId: e.orderId, at: new Date(e.at).toISOString(), payload: e.payload });
    let error: string | null = null;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-meterline-event-seq': String(e.seq),
          'x-meterline-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
        },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).message;
    }
    const now = this.clock.now();
    if (error === null) {
      await this.store.markClientEvent(e.client, e.seq, now, { delivered: true });
      this.onDelivered?.(true);
      return true;
    }
    const retryAt = now + retryDelay(e.attempts + 1, 1000, this.options.maxRetryDelayMs, Math.random());
    await this.store.markClientEvent(e.client, e.seq, now, { delivered: false, error, retryAt });
    this.onDelivered?.(false);
    this.logger.warn({ client: e.client, meterId: e.meterId, orderId: e.orderId, seq: e.seq, error }, 'callback not delivered; will retry');
    return false;
  }
}
