import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Memory handed back by a thread once a burst is over (issue 19, memory per meter): the SQLite store's worker, and the
 * gateway's main thread.
 *
 * V8 grows a thread's young generation to its maximum (2 × 16 MiB semi-spaces) during a burst of work (a meter
 * import, a bulk of orders) and shrinks it only in a garbage collection that runs once the thread's allocation rate
 * over V8's last 5 seconds is low. A journal that goes quiet allocates so little that no collection comes for
 * minutes, so the worker kept ~30 MiB of empty young generation in the process's RSS. So while its young generation
 * is above a few MiB, the thread asks for a young-generation collection (a scavenge: under a millisecond when quiet)
 * once a second: V8 shrinks it when the thread has gone quiet, about 6-7 s after a burst, and otherwise not (a busy
 * thread scavenges many times a second anyway, so one more a second costs it nothing to speak of). Nothing in use is
 * dropped: it is an ordinary collection.
 */
export class QuietMemoryRelease {
  constructor(
    private readonly parts: {
      /** Bytes the young generation holds in memory now (V8's new space, physical). */
      youngBytes: () => number;
      /** A young-generation garbage collection. */
      collect: () => void;
    },
    /** Above this a collection is asked for. */
    readonly thresholdBytes = YOUNG_THRESHOLD_BYTES,
  ) {}

  /** One look (every CHECK_EVERY_MS); true when it asked for a collection. */
  check(): boolean {
    if (this.parts.youngBytes() <= this.thresholdBytes) return false;
    this.parts.collect();
    return true;
  }
}

/** How often the worker looks. */
export const CHECK_EVERY_MS = 1000;

/** A young generation of at most this is left alone (V8 starts a thread's at 1 MiB). */
export const YOUNG_THRESHOLD_BYTES = 4 * 2 ** 20;

type MinorGc = (options: { type: 'minor' }) => void;

/** This thread's young generation in memory, in bytes. */
export function youngGenerationBytes(): number {
  let bytes = 0;
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') bytes += s.physical_space_size;
  return bytes;
}

/**
 * A function that runs a young-generation garbage collection on this thread: with the global `gc` when the process
 * runs with --expose-gc, else with V8's own, taken from a fresh context with the flag set for that moment only (no
 * other context gets `gc`). Undefined if V8 offers none.
 */
export function youngCollector(): (() => void) | undefined {
  const given = (globalThis as { gc?: unknown }).gc;
  if (typeof given === 'function') return () => (given as MinorGc)({ type: 'minor' });
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? () => (gc as MinorGc)({ type: 'minor' }) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/**
 * Start looking on this thread (the SQLite store's worker, the gateway's main thread); the timer never keeps the
 * thread alive. Returns what stops it.
 */
export function releaseMemoryWhenQuiet(): () => void {
  const collect = youngCollector();
  if (!collect) return () => undefined;
  const release = new QuietMemoryRelease({ youngBytes: youngGenerationBytes, collect });
  const timer = setInterval(() => release.check(), CHECK_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
