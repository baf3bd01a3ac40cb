/**
 * API latency under load (issue 9, item 3.4). The gateway (this process, SQLite on disk) first accepts a
 * backlog of BENCH_API_BACKLOG (40,000) reconnects in bulk requests, so its control loop is busy sending,
 * reading back and recording for the whole measurement; then a load generator in a child process
 * (api-load-generator.ts) offers BENCH_API_RATE (500) requests/s open-loop for BENCH_API_SECONDS (30): half
 * `POST /v1/meters/{id}/reconnect` (new orders, each on another meter), half `GET /v1/meters/{id}`.
 * Prints p50/p99/max per request type, and how many backlog orders the loop finished meanwhile.
 *
 * `node dist/tests/bench/api-latency-bench.js`
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { projectRoot } from '../../src/config/project-root.js';
import { BULK_LIMIT } from '../../src/api/schemas.js';
import { isTerminal } from '../../src/domain/switch-order.js';
import { startGateway } from '../../src/gateway.js';
import { startMosquitto } from '../harness/mosquitto.js';
import { BENCH_OPERATE_MS, BENCH_PROFILE, benchConfigOverrides, fmt, isMain, machineLine, merge, meterIds, pct, postJson, startSimulator, stopChild, track, writeBenchProfiles } from './bench-common.js';

export async function runApiLatency(o: { rate: number; seconds: number; backlog: number }): Promise<void> {
  const PREFIX = 'L-';
  const posts = Math.ceil((o.rate * o.seconds) / 2);
  const meters = o.backlog + posts;
  const broker = await startMosquitto();
  const profilesDir = writeBenchProfiles();
  const sim = await startSimulator({ brokerUrl: broker.url, meters, prefix: PREFIX, profilesDir });
  const dbPath = join(mkdtempSync(join(tmpdir(), 'ml-bench-lat-')), 'gw.db');
  const config = ConfigSchema.parse(
    merge(loadConfig({}) as unknown as Record<string, unknown>, benchConfigOverrides({ instanceId: 'benchlat', brokerUrl: broker.url, dbPath, profilesDir, meters, prefix: PREFIX })),
  );
  let finished = 0;
  const gw = await startGateway(config, { onOrderChange: (ord) => void (isTerminal(ord.state) && finished++) });
  const key = gw.demoKeys!.operator;
  const ids = meterIds(PREFIX, meters);

  // The backlog that keeps the control loop busy.
  for (let i = 0; i < o.backlog; i += BULK_LIMIT) {
    const chunk = ids.slice(i, Math.min(o.backlog, i + BULK_LIMIT)).map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    await postJson(`${gw.apiUrl}/v1/orders/bulk`, key, { orders: chunk }, `lat-backlog-${i}`);
  }
  const finishedAtStart = finished;

  // The measured load, from a second process.
  const job = { url: gw.apiUrl, key, rate: o.rate, seconds: o.seconds, prefix: PREFIX, postFrom: o.backlog + 1, postCount: posts, getCount: meters };
  const gen = track(spawn(process.execPath, [join(projectRoot(), 'dist', 'tests', 'bench', 'api-load-generator.js'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  gen.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => gen.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`load generator exited with ${code}`)))));
  const wallS = (performance.now() - t0) / 1000;
  const finishedDuring = finished - finishedAtStart;
  const r = JSON.parse(out) as { post: number[]; get: number[]; errors: Record<string, number>; lateStartsMs: number; timeline: [number, number][] };
  const line = (name: string, xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${name} ${fmt(xs.length)} requests: p50 ${pct(s, 50).toFixed(1)} ms, p99 ${pct(s, 99).toFixed(1)} ms, max ${fmt(s.at(-1) ?? NaN)} ms`;
  };
  console.log(
    `API latency at ${o.rate} req/s open-loop for ${o.seconds} s from a second process, while the control loop works a backlog of ${fmt(o.backlog)} reconnects ` +
      `(${fmt(finishedDuring)} orders finished during the ${wallS.toFixed(1)} s; bench profile ${BENCH_PROFILE}, operate time ${BENCH_OPERATE_MS} ms):`,
  );
  console.log(`  ${line('POST /v1/meters/{id}/reconnect', r.post)}`);
  console.log(`  ${line('GET /v1/meters/{id}', r.get)}`);
  // The first seconds include opening the client's connections while the gateway is busy (a connection storm of
  // an open-loop client); the steady state leaves them out.
  const after5 = r.timeline.filter(([sec]) => sec >= 5).map(([, ms]) => ms);
  console.log(`  ${line('steady state (requests due after the first 5 s), POST and GET together', after5)}`);
  console.log(`  errors ${JSON.stringify(r.errors)}; latest request start behind schedule ${r.lateStartsMs.toFixed(1)} ms (generator side)`);
  // p50/p99 per 5 s of the run (by when the requests were due): a stall shows as one bad slot.
  const slots = new Map<number, number[]>();
  for (const [sec, ms] of r.timeline) slots.set(Math.floor(sec / 5) * 5, [...(slots.get(Math.floor(sec / 5) * 5) ?? []), ms]);
  const parts = [...slots].sort((a, b) => a[0] - b[0]).map(([sec, xs]) => {
    const s = xs.sort((a, b) => a - b);
    return `${sec}–${sec + 5} s: ${pct(s, 50).toFixed(0)}/${pct(s, 99).toFixed(0)}`;
  });
  console.log(`  p50/p99 ms by 5 s slot: ${parts.join(', ')}`);

  await gw.stop();
  await stopChild(sim);
  await broker.stop();
}

if (isMain(import.meta.url)) {
  console.log(machineLine());
  await runApiLatency({
    rate: Number(process.env.BENCH_API_RATE ?? 500),
    seconds: Number(process.env.BENCH_API_SECONDS ?? 30),
    backlog: Number(process.env.BENCH_API_BACKLOG ?? 40_000),
  });
  process.exit(0);
}
