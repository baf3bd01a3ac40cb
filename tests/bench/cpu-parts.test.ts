import { describe, expect, it } from 'vitest';
import { partOfFrame, splitByPart, type CpuProfile } from './cpu-parts.js';

const root = 'file:///srv/meterline/dist';

/**
 * A hand-made profile of one order's work: (root) → a store write calling native `run`, the MQTT driver publishing
 * through mqtt.js, a fastify route, the control loop calling JSON.parse, node's timers, GC, idle, and the bench's hook.
 */
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', url: '' }, children: [2, 4, 6, 8, 10, 11, 12, 13] },
    { id: 2, callFrame: { functionName: 'finishAttempt', url: `${root}/src/store/sqlite-store.js` }, children: [3] },
    { id: 3, callFrame: { functionName: 'run', url: '' } },
    { id: 4, callFrame: { functionName: 'send', url: `${root}/drivers/mqtt/mqtt-driver.js` }, children: [5] },
    { id: 5, callFrame: { functionName: 'publish', url: 'file:///srv/meterline/node_modules/mqtt/build/lib/client.js' } },
    { id: 6, callFrame: { functionName: 'runPreValidation', url: 'file:///srv/meterline/node_modules/fastify/lib/hooks.js' }, children: [7] },
    { id: 7, callFrame: { functionName: 'bulkOrders', url: `${root}/src/api/orders-routes.js` } },
    { id: 8, callFrame: { functionName: 'tick', url: `${root}/src/control/switch-controller.js` }, children: [9] },
    { id: 9, callFrame: { functionName: 'parse', url: '' } },
    { id: 10, callFrame: { functionName: 'processTimers', url: 'node:internal/timers' } },
    { id: 11, callFrame: { functionName: '(garbage collector)', url: '' } },
    { id: 12, callFrame: { functionName: '(idle)', url: '' } },
    { id: 13, callFrame: { functionName: 'onOrderChange', url: `${root}/tests/bench/gateway-100k-bench.js` } },
  ],
  startTime: 1_000,
  endTime: 1_000 + 1_000,
  // Each sample lasts until the next: 3 (native run under the store) 300 µs, 2 100, 5 150, 7 50, 9 80, 10 20, 11 100, 12 150, 13 50.
  samples: [3, 2, 5, 7, 9, 10, 11, 12, 13],
  timeDeltas: [0, 300, 100, 150, 50, 80, 20, 100, 150],
};

describe('splitting a CPU profile into the parts of an order', () => {
  it('gives each sample’s time to its function’s part, and native code to the part of the code that called it', () => {
    const split = splitByPart(profile);
    expect(split.byPart).toEqual({
      'SQLite journal': 400, // 300 in better-sqlite3's native run, called by the store, + 100 in the store itself
      MQTT: 150,
      GC: 100,
      'HTTP admission': 50,
      'loop and rules': 80, // JSON.parse called by the control loop
      runtime: 20,
      bench: 50, // the last sample lasts until the profile's end
      simulator: 0,
    });
    expect(split.idleUs).toBe(150);
    expect(split.busyUs).toBe(850);
  });

  it('counts the PostgreSQL client as the journal, node internals and other packages as runtime', () => {
    expect(partOfFrame('handleDataRow', 'file:///x/node_modules/pg-protocol/dist/parser.js')).toBe('SQLite journal');
    expect(partOfFrame('handlePacket', 'file:///x/node_modules/mqtt-packet/parser.js')).toBe('MQTT');
    expect(partOfFrame('write', 'node:internal/streams/writable')).toBe('runtime');
    expect(partOfFrame('info', 'file:///x/node_modules/pino/lib/proto.js')).toBe('runtime');
    expect(partOfFrame('(program)', '')).toBe('runtime');
    expect(partOfFrame('onStatus', 'file:///x/dist/simulators/mqtt-fleet.js')).toBe('simulator');
    expect(partOfFrame('stringify', '')).toBeUndefined();
  });

  it('is empty for a profile without samples', () => {
    const split = splitByPart({ nodes: [{ id: 1, callFrame: { functionName: '(root)', url: '' } }], startTime: 0, endTime: 10 });
    expect(split.busyUs).toBe(0);
    expect(split.idleUs).toBe(0);
  });
});
