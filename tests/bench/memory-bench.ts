/**
 * Memory per meter (issue 9, item 3.3): a gateway with the SQLite store (file in a temp dir) and no meters,
 * then 1,000,000 meters registered through the store's `upsertMeters` in batches of 10,000 (the path the
 * fleet seed and the meter import take). RSS is read after forced GCs once the process has settled, before and
 * after registering. Needs `node --expose-gc` (npm run bench passes it).
 *
 * `node --expose-gc dist/tests/bench/memory-bench.js`; BENCH_MEMORY_METERS (default 1000000).
 */
import { mkdtempSync, statSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { startGateway } from '../../src/gateway.js';
import { startMosquitto } from '../harness/mosquitto.js';
import { BENCH_PROFILE, benchConfigOverrides, fmt, isMain, LINKS, machineLine, merge, sleep, writeBenchProfiles } from './bench-common.js';

const BATCH = 10_000;
const MiB = 2 ** 20;

/** RSS after the heap has been collected and the process left alone for a moment. */
async function settledRss(): Promise<{ rss: number; heapUsed: number; young: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(500);
  }
  await sleep(2000);
  gc();
  const m = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')?.physical_space_size ?? 0;
  return { rss: m.rss, heapUsed: m.heapUsed, young };
}

export async function runMemory(meters: number): Promise<void> {
  const broker = await startMosquitto();
  const profilesDir = writeBenchProfiles();
  const dbPath = join(mkdtempSync(join(tmpdir(), 'ml-bench-mem-')), 'gw.db');
  const config = ConfigSchema.parse(
    merge(loadConfig({}) as unknown as Record<string, unknown>, benchConfigOverrides({ instanceId: 'benchmem', brokerUrl: broker.url, dbPath, profilesDir, meters: 0, prefix: 'M-' })),
  );
  const gw = await startGateway(config);
  const before = await settledRss();

  // Register in batches, the records of one batch made and dropped at a time (as an import reads a file).
  const t0 = performance.now();
  const perLink = Math.ceil(meters / LINKS);
  for (let i = 0; i < meters; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(meters, i + BATCH); j++) {
      batch.push({ meterId: `M-${String(j + 1).padStart(7, '0')}`, profileId: BENCH_PROFILE, link: `mqtt-dc-${String(Math.floor(j / perLink) + 1).padStart(3, '0')}`, region: 'north' });
    }
    await gw.store.upsertMeters(batch, Date.now());
  }
  const registerMs = performance.now() - t0;
  // Let the gateway's own timers run over the new fleet (monitors, scans) before measuring.
  await sleep(5000);
  const after = await settledRss();
  // Counted in the file itself (a second, read-only connection, opened after measuring).
  const db = new Database(dbPath, { readonly: true });
  const count = db.prepare('SELECT COUNT(*) FROM meters').pluck().get() as number;
  db.close();
  const dbBytes = statSync(dbPath).size + (statSync(`${dbPath}-wal`, { throwIfNoEntry: false })?.size ?? 0);

  console.log(
    `memory: ${fmt(count)} meters registered (upsertMeters, batches of ${fmt(BATCH)}) in ${(registerMs / 1000).toFixed(1)} s; ` +
      `RSS before ${fmt(before.rss / MiB, 1)} MiB, after ${fmt(after.rss / MiB, 1)} MiB (heap used ${fmt(before.heapUsed / MiB, 1)} → ${fmt(after.heapUsed / MiB, 1)} MiB; the main thread's young generation ${fmt(before.young / MiB, 1)} → ${fmt(after.young / MiB, 1)} MiB); ` +
      `RSS ÷ meters = ${fmt(after.rss / count)} bytes/meter (target < 1,024), growth ÷ meters = ${fmt((after.rss - before.rss) / count)} bytes/meter; ` +
      `SQLite file + WAL on disk ${fmt(dbBytes / MiB, 1)} MiB`,
  );
  await gw.stop();
  await broker.stop();
}

if (isMain(import.meta.url)) {
  console.log(machineLine());
  await runMemory(Number(process.env.BENCH_MEMORY_METERS ?? 1_000_000));
  process.exit(0);
}
