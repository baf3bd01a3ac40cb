import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { startPrivatePostgres, type PrivatePostgres } from '../harness/private-postgres.js';
import { ATTEMPTS_SQL, FINALS_SQL, judgeRun, ORDERS_SQL, startFaultRun, type FaultRun, type OrderRow } from '../harness/fault-run.js';

/**
 * Fault: the gateway's PostgreSQL server crashes (`pg_ctl stop -m immediate`: no checkpoint, recovery from WAL
 * at the next start) in the middle of a few thousand reconnects and comes back ~2 s later. The server is a
 * private cluster of this test (tests/harness/private-postgres.ts), never the machine's shared one. The gateway
 * must survive the outage (not exit), and every order must still end exactly once, none failed, with no
 * command to a meter after its order ended.
 */
const COUNT = 2000;
const DOWN_MS = 2000;
const SCHEMA = 'ml_fault';

let broker: MosquittoBroker | undefined;
let db: PrivatePostgres | undefined;
let run: FaultRun | undefined;

afterAll(async () => {
  await run?.stop();
  await broker?.stop();
  await db?.destroy();
});

describe('fault: PostgreSQL restart', () => {
  it('the database crashes and restarts mid-run: the gateway survives and every order ends exactly once', async () => {
    [broker, db] = await Promise.all([startMosquitto(), startPrivatePostgres()]);
    run = await startFaultRun({ name: 'postgres', count: COUNT, links: 10, gatewayMqttUrl: broker.url, meterMqttUrl: broker.url, store: { kind: 'postgres', url: db.url, schema: SCHEMA }, leaseMs: 5000 });
    const t0 = Date.now();
    expect(await run.submitAll()).toBe(COUNT);

    const atFault = await run.waitFor('the fault point', (s) => (s.done ?? 0) + (s.armed ?? 0) >= COUNT * 0.3 && (s.in_flight ?? 0) > 0, 40_000, 20);
    const tFault = Date.now();
    await db.stop('immediate');
    const tStopped = Date.now();
    await new Promise((r) => setTimeout(r, DOWN_MS));
    expect(run.gateway.unexpectedExits, `the gateway exited while its database was down:\n${run.gateway.stderr.slice(-4000)}`).toEqual([]);
    await db.start();
    const tBack = Date.now();

    const final = await run.waitAllFinal(45_000);
    const tEnd = Date.now();
    expect(run.gateway.unexpectedExits).toEqual([]);
    await run.gateway.stop();

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    let verdict;
    let stuck: unknown[] = [];
    try {
      await client.query(`SET search_path TO ${SCHEMA}`);
      const q = async <T>(sql: string) => (await client.query(sql)).rows as T[];
      verdict = judgeRun(
        COUNT,
        {
          finals: await q<{ order_id: string; n: number }>(FINALS_SQL),
          orders: (await q<OrderRow>(ORDERS_SQL)).map((o) => ({ ...o, completed_at: o.completed_at === null ? null : Number(o.completed_at) })),
          attempts: await q<{ outcome: string | null; n: number }>(ATTEMPTS_SQL),
        },
        run.fleet,
      );
      stuck = await q(`SELECT id, state, state_reason FROM orders WHERE state NOT IN ('done','armed') LIMIT 3`);
    } finally {
      await client.end();
    }
    const errorsLogged = (run.gateway.stderr.match(/"level":(50|60)/g) ?? []).length;
    console.log(
      `[fault-postgres-restart] orders ${verdict.figures.orders}, states ${JSON.stringify(verdict.figures.byState)}, ` +
        `crash at ${JSON.stringify(atFault)} (${tFault - t0} ms in), database down ${tBack - tStopped} ms, ` +
        `finished ${tEnd - t0} ms after submit (${tEnd - tBack} ms after the database was back), attempts ${verdict.figures.attempts} ` +
        `${JSON.stringify(verdict.figures.outcomes)}, retries caused by the fault ${verdict.figures.retries}, ` +
        `gateway error log lines ${errorsLogged}, late commands ${verdict.figures.lateCommands}` +
        (stuck.length > 0 ? `, not done e.g. ${JSON.stringify(stuck)}` : ''),
    );
    expect(verdict.problems).toEqual([]);
    expect(final.failed ?? 0).toBe(0);
    expect((verdict.figures.byState.done ?? 0) + (verdict.figures.byState.armed ?? 0)).toBe(COUNT);
  }, 120_000);
});
