/**
 * The bulk route's own cost on the main thread (issue 19): POST /v1/orders/bulk with BENCH_BULK_ITEMS (10,000) items
 * through fastify inject, against a store stub that answers at once (every meter known, every order created as it
 * was asked), so what is measured is admission alone: body parse, validation, the route's checks and requests, the
 * order views and the answer's serialisation. Prints CPU µs per order (process.cpuUsage over the timed requests),
 * GC pause ms per request, and the answer's size and sha256 (the same answer before and after a change).
 *
 * `node dist/tests/bench/bulk-admission-bench.js`; BENCH_BULK_ROUNDS (20) timed requests after BENCH_BULK_WARMUP (5).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { PerformanceObserver } from 'node:perf_hooks';
import pino from 'pino';
import { buildApi } from '../../src/api/app.js';
import { ApiKeyRegistry, sha256Hex } from '../../src/api/auth.js';
import type { ApiDeps } from '../../src/api/deps.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import type { OrderRequest, SubmitOutcome } from '../../src/store/store.js';

const ITEMS = Number(process.env.BENCH_BULK_ITEMS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_BULK_ROUNDS ?? 20);
const WARMUP = Number(process.env.BENCH_BULK_WARMUP ?? 5);
const NOW = Date.parse('2026-11-25T09:00:00Z');

function orderOf(r: OrderRequest, n: number): SwitchOrder {
  return {
    id: `ord-${n}`,
    meterId: r.meterId,
    action: r.action,
    limitW: r.limitW ?? null,
    reason: r.reason,
    note: r.note,
    requestedBy: r.requestedBy,
    state: 'queued',
    stateReason: null,
    priority: 100,
    urgent: r.urgent,
    link: 'mqtt',
    createdAt: NOW,
    updatedAt: NOW,
    notBefore: r.notBefore ?? NOW,
    deadline: r.paymentAt === null ? null : r.paymentAt + 86_400_000,
    paymentAt: r.paymentAt,
    attempts: 0,
    nextAttemptAt: NOW,
    supersededBy: null,
    completedAt: null,
    resultRelay: null,
    planId: null,
    secondNoticeAt: null,
    capDay: null,
    escalatedAt: null,
    origin: r.origin,
    reference: r.reference,
    approvedBy: null,
    approvedAt: null,
  } as unknown as SwitchOrder;
}

let hashes = '';
const store = {
  existingMeterIds: async (ids: readonly string[]) => new Set(ids),
  submitOrders: async (requests: readonly OrderRequest[]): Promise<SubmitOutcome[]> => {
    hashes = createHash('sha256').update(requests.map((r) => `${r.idempotencyKey} ${r.requestHash} ${r.reason} ${r.urgent} ${r.paymentAt} ${r.note}`).join('\n')).digest('hex');
    return requests.map((r, n) => ({ kind: 'created' as const, order: orderOf(r, n) }));
  },
};

async function main(): Promise<void> {
  const keys = new ApiKeyRegistry();
  keys.add(sha256Hex('bench-key'), { clientId: 'bench', name: 'bench', role: 'operator' });
  const deps = {
    store,
    controller: { wake: () => {}, inFlightByLink: () => new Map(), readNow: async () => {} },
    keys,
    submitContext: () => ({ now: NOW }),
    events: new EventEmitter(),
    rateLimit: { max: 1e9, timeWindowMs: 60_000 },
    health: () => ({}),
    stopping: () => false,
    liveEvents: { stallMs: 10_000, maxPendingOrders: 1000 },
    profiles: new Map(),
  } as unknown as ApiDeps;
  const app = await buildApi(deps, pino({ level: 'silent' }));
  await app.ready();

  // BENCH_BULK_MIX=1: every fourth line a disconnect, every eighth an urgent reconnect, some without defaults' fields.
  const mix = process.env.BENCH_BULK_MIX === '1';
  const orders = Array.from({ length: ITEMS }, (_, i) => {
    const meterId = `SIM-${String(i).padStart(6, '0')}`;
    if (mix && i % 4 === 1) return { note: i % 3 === 0 ? undefined : `move ${i}`, meterId, action: 'disconnect', reason: 'vacant_premises', reference: `MOVE-${i}`, notBefore: '2026-11-26T08:00:00+01:00' };
    if (mix && i % 8 === 2) return { action: 'reconnect', meterId, urgent: true };
    if (mix && i % 8 === 6) return { meterId, action: 'reconnect', reason: 'top_up', urgent: false, notBefore: '2026-11-25T10:00:00.250Z' };
    return { meterId, action: 'reconnect', reason: 'payment', paymentReceivedAt: '2026-11-25T08:12:00Z', note: `receipt ${i}` };
  });
  const payload = JSON.stringify({ orders });
  let gcMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  obs.observe({ entryTypes: ['gc'] });
  let body = '';
  const send = async (round: number) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/orders/bulk',
      headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json', 'idempotency-key': `bench-${round}` },
      payload,
    });
    if (res.statusCode !== 202) throw new Error(`${res.statusCode} ${res.body.slice(0, 500)}`);
    body = res.body;
  };
  for (let i = 0; i < WARMUP; i++) await send(i);
  gcMs = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) await send(0);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  const n = ITEMS * ROUNDS;
  console.log(
    `bulk admission: ${ROUNDS} × ${ITEMS} items: CPU ${(((cpu.user + cpu.system) / n)).toFixed(2)} µs per order, wall ${((wallMs * 1000) / n).toFixed(2)} µs per order, ` +
      `GC ${(gcMs / ROUNDS).toFixed(1)} ms per request; answer ${body.length} bytes sha256 ${createHash('sha256').update(body).digest('hex').slice(0, 16)}; requests sha256 ${hashes.slice(0, 16)}`,
  );
  await app.close();
}

await main();
