import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import * as auditFiles from '../../src/config/audit-files.js';
import { loadConfig } from '../../src/config/load-config.js';
import { systemClock } from '../../src/control/clock.js';
import { ownStore } from '../../src/gateway/own-store.js';
import { startJournalEarly } from '../../src/gateway/own-store-early.js';
import { StopList } from '../../src/gateway/stop-list.js';
import { readAuditAnchors } from '../../src/integrations/audit-anchors.js';
import { SqliteFileOwnership } from '../../src/store/sqlite-file-owner.js';
import { SqliteWorkerStore } from '../../src/store/sqlite-worker-store.js';

// Every audit key source the gateway builds, counted.
vi.mock('../../src/config/audit-files.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/config/audit-files.js')>();
  return { ...original, gatewayAuditKeySource: vi.fn(original.gatewayAuditKeySource) };
});

// The worker runs the compiled store (dist/): `npm run build` first.
function memoryLogger(): { logger: pino.Logger; lines: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(...String(chunk).trim().split('\n')), done()) });
  return { logger: pino({ level: 'info' }, stream), lines: () => lines };
}

describe('the journal started early (main.ts): ownStore takes it over', () => {
  it('one audit key source, the early one: its key keys the log, and "audit key made" is logged once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-early-'));
    const config = loadConfig({}, { store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null }, audit: { keyFile: join(dir, 'audit.key') } });
    const { logger, lines } = memoryLogger();
    const stops = new StopList(logger);
    const keySources = vi.mocked(auditFiles.gatewayAuditKeySource);
    keySources.mockClear();
    const early = startJournalEarly(config);
    expect(early?.store).toBeInstanceOf(SqliteWorkerStore);
    try {
      const { store } = await ownStore(config, [], systemClock, stops, logger, undefined, early);
      expect(store).toBe(early!.store);
      await store.appendAudit({ at: Date.now(), actor: 'ops', action: 'test', target: 'M-1', details: {} });
      expect((await store.verifyAudit()).ok).toBe(true);
      expect(keySources).toHaveBeenCalledTimes(1);
      const key = readFileSync(join(dir, 'audit.key'), 'utf8').trim();
      const made = lines().filter((l) => l.includes('audit key made'));
      expect(made).toHaveLength(1);
      const { keyId } = readAuditAnchors(join(dir, 'gw.db.audit-anchors.jsonl'))[0]!;
      expect(made[0]).toContain(keyId);
      expect(lines().join('\n')).not.toContain(key);
    } finally {
      await stops.runAll();
    }
  });

  it("its thread dies: a new one takes over on the file, the gateway keeps owning the file meanwhile, and the death and the restart are logged (error, then info)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-early-'));
    const path = join(dir, 'gw.db');
    const config = loadConfig({}, { store: { kind: 'sqlite', sqlite: { path }, postgres: null }, audit: { keyFile: join(dir, 'audit.key') } });
    const { logger, lines } = memoryLogger();
    const stops = new StopList(logger);
    const early = startJournalEarly(config);
    try {
      const { store } = await ownStore(config, [], systemClock, stops, logger, undefined, early);
      await store.appendAudit({ at: Date.now(), actor: 'ops', action: 'before', target: 'M-1', details: {} });
      const worker = store as SqliteWorkerStore;
      await (worker as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      // Between the death and the new thread: another gateway still cannot take the file (the lock is this thread's).
      expect(() => SqliteFileOwnership.claim(path, 'gw-other')).toThrow(expect.objectContaining({ code: 'E_STORE_IN_USE' }));
      await store.appendAudit({ at: Date.now(), actor: 'ops', action: 'after', target: 'M-1', details: {} });
      expect((await store.listAudit({ limit: 10 })).map((e) => e.action)).toEqual(expect.arrayContaining(['before', 'after']));
      expect((await store.verifyAudit()).ok).toBe(true);
      expect(worker.threadRestarts).toBe(1);
      expect(() => SqliteFileOwnership.claim(path, 'gw-other')).toThrow(expect.objectContaining({ code: 'E_STORE_IN_USE' }));
      const said = lines().map((l) => JSON.parse(l) as { level: number; msg: string; component?: string }).filter((l) => l.component === 'store');
      expect(said.map((l) => [l.level, l.msg.includes('died') ? 'died' : l.msg.includes('running again') ? 'back' : l.msg])).toEqual([[50, 'died'], [30, 'back']]);
    } finally {
      await stops.runAll();
    }
    // Stopped: the file is free again.
    SqliteFileOwnership.claim(path, 'gw-other').release();
  });
});
