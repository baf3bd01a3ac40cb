import type { LinkCounters, LinkHealth, LinkKind } from './driver.js';

/**
 * What every driver needs to answer `linkHealth()`: zeroed counters, an exception counted by its code, and a
 * link's state with when it began and the last failure in words. Shared so that "since" and "last error" mean
 * the same on an MQTT broker connection, a Modbus bus and a DLMS port.
 */

export const zeroLinkCounters = (): LinkCounters => ({
  crcErrors: 0,
  garbled: 0,
  frameRetries: 0,
  timeouts: 0,
  exceptions: {},
  unknownCorrelationIds: 0,
  reopens: 0,
  reconnects: 0,
});

/** Count one protocol exception under its code ("0x02", "object-undefined"). */
export function countException(exceptions: Record<string, number>, code: string): void {
  exceptions[code] = (exceptions[code] ?? 0) + 1;
}

/**
 * A link's state as its health shows it. The link calls `up()` and `down(why)` where it opens and loses its port
 * or connection, and `failed(why)` for a request that failed on it. `health()` is also given whether the link is up
 * now, as the driver decides requests by: a transition the link did not report is taken then, so the health shown
 * never contradicts what the control loop sees.
 */
export class LinkStateLog {
  private state: 'up' | 'down' = 'down';
  private since: number;
  private lastError: { at: number; message: string } | null = null;

  constructor(
    /** What the link is, for its last error when it is found down unannounced: "serial port /dev/ttyUSB0". */
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  up(): void {
    if (this.state === 'up') return;
    this.state = 'up';
    this.since = this.now();
  }

  down(why: string): void {
    this.failed(why);
    if (this.state === 'down') return;
    this.state = 'down';
    this.since = this.now();
  }

  failed(why: string): void {
    this.lastError = { at: this.now(), message: why };
  }

  health(link: string, kind: LinkKind, isUp: boolean, counters: LinkCounters): LinkHealth {
    if (isUp) this.up();
    else if (this.state === 'up') this.down(`${this.what} is not open`);
    return { link, kind, state: this.state, since: this.since, lastError: this.lastError && { ...this.lastError }, counters: { ...counters, exceptions: { ...counters.exceptions } } };
  }
}
