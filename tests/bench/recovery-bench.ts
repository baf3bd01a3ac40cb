/**
 * Time to recover after a crash (issue 9, item 3.5). The gateway runs as the built program
 * (`node dist/src/main.js`, METERLINE_CONFIG, SQLite on disk), the meters in a simulator child process. The bench
 * submits BENCH_RECOVERY_ORDERS (100,000) reconnects in bulk requests of 10,000, SIGKILLs the gateway as soon as
 * the last one is accepted (most orders are then unfinished, some on the wire), reads what the crash left from
 * the database file, starts the gateway again (same instanceId, same file) and measures from the restart:
 *   - until /healthz answers ok;
 *   - until every attempt the crash left open (in_flight, no end) has been closed, i.e. verified by a read;
 *   - until all orders are final.
 *
 * `node dist/tests/bench/recovery-bench.js`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { BULK_LIMIT } from '../../src/api/schemas.js';
import { projectRoot } from '../../src/config/project-root.js';
import { TERMINAL_STATES } from '../../src/domain/switch-order.js';
import { freePort, startMosquitto } from '../harness/mosquitto.js';
import { BENCH_OPERATE_MS, BENCH_PROFILE, benchConfigOverrides, fmt, isMain, machineLine, meterIds, postJson, sleep, startSimulator, stopChild, track, writeBenchProfiles } from './bench-common.js';


export async function runRecovery(orders: number): Promise<void> {
  const PREFIX = 'C-';
  const broker = await startMosquitto();
  const profilesDir = writeBenchProfiles();
  const sim = await startSimulator({ brokerUrl: broker.url, meters: orders, prefix: PREFIX, profilesDir });
  const dir = mkdtempSync(join(tmpdir(), 'ml-bench-crash-'));
  const dbPath = join(dir, 'gw.db');
  const port = await freePort();
  const key = newApiKey('op');
  const configFile = join(dir, 'gateway.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      ...benchConfigOverrides({ instanceId: 'benchcrash', brokerUrl: broker.url, dbPath, profilesDir, meters: orders, prefix: PREFIX, port }),
      auth: { keys: [{ name: 'bench', role: 'operator', sha256: sha256Hex(key) }], demoKeys: false },
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const startGatewayProcess = (): ChildProcess =>
    track(spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], { env: { ...process.env, METERLINE_CONFIG: configFile }, stdio: ['ignore', 'ignore', 'inherit'] }));
  const waitHealthy = async (): Promise<void> => {
    for (;;) {
      try {
        const res = await fetch(`${url}/healthz`);
        if (res.ok && ((await res.json()) as { status: string }).status === 'ok') return;
      } catch {
        /* not up yet */
      }
      await sleep(20);
    }
  };
  const byState = async (): Promise<Record<string, number>> => {
    const res = await fetch(`${url}/v1/queue`, { headers: { authorization: `Bearer ${key}` } });
    return ((await res.json()) as { byState: Record<string, number> }).byState;
  };
  const finalCount = (s: Record<string, number>) => [...TERMINAL_STATES].reduce((n, k) => n + (s[k] ?? 0), 0);

  let gateway = startGatewayProcess();
  await waitHealthy();
  const ids = meterIds(PREFIX, orders);
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += BULK_LIMIT) {
    const chunk = ids.slice(i, i + BULK_LIMIT).map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    await postJson(`${url}/v1/orders/bulk`, key, { orders: chunk }, `crash-${i}`);
  }
  const acceptedS = (performance.now() - t0) / 1000;
  gateway.kill('SIGKILL');
  await new Promise((r) => gateway.once('exit', r));

  // What the crash left, from the file.
  let db = new Database(dbPath, { readonly: true });
  const left = Object.fromEntries(
    (db.prepare('SELECT state, COUNT(*) AS n FROM orders GROUP BY state').all() as { state: string; n: number }[]).map((r) => [r.state, r.n]),
  ) as Record<string, number>;
  const openAttempts = db.prepare('SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL').pluck().get() as number;
  db.close();
  console.log(
    `recovery: ${fmt(orders)} reconnects accepted in ${acceptedS.toFixed(1)} s, gateway SIGKILLed at once; left by the crash: ${fmt(orders - finalCount(left))} unfinished ` +
      `(${JSON.stringify(left)}), ${fmt(openAttempts)} attempts open on the wire`,
  );

  // Restart: same instanceId, same file.
  const restartWall = Date.now();
  const r0 = performance.now();
  gateway = startGatewayProcess();
  await waitHealthy();
  const healthyMs = performance.now() - r0;

  // The crash's open attempts are those started before the restart that have no end yet.
  db = new Database(dbPath, { readonly: true });
  const stillOpen = db.prepare('SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL AND started_at < ?').pluck();
  let verifiedMs = NaN;
  let finalMs = NaN;
  let last: Record<string, number> = {};
  for (;;) {
    if (Number.isNaN(verifiedMs) && (stillOpen.get(restartWall) as number) === 0) verifiedMs = performance.now() - r0;
    last = await byState();
    if (finalCount(last) >= orders) {
      finalMs = performance.now() - r0;
      if (Number.isNaN(verifiedMs)) verifiedMs = finalMs;
      break;
    }
    await sleep(50);
  }
  const byRead = db.prepare(`SELECT COUNT(*) FROM attempts WHERE detail LIKE 'gateway restarted%'`).pluck().get() as number;
  db.close();
  console.log(
    `  after restart: /healthz ok in ${fmt(healthyMs)} ms; all ${fmt(openAttempts)} interrupted attempts verified (${fmt(byRead)} by a read) after ${fmt(verifiedMs)} ms; ` +
      `all ${fmt(orders)} orders final after ${fmt(finalMs / 1000, 1)} s (${JSON.stringify(last)}); bench profile ${BENCH_PROFILE}, operate time ${BENCH_OPERATE_MS} ms`,
  );

  await stopChild(gateway);
  await stopChild(sim);
  await broker.stop();
}

if (isMain(import.meta.url)) {
  console.log(machineLine());
  await runRecovery(Number(process.env.BENCH_RECOVERY_ORDERS ?? 100_000));
  process.exit(0);
}
