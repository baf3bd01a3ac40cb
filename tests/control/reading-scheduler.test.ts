import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ReadingScheduler, type ReadingSchedulerOptions } from '../../src/control/reading-scheduler.js';

// The read itself is a fake here: what is under test is the scheduling (the real read path, readNow through a
// driver, is tested with the drivers and end to end).

const logger = pino({ level: 'silent' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function fleet(n: number, links: string[]): { meterId: string; link: string }[] {
  return Array.from({ length: n }, (_, i) => ({ meterId: `M-${String(i).padStart(6, '0')}`, link: links[i % links.length] as string }));
}

/** listMeters over a sorted array, recording every call. */
function lister(meters: { meterId: string; link: string }[]) {
  const calls: { after: string | null; limit: number }[] = [];
  const listMeters: ReadingSchedulerOptions['listMeters'] = async (after, limit) => {
    calls.push({ after, limit });
    const start = after === null ? 0 : meters.findIndex((m) => m.meterId > after);
    return start < 0 ? [] : meters.slice(start, start + limit);
  };
  return { calls, listMeters };
}

/** A gate a test opens by hand: reads wait on it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

describe('ReadingScheduler', () => {
  it('reads every meter once and never runs more than concurrencyPerLink reads on one link, while links run side by side', async () => {
    const meters = fleet(90, ['bus-1', 'bus-2', 'broker-1']);
    const linkOf = new Map(meters.map((m) => [m.meterId, m.link]));
    const active = new Map<string, number>();
    const maxActive = new Map<string, number>();
    let total = 0;
    let maxTotal = 0;
    const readIds: string[] = [];
    const s = new ReadingScheduler({
      schedules: [],
      ...lister(meters),
      concurrencyPerLink: 2,
      logger,
      pageSize: 20,
      read: async (meterId) => {
        const link = linkOf.get(meterId) as string;
        active.set(link, (active.get(link) ?? 0) + 1);
        maxActive.set(link, Math.max(maxActive.get(link) ?? 0, active.get(link) ?? 0));
        maxTotal = Math.max(maxTotal, ++total);
        await sleep(2);
        active.set(link, (active.get(link) ?? 0) - 1);
        total -= 1;
        readIds.push(meterId);
        return { ok: true };
      },
    });
    const round = await s.runOnce('audit');
    expect(round).toMatchObject({ schedule: 'audit', status: 'completed', meters: 90, ok: 90, failed: 0, skipped: 0 });
    expect(readIds.slice().sort()).toEqual(meters.map((m) => m.meterId));
    expect(Object.fromEntries(maxActive)).toEqual({ 'bus-1': 2, 'bus-2': 2, 'broker-1': 2 });
    expect(maxTotal).toBe(6);
  });

  it('pages through a large fleet with the last meter id as cursor, holding at most about two pages', async () => {
    const meters = fleet(1234, ['l1', 'l2', 'l3', 'l4']);
    const { calls, listMeters } = lister(meters);
    let listedNotRead = 0;
    let maxWaiting = 0;
    const s = new ReadingScheduler({
      schedules: [],
      listMeters: async (after, limit) => {
        const page = await listMeters(after, limit);
        listedNotRead += page.length;
        maxWaiting = Math.max(maxWaiting, listedNotRead);
        return page;
      },
      read: async () => {
        await sleep(0);
        listedNotRead -= 1;
        return { ok: true };
      },
      concurrencyPerLink: 3,
      logger,
      pageSize: 100,
    });
    const round = await s.runOnce();
    expect(round).toMatchObject({ meters: 1234, ok: 1234 });
    expect(calls.map((c) => c.after)).toEqual([null, ...Array.from({ length: 12 }, (_, i) => meters[(i + 1) * 100 - 1]?.meterId)]);
    expect(calls.every((c) => c.limit === 100)).toBe(true);
    expect(maxWaiting).toBeLessThanOrEqual(2 * 100 + 4 * 3); // two pages waiting + the reads on the wire
  });

  it('counts failed, declined and throwing reads separately, and the meters that refused our credentials among the failed', async () => {
    const meters = fleet(6, ['l1']);
    const answers: Record<string, () => Promise<{ ok: boolean; skipped?: boolean; authFailed?: boolean }>> = {
      'M-000001': async () => ({ ok: false }),
      'M-000004': async () => ({ ok: false, authFailed: true }), // it answered: our key is wrong, it is not dead
      'M-000002': async () => ({ ok: false, skipped: true }), // a command is on the wire to it
      'M-000003': async () => {
        throw new Error('driver exploded');
      },
    };
    const s = new ReadingScheduler({ schedules: [], ...lister(meters), concurrencyPerLink: 1, logger, read: (id) => (answers[id] ?? (async () => ({ ok: true })))() });
    expect(await s.runOnce()).toMatchObject({ status: 'completed', meters: 6, ok: 2, failed: 3, authFailed: 1, skipped: 1 });
  });

  it('runs one round at a time: a round asked for while one runs is skipped and counted', async () => {
    const g = gate();
    const s = new ReadingScheduler({ schedules: [], ...lister(fleet(4, ['l1'])), concurrencyPerLink: 1, logger, read: async () => (await g.opened, { ok: true }) });
    const first = s.runOnce('daily');
    const second = await s.runOnce('hourly');
    expect(second).toEqual({ schedule: 'hourly', status: 'overlap', meters: 0, ok: 0, failed: 0, authFailed: 0, skipped: 0, ms: 0 });
    expect(s.stats()).toMatchObject({ rounds: 0, skippedRounds: 1, running: 'daily' });
    g.open();
    expect(await first).toMatchObject({ status: 'completed', ok: 4 });
    expect(s.stats()).toMatchObject({ rounds: 1, skippedRounds: 1, running: null });
    expect((await s.runOnce('hourly')).status).toBe('completed'); // free again
  });

  it('on its cron schedule, a tick that comes while the round still runs is skipped', async () => {
    const g = gate();
    let reads = 0;
    const s = new ReadingScheduler({
      schedules: [{ name: 'every-second', cron: '* * * * * *' }],
      ...lister(fleet(3, ['l1'])),
      concurrencyPerLink: 1,
      logger,
      read: async () => {
        reads += 1;
        await g.opened;
        return { ok: true };
      },
    });
    s.start();
    try {
      const deadline = Date.now() + 4000;
      while (s.stats().skippedRounds < 1 && Date.now() < deadline) await sleep(50);
      expect(s.stats()).toMatchObject({ running: 'every-second', rounds: 0 });
      expect(s.stats().skippedRounds).toBeGreaterThanOrEqual(1);
      expect(reads).toBe(1); // the skipped tick started no reads
    } finally {
      g.open();
      await s.stop();
    }
    // stop() came before the gate's reads resumed: the read on the wire finished, the other two were not started.
    expect(s.stats().lastRound).toMatchObject({ schedule: 'every-second', status: 'stopped', ok: 1, skipped: 2 });
  });

  it('stop() lets running reads finish, starts no new ones and reports the rest as skipped', async () => {
    const g = gate();
    let started = 0;
    const s = new ReadingScheduler({
      schedules: [],
      ...lister(fleet(10, ['l1', 'l2'])),
      concurrencyPerLink: 1,
      logger,
      read: async () => {
        started += 1;
        await g.opened;
        return { ok: true };
      },
    });
    const round = s.runOnce();
    await sleep(10);
    expect(started).toBe(2);
    const stopped = s.stop();
    g.open();
    await stopped;
    expect(await round).toMatchObject({ status: 'stopped', meters: 10, ok: 2, skipped: 8 });
    expect(started).toBe(2);
    expect((await s.runOnce()).status).toBe('completed'); // a manual round after stop() still works
  });

  it('a failing meter listing ends the round early instead of hanging it', async () => {
    const s = new ReadingScheduler({
      schedules: [],
      listMeters: async () => {
        throw new Error('database is locked');
      },
      read: async () => ({ ok: true }),
      concurrencyPerLink: 1,
      logger,
    });
    expect(await s.runOnce()).toMatchObject({ status: 'completed', meters: 0 });
  });

  it('rejects an invalid cron expression at construction, naming the schedule', () => {
    const base = { listMeters: async () => [], read: async () => ({ ok: true }), concurrencyPerLink: 1, logger };
    expect(() => new ReadingScheduler({ ...base, schedules: [{ name: 'daily-audit', cron: '0 2 * * *' }, { name: 'nightly-registers', cron: '61 2 * * *' }] })).toThrow(
      'reading schedule "nightly-registers": "61 2 * * *" is not a valid cron expression',
    );
    expect(() => new ReadingScheduler({ ...base, schedules: [{ name: 'x', cron: 'every day' }] })).toThrow(/"x"/);
    expect(() => new ReadingScheduler({ ...base, schedules: [{ name: 'x', cron: '0 2 * * *' }, { name: 'x', cron: '0 3 * * *' }] })).toThrow('defined twice');
    expect(() => new ReadingScheduler({ ...base, schedules: [], concurrencyPerLink: 0 })).toThrow('concurrencyPerLink');
  });
});
