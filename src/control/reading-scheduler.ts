import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';

/**
 * Scheduled reads of the whole fleet (the daily relay audit of DOMAIN.md rule 17, register reads for rule 20),
 * on cron schedules (node-cron). Reads are routine work: at most `concurrencyPerLink` of them run on one link at
 * a time, so a switch command on the same link (a reconnect after payment) never queues behind a round of
 * reads. Meters are fetched page by page, so a round over a million meters holds one or two pages in memory.
 * One round at a time: a tick that comes while a round is running is skipped and counted, never queued.
 *
 * ```ts
 * const scheduler = new ReadingScheduler({
 *   schedules: [{ name: 'daily-audit', cron: '0 2 * * *' }],
 *   listMeters: (after, limit) => store.listMeters({ after, limit }),
 *   read: async (meterId) => ({ ok: (await controller.readNow(meterId)).ok }),
 *   concurrencyPerLink: 2,
 *   logger,
 * });
 * scheduler.start();
 * ```
 */

export interface ReadingSchedule {
  name: string;
  /** node-cron expression (5 fields, or 6 with seconds first). */
  cron: string;
}

export interface ReadingSchedulerOptions {
  schedules: ReadingSchedule[];
  /** Meters in a stable order (by id), after `afterMeterId` (null: from the start), at most `limit`. */
  listMeters: (afterMeterId: string | null, limit: number) => Promise<{ meterId: string; link: string }[]>;
  /**
   * Read one meter. `skipped`: the read was not tried (e.g. a command is on the wire to that meter). `authFailed`:
   * the meter answered and refused the gateway's credentials (a key matter, not a dead meter).
   */
  read: (meterId: string) => Promise<{ ok: boolean; skipped?: boolean; authFailed?: boolean }>;
  concurrencyPerLink: number;
  logger: Logger;
  /** Meters per `listMeters` call (default 500). */
  pageSize?: number;
  /** Time zone for the cron expressions (default: the process's). */
  timezone?: string;
}

export interface ReadingRound {
  schedule: string;
  /** `overlap`: another round was running, this one did not run; `stopped`: `stop()` ended it early. */
  status: 'completed' | 'overlap' | 'stopped';
  /** Meters listed in this round. */
  meters: number;
  ok: number;
  failed: number;
  /** Of `failed`: meters that answered and refused the gateway's credentials (check the key file or the meter's keys). */
  authFailed: number;
  /** Listed but not read: the read declined, or the round was stopped before reaching them. */
  skipped: number;
  ms: number;
}

export interface ReadingSchedulerStats {
  rounds: number;
  /** Rounds not run because the previous one was still running. */
  skippedRounds: number;
  running: string | null;
  lastRound: ReadingRound | null;
}

export class ReadingScheduler {
  private readonly tasks: ScheduledTask[] = [];
  private readonly pageSize: number;
  private current: Promise<ReadingRound> | undefined;
  private currentName: string | null = null;
  /** Set by stop(): the running round starts no new reads. Reset when a round starts. */
  private stopRequested = false;
  private rounds = 0;
  private skippedRounds = 0;
  private lastRound: ReadingRound | null = null;

  constructor(private readonly options: ReadingSchedulerOptions) {
    const names = new Set<string>();
    for (const s of options.schedules) {
      if (names.has(s.name)) throw new Error(`reading schedule "${s.name}" is defined twice`);
      names.add(s.name);
      if (!cron.validate(s.cron)) throw new Error(`reading schedule "${s.name}": "${s.cron}" is not a valid cron expression`);
    }
    if (!Number.isInteger(options.concurrencyPerLink) || options.concurrencyPerLink < 1) {
      throw new Error(`reading scheduler: concurrencyPerLink must be a positive integer (got ${options.concurrencyPerLink})`);
    }
    this.pageSize = options.pageSize ?? 500;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1) throw new Error(`reading scheduler: pageSize must be a positive integer (got ${this.pageSize})`);
  }

  start(): void {
    if (this.tasks.length > 0) return;
    for (const s of this.options.schedules) {
      const task = cron.createTask(s.cron, () => void this.runOnce(s.name), { name: `reading:${s.name}`, timezone: this.options.timezone });
      void task.start();
      this.tasks.push(task);
    }
    this.options.logger.info({ schedules: this.options.schedules }, 'reading schedules started');
  }

  /** Stops the schedules; a round in progress starts no new reads and is awaited. */
  async stop(): Promise<void> {
    if (this.current) this.stopRequested = true;
    for (const t of this.tasks.splice(0)) await t.destroy();
    if (this.current) await this.current;
  }

  /**
   * Runs one round now (named after a schedule, or `manual`). If a round is already running this one does not
   * run: it returns at once with status `overlap` and is counted in `stats().skippedRounds`.
   */
  runOnce(name = 'manual'): Promise<ReadingRound> {
    if (this.current) {
      this.skippedRounds += 1;
      this.options.logger.warn({ schedule: name, running: this.currentName }, 'reading round skipped: the previous round is still running');
      return Promise.resolve({ schedule: name, status: 'overlap', meters: 0, ok: 0, failed: 0, authFailed: 0, skipped: 0, ms: 0 });
    }
    this.currentName = name;
    this.stopRequested = false;
    const round = this.round(name).finally(() => {
      this.current = undefined;
      this.currentName = null;
    });
    this.current = round;
    return round;
  }

  stats(): ReadingSchedulerStats {
    return { rounds: this.rounds, skippedRounds: this.skippedRounds, running: this.currentName, lastRound: this.lastRound };
  }

  private async round(name: string): Promise<ReadingRound> {
    const started = Date.now();
    const log = this.options.logger.child({ schedule: name });
    const { concurrencyPerLink } = this.options;
    const queues = new Map<string, string[]>();
    const active = new Map<string, number>();
    const inFlight = new Set<Promise<void>>();
    const counts = { meters: 0, ok: 0, failed: 0, authFailed: 0, skipped: 0 };
    let queued = 0;
    let after: string | null = null;
    let exhausted = false;
    let listError: string | undefined;

    const readOne = async (meterId: string, link: string): Promise<void> => {
      try {
        const r = await this.options.read(meterId);
        if (r.skipped) counts.skipped += 1;
        else if (r.ok) counts.ok += 1;
        else {
          counts.failed += 1;
          if (r.authFailed) {
            counts.authFailed += 1;
            log.warn({ meterId, link }, "scheduled read refused: the meter refused the gateway's credentials");
          }
        }
      } catch (err) {
        counts.failed += 1;
        log.warn({ meterId, link, err: (err as Error).message }, 'scheduled read failed');
      } finally {
        active.set(link, (active.get(link) ?? 1) - 1);
      }
    };

    const dispatch = (): void => {
      for (const [link, q] of queues) {
        while (q.length > 0 && (active.get(link) ?? 0) < concurrencyPerLink) {
          const meterId = q.shift() as string;
          queued -= 1;
          active.set(link, (active.get(link) ?? 0) + 1);
          const p: Promise<void> = readOne(meterId, link).finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        if (q.length === 0) queues.delete(link);
      }
    };

    log.info('reading round started');
    while (!this.stopRequested) {
      // Keep about one page waiting: enough to keep every link busy, bounded in memory.
      if (!exhausted && queued < this.pageSize) {
        let page: { meterId: string; link: string }[];
        try {
          page = await this.options.listMeters(after, this.pageSize);
        } catch (err) {
          listError = (err as Error).message;
          log.error({ err: listError, after }, 'listing meters failed; the round ends early');
          exhausted = true;
          page = [];
        }
        const last = page[page.length - 1];
        if (page.length < this.pageSize || last === undefined || last.meterId === after) exhausted = true;
        if (last !== undefined) after = last.meterId;
        for (const m of page) {
          const q = queues.get(m.link) ?? [];
          q.push(m.meterId);
          queues.set(m.link, q);
        }
        queued += page.length;
        counts.meters += page.length;
      }
      dispatch();
      if (inFlight.size === 0) {
        if (exhausted && queued === 0) break;
        continue;
      }
      if (exhausted || queued >= this.pageSize) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    counts.skipped += queued;
    const result: ReadingRound = { schedule: name, status: queued > 0 || !exhausted ? 'stopped' : 'completed', ...counts, ms: Date.now() - started };
    this.rounds += 1;
    this.lastRound = result;
    log.info({ ...result, listError }, 'reading round finished');
    return result;
  }
}
