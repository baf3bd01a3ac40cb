/**
 * How long to wait before starting the journal's thread again after it died (sqlite-worker-store.ts): `firstMs`, doubled
 * at each death that follows, up to `maxMs`; back to `firstMs` once a thread has answered for `healthyAfterMs`. A thread
 * that dies again at once (it cannot open the file, it crashes on its first batch) so backs off instead of spinning.
 */
export interface RestartBackoffOptions {
  /** The first wait (default 100 ms). */
  firstMs?: number;
  /** The longest wait (default 5 s). */
  maxMs?: number;
  /** A thread up this long (default a minute) counts as healthy: the next death waits `firstMs` again. */
  healthyAfterMs?: number;
}

export class RestartBackoff {
  readonly firstMs: number;
  readonly maxMs: number;
  readonly healthyAfterMs: number;
  private nextMs: number;
  /** When the thread now running answered (ready), if it did. */
  private upSince: number | undefined;

  constructor(options: RestartBackoffOptions = {}) {
    this.firstMs = options.firstMs ?? 100;
    this.maxMs = options.maxMs ?? 5000;
    this.healthyAfterMs = options.healthyAfterMs ?? 60_000;
    this.nextMs = this.firstMs;
  }

  /** A thread is up and answering, since `now`. */
  up(now: number): void {
    this.upSince = now;
  }

  /** The thread died at `now`: how long to wait before starting the next one. */
  died(now: number): number {
    if (this.upSince !== undefined && now - this.upSince >= this.healthyAfterMs) this.nextMs = this.firstMs;
    this.upSince = undefined;
    const wait = this.nextMs;
    this.nextMs = Math.min(this.maxMs, wait * 2);
    return wait;
  }
}
