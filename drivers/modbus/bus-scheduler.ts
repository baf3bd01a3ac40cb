import { realBusClock, type BusClock } from './bus-clock.js';

/**
 * Who goes next on one Modbus link. A serial bus is half-duplex: one transaction at a time
 * (`maxConcurrent: 1`), separated by the inter-frame silence t3.5 (Modbus over Serial Line V1.02 §2.5.1.1),
 * counted from the end of the previous transaction. A TCP link may run up to `maxConcurrent` transactions
 * at once with no silence. Relay commands go before routine reads; within each class the unit ids waiting
 * take turns (round-robin in unit-id order), so one busy meter cannot starve the others on its bus.
 * While the link is closed (`setOpen(false)`) nothing starts and the queue is kept, so a port that
 * disappears and comes back loses no request.
 */

export type TransactionPriority = 'command' | 'read';
const PRIORITIES: readonly TransactionPriority[] = ['command', 'read'];

export interface BusSchedulerOptions {
  maxConcurrent: number;
  /** Silence before a transaction starts, after the previous one ended (ms; 0 for TCP). */
  interFrameMs: number;
  clock?: BusClock;
}

interface Job {
  unitId: number;
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class BusSchedulerClosedError extends Error {}

export class BusScheduler {
  readonly stats = { started: 0, peakActive: 0 };
  private readonly clock: BusClock;
  private readonly queues: Record<TransactionPriority, Map<number, Job[]>> = { command: new Map(), read: new Map() };
  private readonly lastUnit: Record<TransactionPriority, number> = { command: -1, read: -1 };
  private running = 0;
  private lastEndAt = Number.NEGATIVE_INFINITY;
  private open = true;
  private disposed = false;
  private waitingForSilence = false;

  constructor(private readonly options: BusSchedulerOptions) {
    if (!(options.maxConcurrent >= 1)) throw new RangeError('maxConcurrent must be at least 1');
    this.clock = options.clock ?? realBusClock;
  }

  /** Transactions waiting to start. */
  get queued(): number {
    let n = 0;
    for (const p of PRIORITIES) for (const q of this.queues[p].values()) n += q.length;
    return n;
  }

  /** Transactions running now. */
  get active(): number {
    return this.running;
  }

  /** Queue one transaction; `run` is called when it is this unit's turn and resolves when the line is free again. */
  submit<T>(unitId: number, priority: TransactionPriority, run: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new BusSchedulerClosedError('bus scheduler stopped'));
    return new Promise<T>((resolve, reject) => {
      const q = this.queues[priority];
      const job: Job = { unitId, run, resolve: resolve as (v: unknown) => void, reject };
      const list = q.get(unitId);
      if (list) list.push(job);
      else q.set(unitId, [job]);
      this.pump();
    });
  }

  /** Close (keep the queue, start nothing) or reopen the link. */
  setOpen(open: boolean): void {
    this.open = open;
    if (open) this.pump();
  }

  /** Reject everything queued (the driver is stopping). */
  dispose(reason: string): void {
    this.disposed = true;
    for (const p of PRIORITIES) {
      for (const list of this.queues[p].values()) for (const j of list) j.reject(new BusSchedulerClosedError(reason));
      this.queues[p].clear();
    }
  }

  private pump(): void {
    while (this.open && !this.disposed && this.running < this.options.maxConcurrent && this.queued > 0) {
      const silence = this.lastEndAt + this.options.interFrameMs - this.clock.now();
      if (this.options.interFrameMs > 0 && silence > 0) {
        if (this.waitingForSilence) return;
        this.waitingForSilence = true;
        void this.clock.sleep(silence).then(() => {
          this.waitingForSilence = false;
          this.pump();
        });
        return;
      }
      // Choose only now, after the silence: a command queued meanwhile still goes first.
      const job = this.next();
      if (!job) return;
      this.running++;
      this.stats.started++;
      if (this.running > this.stats.peakActive) this.stats.peakActive = this.running;
      let result: Promise<unknown>;
      try {
        result = job.run();
      } catch (e) {
        result = Promise.reject(e);
      }
      result.then(job.resolve, job.reject).finally(() => {
        this.running--;
        this.lastEndAt = this.clock.now();
        this.pump();
      });
    }
  }

  /** Highest priority first; within it the next unit id after the one served last, wrapping around. */
  private next(): Job | undefined {
    for (const p of PRIORITIES) {
      const q = this.queues[p];
      if (q.size === 0) continue;
      let chosen: number | undefined;
      let lowest: number | undefined;
      for (const unit of q.keys()) {
        if (lowest === undefined || unit < lowest) lowest = unit;
        if (unit > this.lastUnit[p] && (chosen === undefined || unit < chosen)) chosen = unit;
      }
      const unit = chosen ?? lowest!;
      this.lastUnit[p] = unit;
      const list = q.get(unit)!;
      const job = list.shift()!;
      if (list.length === 0) q.delete(unit);
      return job;
    }
    return undefined;
  }
}
