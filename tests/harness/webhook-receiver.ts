import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP endpoint standing in for a field-service or alerting system: records every delivery, checks its
 * HMAC signature, and can be told to fail (to prove that a dead endpoint loses nothing).
 */
export interface ReceivedWebhook {
  kind: string;
  body: { id: string; kind: string; meterId: string; orderId: string | null; payload: Record<string, unknown> };
  signatureValid: boolean;
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  failing: boolean;
  close(): Promise<void>;
}

export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const state = { received: [] as ReceivedWebhook[], failing: false };
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      if (state.failing) {
        res.writeHead(503).end();
        return;
      }
      const expected = `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
      const got = String(req.headers['x-meterline-signature'] ?? '');
      const signatureValid = got.length === expected.length && timingSafeEqual(Buffer.from(got), Buffer.from(expected));
      const body = JSON.parse(raw) as ReceivedWebhook['body'];
      state.received.push({ kind: body.kind, body, signatureValid });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}
