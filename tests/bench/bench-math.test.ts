import { describe, expect, it } from 'vitest';
import { acceptance, dueBy, latencySummary, parseCpuList, tickPlan } from './bench-math.js';

describe('the open-loop submit schedule', () => {
  it('owes floor(rate × elapsed) orders, so a late tick catches up instead of lowering the rate', () => {
    expect(dueBy(3000, 0)).toBe(0);
    expect(dueBy(3000, 10)).toBe(30);
    expect(dueBy(3000, 25)).toBe(75); // a tick 15 ms late still brings the total to what 25 ms owe
    expect(dueBy(3000, 20_000)).toBe(60_000);
    expect(dueBy(0, 1000)).toBe(0);
  });

  it('spreads a rate that is not a multiple of the ticks evenly, and sends exactly rate × seconds in all', () => {
    const plan = tickPlan(3333, 10, 1);
    expect(plan).toHaveLength(100);
    expect(plan.reduce((a, b) => a + b, 0)).toBe(3333);
    expect(Math.min(...plan)).toBe(33);
    expect(Math.max(...plan)).toBe(34);
    expect(tickPlan(50, 10, 1).reduce((a, b) => a + b, 0)).toBe(50); // under one order per tick: every other tick sends one
    expect(tickPlan(50, 10, 1).filter((n) => n > 1)).toEqual([]);
  });
});

describe('latency percentiles', () => {
  it('gives p50, p99 and max of the finished orders', () => {
    const l = Array.from({ length: 1000 }, (_, i) => i + 1); // 1 … 1000 ms
    expect(latencySummary(l)).toEqual({ count: 1000, unfinished: 0, p50: 501, p99: 991, max: 1000 });
  });

  it('counts an order that never finished as slower than all others, so p99 cannot hide it', () => {
    const l: (number | undefined)[] = [...Array.from({ length: 98 }, () => 10), undefined, undefined];
    const s = latencySummary(l);
    expect(s.unfinished).toBe(2);
    expect(s.p50).toBe(10);
    expect(s.p99).toBe(Infinity);
    expect(s.max).toBe(Infinity);
  });

  it('says NaN rather than 0 for an empty run', () => {
    expect(latencySummary([]).p99).toBeNaN();
  });
});

describe('CPU lists for the pinning switch', () => {
  it('reads taskset lists', () => {
    expect(parseCpuList('0')).toEqual([0]);
    expect(parseCpuList('0,1')).toEqual([0, 1]);
    expect(parseCpuList('2-3')).toEqual([2, 3]);
    expect(parseCpuList('4,0-2')).toEqual([0, 1, 2, 4]);
  });

  it('refuses what taskset would not take', () => {
    for (const bad of ['', 'a', '0,', '1-', '3-1', '0;1']) expect(() => parseCpuList(bad)).toThrow(/not a CPU list/);
  });
});

describe('the acceptance verdicts', () => {
  it('passes or fails each bar of the issue, and leaves a figure this run did not measure undecided', () => {
    const [ratio, cpu, p99] = acceptance({ ratio: 0.5, mainUsPerOrder: 120.5, openLoopP99Ms: undefined });
    expect(ratio!.pass).toBe(true);
    expect(cpu!.pass).toBe(false);
    expect(p99!.pass).toBeUndefined();
    expect(acceptance({ openLoopP99Ms: 99.9 })[2]!.pass).toBe(true);
    expect(acceptance({ openLoopP99Ms: 100 })[2]!.pass).toBe(false);
    expect(acceptance({ openLoopP99Ms: Infinity })[2]!.pass).toBe(false);
  });
});
