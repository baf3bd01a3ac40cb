import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_ENERGY_READINGS, SqliteStore } from '../../src/store/sqlite-store.js';

/**
 * The consumption check's read after each reading (issue 19): a meter's last readings with an energy register come
 * from the entries of its observations index alone (no read of each reading's row), and still only those with a
 * register, oldest first.
 */
describe('SQLite store: a meter\'s energy readings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ml-energy-plan-'));
  const path = join(dir, 'gw.db');
  const t0 = 1_764_000_000_000;

  beforeAll(async () => {
    const store = new SqliteStore(path);
    await store.migrate();
    await store.upsertMeters(['M-1', 'M-2'].map((meterId) => ({ meterId, profileId: 'p', link: 'L1', region: 'north' })), t0);
    for (let i = 0; i < 6; i++) {
      // Every third reading has no energy register (a relay read-back without one).
      await store.recordObservation('M-1', { relay: 'connected', at: t0 + i * 60_000, source: 'read', voltageV: 230, ...(i % 3 === 1 ? {} : { energyWh: 1000 + i }) });
      await store.recordObservation('M-2', { relay: 'connected', at: t0 + i * 60_000, source: 'read', energyWh: 5000 + i });
    }
    expect(await store.energyReadings('M-1', 3)).toEqual([
      { at: t0 + 2 * 60_000, energyWh: 1002 },
      { at: t0 + 3 * 60_000, energyWh: 1003 },
      { at: t0 + 5 * 60_000, energyWh: 1005 },
    ]);
    expect((await store.energyReadings('M-1', 100)).map((r) => r.energyWh)).toEqual([1000, 1002, 1003, 1005]);
    expect((await store.listObservations('M-1', 2)).map((o) => [o.at, o.energyWh])).toEqual([[t0 + 5 * 60_000, 1005], [t0 + 4 * 60_000, undefined]]);
    await store.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads index entries only, walking the meter\'s newest first with no sort', () => {
    const db = new Database(path, { readonly: true });
    try {
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${SQLITE_ENERGY_READINGS}`).all('M-1', 500) as { detail: string }[]).map((r) => r.detail);
      expect(plan).toEqual(['SEARCH observations USING COVERING INDEX observations_meter (meter_id=?)']);
    } finally {
      db.close();
    }
  });
});
