import { describe, expect, it } from 'vitest';
import type { BusClock } from '../../drivers/modbus/bus-clock.js';
import { BusScheduler, BusSchedulerClosedError, type TransactionPriority } from '../../drivers/modbus/bus-scheduler.js';

/** A clock the test moves by hand: `sleep` resolves only when `advance` passes its time. */
class FakeClock implements BusClock {
  t = 0;
  private sleepers: Array<{ at: number; resolve: () => void }> = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sleepers.push({ at: this.t + ms, resolve }));
  }
  async advance(ms: number): Promise<void> {
    this.t += ms;
    const due = this.sleepers.filter((s) => s.at <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.resolve();
    await flush();
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

/** A transaction the test finishes by hand, recording when it started. */
interface Tx {
  label: string;
  startedAt?: number;
  finish(): void;
}

function harness(options: { maxConcurrent: number; interFrameMs: number }) {
  const clock = new FakeClock();
  const scheduler = new BusScheduler({ ...options, clock });
  const started: Tx[] = [];
  const submit = (unitId: number, priority: TransactionPriority, label = `${priority}:${unitId}`): { tx: Tx; done: Promise<string> } => {
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const tx: Tx = { label, finish: () => finish() };
    const done = scheduler.submit(unitId, priority, async () => {
      tx.startedAt = clock.now();
      started.push(tx);
      await gate;
      return label;
    });
    return { tx, done };
  };
  return { clock, scheduler, started, submit };
}

describe('BusScheduler (serial bus: one at a time, t3.5 apart)', () => {
  const T35 = 4; // ms, 9,600 baud 11-bit characters ≈ 4.01 ms

  it('runs one transaction at a time and keeps the inter-frame silence after each', async () => {
    const { clock, scheduler, started, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    const a = submit(1, 'read');
    const b = submit(2, 'read');
    await flush();
    expect(started.map((t) => t.label)).toEqual(['read:1']);
    expect(scheduler.active).toBe(1);
    expect(scheduler.queued).toBe(1);

    await clock.advance(10);
    a.tx.finish();
    await flush();
    expect(await a.done).toBe('read:1');
    // The line just went quiet at t=10: nothing may start before t=14.
    await clock.advance(T35 - 0.1);
    expect(started).toHaveLength(1);
    await clock.advance(0.1);
    expect(started.map((t) => t.label)).toEqual(['read:1', 'read:2']);
    expect(b.tx.startedAt).toBe(10 + T35);
    expect(scheduler.stats.peakActive).toBe(1);
  });

  it('does not wait when the line has already been quiet long enough', async () => {
    const { clock, started, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    const a = submit(1, 'read');
    await flush();
    a.tx.finish();
    await flush();
    await clock.advance(50);
    submit(2, 'read');
    await flush();
    expect(started.map((t) => t.startedAt)).toEqual([0, 50]);
  });

  it('relay commands go before routine reads queued earlier, even one queued during the silence', async () => {
    const { clock, started, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    const first = submit(1, 'read');
    submit(2, 'read');
    submit(3, 'read');
    await flush();
    first.tx.finish();
    await flush();
    submit(9, 'command'); // arrives while the bus waits out t3.5
    await clock.advance(T35);
    expect(started.map((t) => t.label)).toEqual(['read:1', 'command:9']);
  });

  it('shares the bus round-robin by unit id: a unit with many requests cannot starve the others', async () => {
    const { clock, started, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    const jobs = [submit(5, 'read'), submit(5, 'read'), submit(5, 'read'), submit(5, 'read'), submit(1, 'read'), submit(9, 'read'), submit(3, 'read')];
    for (let i = 0; i < jobs.length; i++) {
      await flush();
      started[i]!.finish();
      await flush();
      await clock.advance(T35);
    }
    await Promise.all(jobs.map((j) => j.done));
    // After unit 5: the next unit id above it (9), wrap to the lowest (1), then 3, then 5 again, ...
    expect(started.map((t) => t.label)).toEqual(['read:5', 'read:9', 'read:1', 'read:3', 'read:5', 'read:5', 'read:5']);
  });

  it('keeps its queue while the link is closed and starts it when the link reopens', async () => {
    const { clock, scheduler, started, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    scheduler.setOpen(false);
    const a = submit(1, 'read');
    const b = submit(2, 'command');
    await clock.advance(1000);
    expect(started).toHaveLength(0);
    expect(scheduler.queued).toBe(2);
    scheduler.setOpen(true);
    await flush();
    expect(started.map((t) => t.label)).toEqual(['command:2']);
    started[0]!.finish();
    await flush();
    await clock.advance(T35);
    started[1]!.finish();
    expect(await Promise.all([a.done, b.done])).toEqual(['read:1', 'command:2']);
  });

  it('rejects what is queued when disposed (driver stop), and refuses new work', async () => {
    const { scheduler, submit } = harness({ maxConcurrent: 1, interFrameMs: T35 });
    submit(1, 'read');
    const queued = submit(2, 'read');
    await flush();
    scheduler.dispose('driver stopped');
    await expect(queued.done).rejects.toBeInstanceOf(BusSchedulerClosedError);
    await expect(scheduler.submit(3, 'read', async () => 'x')).rejects.toThrow(/stopped/);
  });
});

describe('BusScheduler (TCP link: parallel up to a limit)', () => {
  it('runs up to maxConcurrent transactions at once with no silence, the rest wait for a free slot', async () => {
    const { scheduler, started, submit } = harness({ maxConcurrent: 3, interFrameMs: 0 });
    const jobs = [1, 2, 3, 4, 5].map((u) => submit(u, 'read'));
    await flush();
    expect(started.map((t) => t.label)).toEqual(['read:1', 'read:2', 'read:3']);
    expect(scheduler.active).toBe(3);
    started[1]!.finish();
    await flush();
    expect(started.map((t) => t.label)).toEqual(['read:1', 'read:2', 'read:3', 'read:4']);
    for (const t of started) t.finish();
    await flush();
    for (const t of started) t.finish();
    await Promise.all(jobs.map((j) => j.done));
    expect(scheduler.stats.peakActive).toBe(3);
  });
});
