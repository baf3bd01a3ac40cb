/**
 * `npm run bench:payments` (also part of `npm run bench`): 50,000 payments in one bulk request against 50,000
 * simulated meters that are off (cut off for credit first, through the gateway), every meter reconnected and
 * every billing callback delivered exactly once. Prints wall times and callbacks per second.
 * BENCH_PAYMENTS=N runs a smaller or larger file.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { projectRoot } from '../../src/config/project-root.js';
import { isTerminal, type SwitchOrder } from '../../src/domain/switch-order.js';
import { newOrderId, startGateway } from '../../src/gateway.js';
import { startMosquitto } from '../harness/mosquitto.js';

const N = Number(process.env.BENCH_PAYMENTS ?? 50_000);
const PREFIX = 'P-';
const PROFILE = 'acme-em340-fw2.4';
const closed = { mon: [], tue: [], wed: [], thu: [], fri: [], sat: [], sun: [] };

async function main(): Promise<void> {
  const broker = await startMosquitto();
  const sim = spawn(process.execPath, [join(projectRoot(), 'dist', 'simulators', 'cli.js'), '--broker', broker.url, '--meters', String(N), '--prefix', PREFIX, '--profiles', PROFILE, '--links', '10', '--initial', 'connected', '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: sim.stdout! }).on('line', (l) => l.includes('simulator running') && resolve());
    sim.once('exit', (code) => reject(new Error(`simulator exited with ${code}`)));
  });

  // The billing system's callback endpoint: counts every event, and every duplicate.
  const seen = new Set<number>();
  let duplicates = 0;
  let lastCallbackAt = 0;
  const endpoint = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const seq = (JSON.parse(raw) as { seq: number }).seq;
      if (seen.has(seq)) duplicates++;
      seen.add(seq);
      lastCallbackAt = performance.now();
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));

  const base = loadConfig({});
  const config = ConfigSchema.parse({
    ...base,
    instanceId: 'bench-pay',
    api: { ...base.api, host: '127.0.0.1', port: 0, rateLimit: { max: 1_000_000, timeWindowMs: 1000 } },
    store: { kind: 'sqlite', sqlite: { path: join(mkdtempSync(join(tmpdir(), 'ml-bench-pay-')), 'gw.db') }, postgres: null },
    mqtt: { ...base.mqtt, mode: 'external', url: broker.url },
    fleet: { seed: { count: N, prefix: PREFIX, profiles: [PROFILE], links: 10, regions: ['north'] } },
    simulator: { ...base.simulator, inProcess: false },
    demo: { reconnectEveryMs: 0 },
    readings: { ...base.readings, schedules: [] },
    // The receiver shares this busy process: give it time to answer before a delivery counts as lost.
    callbacks: { pollMs: 50, concurrency: 64, timeoutMs: Number(process.env.BENCH_CALLBACK_TIMEOUT_MS ?? 30_000), maxRetryDelayMs: 60_000 },
    policy: { ...base.policy, creditCutOff: { friendlyHours: { timezone: 'UTC', weekly: closed, weekendsFriendly: false, holidays: [] } } },
    log: { level: 'warn' },
  });
  let finished = 0;
  let waitingFor = 0;
  let onAll: (() => void) | undefined;
  const gw = await startGateway(config, {
    onOrderChange: (o: SwitchOrder) => {
      if (isTerminal(o.state) && ++finished >= waitingFor) onAll?.();
    },
  });
  const api = async (path: string, key: string, body?: unknown, extra: Record<string, string> = {}) => {
    const res = await fetch(gw.apiUrl + path, {
      method: body === undefined ? 'GET' : path.includes('callbacks') ? 'PUT' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extra },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json).slice(0, 300)}`);
    return json;
  };
  const ids = Array.from({ length: N }, (_, i) => `${PREFIX}${String(i + 1).padStart(6, '0')}`);

  // Set-up: prepayment agreements on record, then every meter cut off for credit through the gateway.
  await gw.store.importMeterFacts(ids.map((meterId) => ({ meterId, flags: { prepaymentMode: true, prepaymentAgreementRef: `PPA-${meterId}` } })), 'bench', Date.now());
  const t0 = performance.now();
  finished = 0;
  waitingFor = N;
  const cutOff = new Promise<void>((r) => (onAll = r));
  // Credit cut-offs come only from credit control (DOMAIN.md rule 8): admitted here as credit control admits them,
  // for meters whose ledgers show no credit; the gate checks each ledger again before its attempt.
  for (let i = 0; i < N; i += 10_000) {
    const ctx = { now: Date.now(), reconnectLimitHours: 24, newOrderId: () => newOrderId(Date.now()), policy: config.policy };
    await gw.store.submitOrders(
      ids.slice(i, i + 10_000).map((meterId) => ({ meterId, action: 'disconnect' as const, reason: 'credit_exhausted' as const, note: 'bench: out of credit', urgent: false, notBefore: null, paymentAt: null, requestedBy: 'credit-control', idempotencyKey: `cut-${meterId}`, requestHash: 'cut', origin: 'credit_control' as const })),
      ctx,
    );
    gw.controller.wake();
  }
  await cutOff;
  console.log(`set-up: ${N} meters cut off for credit through the gateway in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  await api('/v1/callbacks', gw.demoKeys!.billing, { url: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/cb`, secret: 'bench-callback-secret-0001' }, { 'idempotency-key': 'cb-1' });
  finished = 0;
  waitingFor = N;
  const reconnected = new Promise<void>((r) => (onAll = r));
  const t1 = performance.now();
  const now = new Date().toISOString();
  const bulk = await api('/v1/payments/bulk', gw.demoKeys!.billing, { payments: ids.map((meterId, i) => ({ meterId, amountMinor: 1250, receivedAt: now, kind: 'top_up', reference: `TOPUP-${i}` })) }, { 'idempotency-key': 'payment-file-1' });
  const accepted = performance.now();
  await reconnected;
  const allReconnected = performance.now();
  while (seen.size < N && performance.now() - allReconnected < 300_000) await new Promise((r) => setTimeout(r, 100));
  const states = await gw.store.countOrdersByState();
  console.log(
    `payments: ${N} in one bulk request accepted in ${((accepted - t1) / 1000).toFixed(1)} s (${bulk.reconnects as number} reconnects ordered); ` +
      `all reconnected (verified) ${((allReconnected - t1) / 1000).toFixed(1)} s after the request = ${(N / ((allReconnected - t1) / 1000)).toFixed(0)} meters/s; ` +
      `callbacks: ${seen.size} delivered, ${duplicates} duplicates, last one ${((lastCallbackAt - t1) / 1000).toFixed(1)} s after the request = ${(seen.size / ((lastCallbackAt - t1) / 1000)).toFixed(0)} callbacks/s; orders by state ${JSON.stringify(states)}`,
  );
  await gw.stop();
  sim.kill('SIGTERM');
  endpoint.closeAllConnections();
  endpoint.close();
  await broker.stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
