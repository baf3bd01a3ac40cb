import type { Logger } from 'pino';

/** What a started gateway must undo, run last-first; one failure is logged and does not keep the rest from running. */
export class StopList {
  private readonly stops: (() => Promise<void> | void)[] = [];

  constructor(private readonly logger: Logger) {}

  add(stop: () => Promise<void> | void): void {
    this.stops.push(stop);
  }

  async runAll(): Promise<void> {
    for (let stop = this.stops.pop(); stop; stop = this.stops.pop()) {
      try {
        await stop();
      } catch (err) {
        this.logger.error({ err }, 'error while stopping');
      }
    }
  }
}
