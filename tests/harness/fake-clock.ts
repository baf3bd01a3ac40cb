import type { Clock } from '../../src/control/clock.js';

/** A clock the test moves by hand, for deadlines and waits measured in minutes or days (no sleeping). */
export class FakeClock implements Clock {
  constructor(private t: number) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
}
