import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config/project-root.js';

// The open loop's API client (a child process of the 100k bench): it must offer the schedule's load whatever the
// gateway answers, order each meter once, and report each order's send time on the epoch clock the bench compares
// with its own verified times. Against a stand-in bulk endpoint that answers every order with an id.
describe('open-loop submitter', () => {
  it('sends the scheduled orders in bulk requests per tick, each meter once, and reports when each was sent', async () => {
    const requests: { key: string | undefined; idem: string | undefined; meters: string[] }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const { orders } = JSON.parse(body) as { orders: { meterId: string; action: string }[] };
        requests.push({ key: req.headers.authorization, idem: req.headers['idempotency-key'] as string | undefined, meters: orders.map((o) => o.meterId) });
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ results: orders.map((o) => ({ order: { id: `ord-${o.meterId}` } })) }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const job = { url, key: 'k1', ratePerS: 400, seconds: 1, tickMs: 10, bulkLimit: 3, prefix: 'O-', from: 11, count: 1000 };
      const child = spawn(process.execPath, [join(projectRoot(), 'dist', 'tests', 'bench', 'open-loop-submitter.js'), JSON.stringify(job)], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = createInterface({ input: child.stdout });
      const next = () => new Promise<string>((r) => lines.once('line', r));
      expect(await next()).toBe('submitter ready');
      expect(requests).toHaveLength(0); // nothing before it is told to go
      const goAt = performance.timeOrigin + performance.now();
      child.stdin.write('go\n');
      const out = JSON.parse(await next()) as { sent: [string, number][]; refusedRequests: number; startEpochMs: number; submitEndEpochMs: number; cpuUs: number };
      const doneAt = performance.timeOrigin + performance.now();

      expect(out.refusedRequests).toBe(0);
      // 400/s for 1 s: 400 orders, meters O-000011 … O-000410, each once.
      const meters = requests.flatMap((r) => r.meters);
      expect(meters).toHaveLength(400);
      expect(new Set(meters).size).toBe(400);
      expect([...meters].sort()).toEqual(Array.from({ length: 400 }, (_, i) => `O-${String(11 + i).padStart(6, '0')}`));
      expect(requests.every((r) => r.key === 'Bearer k1' && r.meters.length <= 3)).toBe(true);
      expect(new Set(requests.map((r) => r.idem)).size).toBe(requests.length);
      // Each order's send time, on the epoch clock, within the run; the submission took about the scheduled second.
      expect(out.sent.map(([id]) => id).sort()).toEqual(meters.map((m) => `ord-${m}`).sort());
      for (const [, at] of out.sent) {
        expect(at).toBeGreaterThanOrEqual(goAt - 50);
        expect(at).toBeLessThanOrEqual(doneAt);
      }
      expect(out.submitEndEpochMs - out.startEpochMs).toBeGreaterThan(900);
      expect(out.submitEndEpochMs - out.startEpochMs).toBeLessThan(3000);
      expect(out.cpuUs).toBeGreaterThan(0);
    } finally {
      server.close();
    }
  });
});
