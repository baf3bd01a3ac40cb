import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConsumptionWatch } from '../../src/control/consumption-watch.js';
import type { EpisodeKind } from '../../src/domain/alert-episodes.js';
import type { EpisodeClaim, GatewayStore, MeterSwap } from '../../src/store/store.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 8);
const limits = { maxWhPerHour: 20_000, continuousHours: 24, continuousMinWhPerHour: 50 };

/** The three store methods the watch uses, over fixed readings and swaps; the claims it makes are kept. */
function storeWith(readings: { at: number; energyWh: number }[], swaps: Partial<MeterSwap>[] = []) {
  const claims: EpisodeClaim[] = [];
  const store = {
    energyReadings: async () => readings,
    listMeterSwaps: async () => swaps as MeterSwap[],
    claimEpisode: async (claim: EpisodeClaim) => {
      claims.push(claim);
      return { episode: { id: `ep-${claims.length}` }, opened: true };
    },
  } as unknown as GatewayStore;
  return { store, claims };
}

function watch(store: GatewayStore, alerts: EpisodeKind[]): ConsumptionWatch {
  return new ConsumptionWatch(store, limits, pino({ level: 'silent' }), (kind) => alerts.push(kind));
}

describe('ConsumptionWatch', () => {
  it("a meter's first reading, with no swap recorded, finds nothing and claims no episode", async () => {
    const { store, claims } = storeWith([{ at: T0, energyWh: 5_000 }]);
    const alerts: EpisodeKind[] = [];
    await watch(store, alerts).check('M-1', T0);
    expect(claims).toEqual([]);
    expect(alerts).toEqual([]);
  });

  it("one reading after a recorded swap is judged against the swap's new register: below its first reading, a register discontinuity", async () => {
    const { store, claims } = storeWith([{ at: T0 + HOUR, energyWh: 100 }], [{ at: T0, oldFinalWh: 5_000, newFirstWh: 900_000 }]);
    const alerts: EpisodeKind[] = [];
    await watch(store, alerts).check('M-2', T0 + HOUR);
    expect(claims.map((c) => [c.kind, c.from, c.to])).toEqual([['register_discontinuity', T0, T0 + HOUR]]);
    expect(alerts).toEqual(['register_discontinuity']);
  });

  it('one reading after a recorded swap: use above the limit since the swap is excessive', async () => {
    const { store, claims } = storeWith([{ at: T0 + HOUR, energyWh: 900_000 + 30_000 }], [{ at: T0, oldFinalWh: 5_000, newFirstWh: 900_000 }]);
    const alerts: EpisodeKind[] = [];
    await watch(store, alerts).check('M-3', T0 + HOUR);
    expect(claims.map((c) => [c.kind, c.whPerHour])).toEqual([['consumption_excessive', 30_000]]);
    expect(alerts).toEqual(['consumption_excessive']);
  });
});
