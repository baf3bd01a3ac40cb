import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../control/clock.js';
import { retryDelay } from '../domain/deadlines.js';
import type { GatewayStore } from '../store/store.js';

/** Where notifications of some kinds go: kinds starting with `kindPrefix` are POSTed to `url`. */
export interface NotificationRoute {
  kindPrefix: string;
  url: string;
  secret: string | null;
}

/**
 * Delivers the notification outbox: pre-disconnect notices (DOMAIN.md rule 2) to the customer-channel system,
 * work orders to the field-service system, alerts to the operators' alerting. `POST <url>` with the JSON payload
 * and `X-Meterline-Signature: sha256=<HMAC-SHA256 of the body>`. A 2xx marks it delivered; anything else is
 * retried with backoff. The outbox lives in the store, so a dead endpoint loses nothing.
 */
export class NotificationDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly store: GatewayStore,
    private readonly routes: readonly NotificationRoute[],
    private readonly pollMs: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.deliverDue(), this.pollMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async deliverDue(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const n of await this.store.pendingNotifications(this.clock.now(), 100, this.routes.map((r) => r.kindPrefix))) {
        const route = this.routes.find((r) => n.kind.startsWith(r.kindPrefix))!;
        const body = JSON.stringify({ id: n.id, kind: n.kind, meterId: n.meterId, orderId: n.orderId, payload: n.payload });
        const headers: Record<string, string> = { 'content-type': 'application/json', 'x-meterline-notification-id': n.id };
        if (route.secret) headers['x-meterline-signature'] = `sha256=${createHmac('sha256', route.secret).update(body).digest('hex')}`;
        let error: string | null = null;
        try {
          const res = await fetch(route.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(5000) });
          if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
        } catch (e) {
          error = (e as Error).message;
        }
        const now = this.clock.now();
        if (error === null) await this.store.markNotification(n.id, now, { delivered: true });
        else {
          const retryAt = now + retryDelay(n.attempts + 1, 1000, 300_000, Math.random());
          this.logger.warn({ notificationId: n.id, meterId: n.meterId, orderId: n.orderId, error }, 'notification not delivered; will retry');
          await this.store.markNotification(n.id, now, { delivered: false, error, retryAt });
        }
      }
    } catch (err) {
      this.logger.error({ err }, 'notification dispatch failed');
    } finally {
      this.running = false;
    }
  }
}
