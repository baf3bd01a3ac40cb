/**
 * What a stretch of the gateway's run costs the process it runs in (issue 19): CPU time of the main thread and of the
 * whole process, the other threads by name, event-loop utilisation, GC pauses, the store's statements and, on
 * request, a CPU profile split by part (cpu-parts.ts). Start it when the first order is sent, stop it when the last
 * is verified, and divide by the orders.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { execFileSync } from 'node:child_process';
import { performance, PerformanceObserver, type EventLoopUtilization } from 'node:perf_hooks';
import type { StatementCounter } from '../../src/store/statement-counter.js';
import { CPU_PARTS, splitByPart, type CpuProfile, type CpuSplit } from './cpu-parts.js';
import { fmt } from './bench-common.js';

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux unless configured otherwise). */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of each of this process's threads, in µs, by thread id, with the thread's name. */
function threadTimes(): Map<number, { name: string; us: number }> {
  const out = new Map<number, { name: string; us: number }>();
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    // "tid (name) state ppid …": the name may hold spaces, so fields are counted after its closing parenthesis.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // Fields 14 and 15 (utime, stime) of proc(5); fields[0] is field 3.
    const ticks = Number(fields[11]) + Number(fields[12]);
    out.set(Number(tid), { name: stat.slice(stat.indexOf('(') + 1, close), us: (ticks * 1e6) / CLK_TCK });
  }
  return out;
}

export interface RunCost {
  orders: number;
  wallMs: number;
  /** µs of CPU per order: the main thread (from /proc, 1/CLK_TCK resolution), the whole process (process.cpuUsage). */
  mainUsPerOrder: number;
  processUsPerOrder: number;
  /** µs per order of the process's other threads, by thread name (V8's GC helpers, libuv's pool). */
  otherThreadsUsPerOrder: Record<string, number>;
  /** Event-loop utilisation over the run (0–1). */
  elu: number;
  gc: { count: number; ms: number; usPerOrder: number; byKind: Record<string, { count: number; ms: number }> };
  /** The bench's own synchronous work, timed around it (its hook, building bulk requests, reading their answers). */
  benchUsPerOrder: number;
  /** The store's statements per order; `us`: µs in them per order (SQLite only: 0 on PostgreSQL). */
  statements?: { perOrder: number; roundTripsPerOrder: number; usPerOrder: number; top: { statement: string; perOrder: number; usPerOrder: number }[] };
  profile?: { file: string; split: CpuSplit; usPerOrder: Record<string, number> };
  heap?: HeapSampleSummary;
}

const GC_KINDS: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weak callbacks' };

/** Measuring a run: `start()` at the first order, `stop(orders)` after the last. */
export class RunCostMeter {
  private mainStart = 0;
  private threadsStart = new Map<number, { name: string; us: number }>();
  private cpuStart: NodeJS.CpuUsage | undefined;
  private eluStart: EventLoopUtilization | undefined;
  private t0 = 0;
  private gcByKind: Record<string, { count: number; ms: number }> = {};
  private readonly gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      const k = (this.gcByKind[kind] ??= { count: 0, ms: 0 });
      k.count++;
      k.ms += e.duration;
    }
  });
  private session: Session | undefined;
  /** µs of the bench's own synchronous work (see `bench`). */
  private benchUs = 0;

  /** `threadNames`: names for thread ids the OS names alike (every thread Node starts is "node"), e.g. the journal's worker. */
  /**
   * `heapProfileTo`: also sample the main thread's allocations over the run (the inspector's sampling heap profiler),
   * keeping samples of objects the GC has since collected, so the total is what was allocated; with `heapSurvivors`,
   * the first SURVIVORS_WINDOW_MS of the run only, and only the samples of objects not collected by then (live, or
   * promoted and not yet marked dead): what the orders in progress hold, which is what scavenges copy and promote.
   */
  constructor(private readonly o: { statements?: StatementCounter; profileTo?: string; heapProfileTo?: string; heapSurvivors?: boolean; threadNames?: () => ReadonlyMap<number, string> }) {}

  /** Time the bench's own synchronous work `fn` (not the gateway's), so it can be told apart. */
  bench<T>(fn: () => T): T {
    const s = performance.now();
    try {
      return fn();
    } finally {
      this.benchUs += (performance.now() - s) * 1000;
    }
  }

  async start(): Promise<void> {
    if (this.o.profileTo || this.o.heapProfileTo) {
      this.session = new Session();
      this.session.connect();
    }
    if (this.o.heapProfileTo) {
      await this.session!.post('HeapProfiler.enable');
      await this.session!.post('HeapProfiler.startSampling', { samplingInterval: HEAP_SAMPLING_BYTES, includeObjectsCollectedByMajorGC: !this.o.heapSurvivors, includeObjectsCollectedByMinorGC: !this.o.heapSurvivors });
    }
    if (this.o.profileTo) {
      const session = this.session!;
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 100 });
      await session.post('Profiler.start');
    }
    this.o.statements?.reset();
    this.gcByKind = {};
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.threadsStart = threadTimes();
    this.mainStart = this.threadsStart.get(process.pid)!.us;
    this.cpuStart = process.cpuUsage();
    this.eluStart = performance.eventLoopUtilization();
    this.benchUs = 0;
    this.t0 = performance.now();
    // For lining up with --trace-gc(-nvp), whose lines carry ms since the isolate started (about performance.now()).
    if (this.o.heapProfileTo) console.log(`run window starts at ${this.t0.toFixed(0)} ms`);
    if (this.o.heapSurvivors) {
      this.survivorsTaken = new Promise((resolve) => setTimeout(() => void this.session!.post('HeapProfiler.stopSampling').then((r) => resolve((r as { profile: HeapProfile }).profile)), SURVIVORS_WINDOW_MS));
    }
  }

  private survivorsTaken: Promise<HeapProfile> | undefined;

  async stop(orders: number): Promise<RunCost> {
    const wallMs = performance.now() - this.t0;
    const elu = performance.eventLoopUtilization(this.eluStart).utilization;
    const cpu = process.cpuUsage(this.cpuStart);
    const threads = threadTimes();
    const mainUs = threads.get(process.pid)!.us - this.mainStart;
    // A store on a worker thread counts there: bring its counts here first.
    await this.o.statements?.pull();
    const statements = this.o.statements?.snapshot();
    if (this.o.heapProfileTo) console.log(`run window ends at ${performance.now().toFixed(0)} ms`);
    let heap: HeapSampleSummary | undefined;
    if (this.o.heapProfileTo) {
      const h = this.survivorsTaken ? await this.survivorsTaken : ((await this.session!.post('HeapProfiler.stopSampling')) as { profile: HeapProfile }).profile;
      writeFileSync(this.o.heapProfileTo, JSON.stringify(h));
      // Survivors: bytes in the window, not per order (the window holds some of the orders, each part-way).
      heap = { ...summariseHeapSamples(h, this.survivorsTaken ? 1 : orders, this.o.heapProfileTo), survivors: this.survivorsTaken !== undefined };
    }
    let profile: RunCost['profile'];
    if (this.o.profileTo) {
      const { profile: p } = (await this.session!.post('Profiler.stop')) as { profile: CpuProfile };
      writeFileSync(this.o.profileTo!, JSON.stringify(p));
      const split = splitByPart(p);
      profile = { file: this.o.profileTo!, split, usPerOrder: Object.fromEntries(CPU_PARTS.map((part) => [part, split.byPart[part] / orders])) };
    }
    this.session?.disconnect();
    this.session = undefined;
    this.gcObserver.disconnect();
    const others: Record<string, number> = {};
    const names = this.o.threadNames?.() ?? new Map<number, string>();
    for (const [tid, t] of threads) {
      if (tid === process.pid) continue;
      const us = t.us - (this.threadsStart.get(tid)?.us ?? 0);
      const name = names.get(tid) ?? (t.name === 'node' ? 'node (V8 and libuv helpers)' : t.name);
      if (us > 0) others[name] = (others[name] ?? 0) + us / orders;
    }
    const gcMs = Object.values(this.gcByKind).reduce((s, k) => s + k.ms, 0);
    return {
      orders,
      wallMs,
      mainUsPerOrder: mainUs / orders,
      processUsPerOrder: (cpu.user + cpu.system) / orders,
      otherThreadsUsPerOrder: others,
      elu,
      gc: { count: Object.values(this.gcByKind).reduce((s, k) => s + k.count, 0), ms: gcMs, usPerOrder: (gcMs * 1000) / orders, byKind: this.gcByKind },
      benchUsPerOrder: this.benchUs / orders,
      ...(statements
        ? {
            statements: {
              perOrder: statements.total / orders,
              roundTripsPerOrder: statements.roundTrips / orders,
              usPerOrder: statements.byStatement.reduce((sum, s) => sum + s.us, 0) / orders,
              // The most run, then those of the rest that took the most time (a statement run once per batch can cost more).
              top: [...statements.byStatement.slice(0, 15), ...statements.byStatement.slice(15).sort((a, b) => b.us - a.us || b.count - a.count).slice(0, 5)].map((s) => ({
                statement: s.statement,
                perOrder: s.count / orders,
                usPerOrder: s.us / orders,
              })),
            },
          }
        : {}),
      ...(profile ? { profile } : {}),
      ...(heap ? { heap } : {}),
    };
  }
}

/** How long into the run the survivors' profile is taken (BENCH_HEAP_PROFILE=survivors): well inside a 20k-order run. */
const SURVIVORS_WINDOW_MS = 6000;

/** Bytes between two samples of the heap profiler: small enough for a per-site split over thousands of orders. */
const HEAP_SAMPLING_BYTES = 32 * 1024;

/** The subset of the inspector's HeapProfiler.SamplingHeapProfile the summary reads. */
interface HeapProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapProfileNode[];
}
interface HeapProfile {
  head: HeapProfileNode;
}

export interface HeapSampleSummary {
  file: string;
  /** Only objects still there at the end were counted (see RunCostMeter's `heapSurvivors`). */
  survivors?: boolean;
  /** Bytes allocated per order on the main thread (sampled estimate). */
  bytesPerOrder: number;
  /** The sites that allocated most (function at script:line, self bytes per order), and the same by calling site of our code. */
  topSites: { site: string; bytesPerOrder: number }[];
}

/** Per order: all sampled bytes, and the allocating sites with most bytes (a site: function name, file and line). */
export function summariseHeapSamples(profile: HeapProfile, orders: number, file: string): HeapSampleSummary {
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapProfileNode, ourCaller: string): void => {
    const { functionName, url, lineNumber } = n.callFrame;
    const short = url.replace(/^.*\/(node_modules\/|dist\/)/, '$1');
    const site = `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}`;
    // Our own code (src/, drivers/, tests/) names the site; a library's or Node's allocations go to our caller too.
    const ours = /\/dist\/(src|drivers|tests)\//.test(url) ? site : ourCaller;
    if (n.selfSize > 0) {
      total += n.selfSize;
      bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
      if (ours !== site) bySite.set(`  via ${ours}`, (bySite.get(`  via ${ours}`) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, ours);
  };
  walk(profile.head, '(no caller of ours)');
  const topSites = [...bySite]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 40)
    .map(([site, bytes]) => ({ site, bytesPerOrder: bytes / orders }));
  return { file, bytesPerOrder: total / orders, topSites };
}

/** The run's cost, as the bench prints it. */
export function printRunCost(c: RunCost, loadAverage: string): void {
  const others = Object.entries(c.otherThreadsUsPerOrder)
    .sort((a, b) => b[1] - a[1])
    .map(([name, us]) => `${name} ${fmt(us, 1)}`)
    .join(', ');
  console.log(
    `cpu per verified order (first bulk request → last verified, ${fmt(c.wallMs / 1000, 2)} s): main thread ${fmt(c.mainUsPerOrder, 1)} µs, whole process ${fmt(c.processUsPerOrder, 1)} µs ` +
      `(other threads: ${others || 'none'}); of the main thread, the bench's own timed work ${fmt(c.benchUsPerOrder, 1)} µs; ` +
      `event-loop utilisation ${c.elu.toFixed(3)}; load average at the end ${loadAverage}`,
  );
  const kinds = Object.entries(c.gc.byKind)
    .map(([k, v]) => `${k} ${fmt(v.count)} × ${fmt(v.ms / Math.max(1, v.count), 2)} ms`)
    .join(', ');
  console.log(`  gc: ${fmt(c.gc.usPerOrder, 1)} µs per order (${fmt(c.gc.ms)} ms in ${fmt(c.gc.count)} pauses: ${kinds || 'none'}); allocations: not measured (Node 20 has no allocation counter)`);
  if (c.statements) {
    const s = c.statements;
    const timed = s.usPerOrder > 0;
    console.log(
      `  store statements per order: ${fmt(s.perOrder, 2)}${s.roundTripsPerOrder > 0 ? `, round trips per order ${fmt(s.roundTripsPerOrder, 2)}` : ''}` +
        `${timed ? `, ${fmt(s.usPerOrder, 1)} µs per order in them (wall time around each call)` : ''}; the 15 most run and the 5 of the rest that took longest${timed ? ', per order (runs, µs)' : ' (untimed: the next 5 most run), per order'}:`,
    );
    for (const t of s.top) console.log(`    ${fmt(t.perOrder, 3).padStart(7)}${timed ? ` ${fmt(t.usPerOrder, 1).padStart(7)}` : ''}  ${t.statement}`);
  }
  if (c.profile) {
    const p = c.profile;
    const sampled = p.split.busyUs / c.orders;
    // Samples measure time on the stack, which includes time the thread waited for a core on a busy machine; the
    // shares are the profile's, the µs are those shares of the main thread's CPU time measured from /proc.
    console.log(`  main thread by part (CPU profile, 100 µs sampling; ${p.file}): share of the samples, and that share of the main thread's ${fmt(c.mainUsPerOrder, 1)} µs per order:`);
    for (const part of CPU_PARTS) {
      const share = sampled > 0 ? p.usPerOrder[part]! / sampled : 0;
      console.log(`    ${part.padEnd(15)} ${fmt(100 * share, 1).padStart(5)} %  ${fmt(share * c.mainUsPerOrder, 1).padStart(7)} µs`);
    }
    console.log(`    (samples: ${fmt(sampled, 1)} µs busy and ${fmt(p.split.idleUs / c.orders, 1)} µs idle per order)`);
  }
  if (c.heap) {
    const unit = c.heap.survivors ? 'B' : 'B per order';
    console.log(
      `  main thread ${c.heap.survivors ? `survivors (objects allocated in the run's first ${SURVIVORS_WINDOW_MS / 1000} s and not collected by then, ` : 'allocations ('}sampling heap profile, ${c.heap.file}): ${fmt(c.heap.bytesPerOrder)} ${unit}; the sites that allocated most, ${unit}:`,
    );
    for (const s of c.heap.topSites) console.log(`    ${fmt(s.bytesPerOrder).padStart(c.heap.survivors ? 11 : 7)}  ${s.site}`);
  }
}
