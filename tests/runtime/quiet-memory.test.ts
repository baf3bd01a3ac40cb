import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { QuietMemoryRelease, youngCollector, youngGenerationBytes, YOUNG_THRESHOLD_BYTES } from '../../src/runtime/quiet-memory.js';

const MiB = 2 ** 20;

describe('the store worker hands its young generation back when quiet', () => {
  it('asks for a collection only while the young generation is above the threshold', () => {
    let young = 32 * MiB;
    let collections = 0;
    const release = new QuietMemoryRelease({ youngBytes: () => young, collect: () => collections++ });
    // Busy: still large after the collection (V8 keeps it while the thread allocates), asked again at the next look.
    expect(release.check()).toBe(true);
    expect(release.check()).toBe(true);
    expect(collections).toBe(2);
    // Quiet: the collection shrank it; from then on nothing is asked for.
    young = 1 * MiB;
    expect(release.check()).toBe(false);
    young = YOUNG_THRESHOLD_BYTES;
    expect(release.check()).toBe(false);
    expect(collections).toBe(2);
  });

  it("finds V8's collector and the young generation size on this thread without leaving gc exposed", () => {
    const collect = youngCollector();
    expect(collect).toBeTypeOf('function');
    collect!();
    expect(youngGenerationBytes()).toBeGreaterThan(0);
    // Unless the process itself runs with --expose-gc, no context made later gets a global gc.
    if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
      expect(runInNewContext('typeof gc')).toBe('undefined');
    }
  });
});
