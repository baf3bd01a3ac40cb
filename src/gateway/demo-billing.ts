import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';

/**
 * Demo only: a simulated billing system and customer channel, a real HTTP server on a port of its own, which the
 * gateway calls exactly as it calls production systems:
 * - `POST /recheck` answers the payment re-check (DOMAIN.md rule 3, contract in src/integrations/billing-recheck.ts):
 *   `{"inArrears": true}` for a meter in arrears, `{"inArrears": false}` once the demo has paid for it;
 * - `POST /notifications` takes the pre-disconnect notifications (rule 2) and accepts only a body whose
 *   `X-Meterline-Signature` is the HMAC-SHA256 under the shared secret, as a production channel must.
 * Nothing here touches the gateway's store: it only answers what the gateway asks.
 */
export interface DemoBilling {
  recheckUrl: string;
  notificationsUrl: string;
  /** The notifications' HMAC key (made per start: the demo's two ends share it in memory). */
  secret: string;
  /** The demo's customers pay: the next re-check for the meter answers "paid". */
  paid(meterId: string): void;
  /** A meter falls into arrears again (a new demo plan names it). */
  inArrears(meterId: string): void;
  close(): Promise<void>;
}

const Recheck = z.object({ meterId: z.string().min(1).max(64), orderId: z.string().min(1).max(64), reason: z.string().max(64) });
const MAX_BODY = 64 * 1024;

export async function startDemoBilling(logger: Logger): Promise<DemoBilling> {
  const paid = new Set<string>();
  const secret = randomBytes(32).toString('hex');
  const log = logger.child({ component: 'demo-billing' });

  const server: Server = createServer((req, res) => {
    const answer = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method !== 'POST') return void answer(405, { error: 'POST only' });
    readBody(req).then(
      (body) => {
        if (req.url === '/recheck') {
          let parsed;
          try {
            parsed = Recheck.safeParse(JSON.parse(body));
          } catch {
            parsed = undefined;
          }
          if (!parsed?.success) return void answer(400, { error: 'expected {"meterId","orderId","reason"}' });
          const isPaid = paid.has(parsed.data.meterId);
          log.debug({ meterId: parsed.data.meterId, orderId: parsed.data.orderId, inArrears: !isPaid }, 'demo billing: payment re-check answered');
          return void answer(200, isPaid ? { inArrears: false, detail: 'demo billing: the customer has paid' } : { inArrears: true });
        }
        if (req.url === '/notifications') {
          const given = String(req.headers['x-meterline-signature'] ?? '');
          const expected = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
          const ok = given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
          if (!ok) return void answer(401, { error: 'bad or missing X-Meterline-Signature' });
          return void answer(202, { accepted: true });
        }
        answer(404, { error: 'unknown path' });
      },
      () => answer(413, { error: 'body too large' }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    recheckUrl: `${base}/recheck`,
    notificationsUrl: `${base}/notifications`,
    secret,
    paid: (meterId) => void paid.add(meterId),
    inArrears: (meterId) => void paid.delete(meterId),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.destroy();
        reject(new Error('too large'));
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
