import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteWorkerStore } from '../../src/store/sqlite-worker-store.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The SQLite store's thread dies under a running gateway (as a crash in native code or an out-of-memory would end it):
 * `/metrics` counts the thread started again, `meterline_sqlite_thread_restarts_total`, as the store counts it.
 * Always on SQLite on its worker thread (the default), whatever METERLINE_TEST_STORE says: PostgreSQL has no such thread.
 */
let f: GatewayFixture;

beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'TR-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    store: { kind: 'sqlite', sqlite: { path: join(mkdtempSync(join(tmpdir(), 'ml-gw-')), 'gw.db'), thread: 'worker' }, postgres: null },
  });
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

/** The value of one series without labels in a scrape, undefined when absent. */
function value(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

const scrape = async (): Promise<string> => {
  const res = await f.http('GET', '/metrics');
  expect(res.status).toBe(200);
  return res.body as string;
};

describe('meterline_sqlite_thread_restarts_total', () => {
  it('is 0 on a gateway whose store thread never died, and 1 on /metrics once its thread was killed and started again; promtool has nothing to say', async () => {
    const store = f.gateway.store;
    expect(store).toBeInstanceOf(SqliteWorkerStore);
    expect(value(await scrape(), 'meterline_sqlite_thread_restarts_total')).toBe(0);

    // The thread ends under the running gateway.
    await (store as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    // The gateway goes on: a disconnect is admitted and verified on the new thread.
    const d = await f.http('POST', '/v1/meters/TR-1/disconnect', { body: { reason: 'customer_request', reference: 'REQ-TR' } });
    expect(d.status).toBe(202);
    expect((await f.waitForOrder(d.body.id)).state).toBe('done');
    expect((store as SqliteWorkerStore).threadRestarts).toBe(1);

    const text = await scrape();
    expect(value(text, 'meterline_sqlite_thread_restarts_total')).toBe(1);
    expect(text).toContain('# TYPE meterline_sqlite_thread_restarts_total counter');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(lint.error, 'promtool is missing: bash tests/setup/test-deps.sh installs it (Debian package prometheus)').toBeUndefined();
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });
});
