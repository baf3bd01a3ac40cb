import { describe, expect, it } from 'vitest';
import { RestartBackoff } from '../../src/store/thread-restart-backoff.js';

// A fake clock: the times are given, nothing waits.
describe('the journal thread restart backoff', () => {
  it('waits 100 ms after a death, doubling at each death that follows up to 5 s', () => {
    const b = new RestartBackoff();
    let t = 0;
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      const w = b.died(t);
      waits.push(w);
      // The next thread answers shortly, then dies again well within the minute.
      t += w + 50;
      b.up(t);
      t += 1000;
    }
    expect(waits).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it('a thread that dies before answering counts as a death that follows (no reset)', () => {
    const b = new RestartBackoff({ firstMs: 10, maxMs: 1000, healthyAfterMs: 60_000 });
    expect([b.died(0), b.died(20), b.died(60), b.died(140)]).toEqual([10, 20, 40, 80]);
  });

  it('after a minute up, the next death waits the first time again; less than a minute does not reset', () => {
    const b = new RestartBackoff();
    expect([b.died(0), b.died(200), b.died(600)]).toEqual([100, 200, 400]);
    b.up(1000);
    expect(b.died(1000 + 59_999)).toBe(800);
    b.up(70_000);
    expect(b.died(70_000 + 60_000)).toBe(100);
    expect(b.died(130_200)).toBe(200);
  });
});
