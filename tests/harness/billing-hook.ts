import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A billing system's payment re-check endpoint (DOMAIN.md rule 3), as a real HTTP server: answers
 * `{"inArrears": …}` per meter, or fails (500 / no answer) when told to, and records every question.
 */
export interface BillingHook {
  url: string;
  /** Meters whose account is paid (answer inArrears: false). */
  paid: Set<string>;
  /** 'ok' answers, '500' answers HTTP 500, 'silent' never answers. */
  mode: 'ok' | '500' | 'silent';
  asked: { meterId: string; orderId: string; reason: string }[];
  close(): Promise<void>;
}

export async function startBillingHook(): Promise<BillingHook> {
  const hook = { paid: new Set<string>(), mode: 'ok' as BillingHook['mode'], asked: [] as BillingHook['asked'] };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const q = JSON.parse(body) as BillingHook['asked'][number];
      hook.asked.push(q);
      if (hook.mode === 'silent') return; // never answers
      if (hook.mode === '500') {
        res.writeHead(500).end('billing down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ inArrears: !hook.paid.has(q.meterId), ...(hook.paid.has(q.meterId) ? { detail: 'paid at the counter' } : {}) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(hook, {
    url: `http://127.0.0.1:${port}/recheck`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}
