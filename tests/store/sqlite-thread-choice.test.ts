import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { systemClock } from '../../src/control/clock.js';
import { ownStore } from '../../src/gateway/own-store.js';
import { StopList } from '../../src/gateway/stop-list.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SqliteWorkerStore } from '../../src/store/sqlite-worker-store.js';

// The worker runs the compiled store (dist/): `npm run build` first.
const logger = pino({ level: 'silent' });

async function open(thread: 'worker' | 'main' | undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'ml-thread-'));
  const base = loadConfig({}, { store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db'), ...(thread ? { thread } : {}) }, postgres: null }, audit: { keyFile: join(dir, 'audit.key') } });
  const config = { ...base, store: { ...base.store, sqlite: { path: join(dir, 'gw.db'), ...(thread ? { thread } : {}) } } };
  const stops = new StopList(logger);
  const { store } = await ownStore(config, [{ meterId: 'M-1', profileId: 'p', link: 'L1', region: 'north' } as never], systemClock, stops, logger);
  return { store, stops };
}

describe('store.sqlite.thread: where the SQLite journal runs', () => {
  it('runs on a worker thread by default and when asked, on the main thread when asked; either way the gateway owns, migrates and seeds it', async () => {
    for (const [thread, kind] of [[undefined, SqliteWorkerStore], ['worker', SqliteWorkerStore], ['main', SqliteStore]] as const) {
      const { store, stops } = await open(thread);
      try {
        expect(store).toBeInstanceOf(kind);
        expect((await store.getMeter('M-1'))?.link).toBe('L1');
        expect((await store.verifyAudit()).ok).toBe(true);
      } finally {
        await stops.runAll();
      }
    }
  });

  it('the configuration takes worker or main and nothing else', () => {
    const base = loadConfig({});
    expect(base.store.sqlite.thread ?? 'worker').toBe('worker');
    const withThread = (thread: unknown) => ConfigSchema.safeParse({ ...base, store: { ...base.store, sqlite: { ...base.store.sqlite, thread } } }).success;
    expect(withThread('worker')).toBe(true);
    expect(withThread('main')).toBe(true);
    expect(withThread('cluster')).toBe(false);
  });
});
