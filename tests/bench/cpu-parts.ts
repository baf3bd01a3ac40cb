/**
 * Where the gateway's main-thread CPU goes, by part (issue 19): a V8 CPU profile (the inspector's Profiler, or a
 * `.cpuprofile` file) split by the code each sample was in. Each sample's self time goes to its function's part,
 * chosen by the script's URL; functions without a URL (native code such as better-sqlite3's `run`, builtins such as
 * JSON.parse) belong to the part of the JavaScript that called them.
 */

/** The parts of one order's cost, in the order they are printed. */
export const CPU_PARTS = ['SQLite journal', 'MQTT', 'GC', 'HTTP admission', 'loop and rules', 'runtime', 'bench', 'simulator'] as const;
export type CpuPart = (typeof CPU_PARTS)[number];

/** The subset of the Chrome DevTools profile format (Profiler.Profile) the split reads. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  /** µs between one sample and the one before it (the first: since startTime). */
  timeDeltas?: number[];
}

export interface CpuSplit {
  /** µs of self time per part (idle time is not CPU and is not in any part). */
  byPart: Record<CpuPart, number>;
  /** µs the thread was idle (waiting in the event loop). */
  idleUs: number;
  /** µs in all parts together. */
  busyUs: number;
}

// First match wins. The store's part also takes the PostgreSQL client (BENCH_DATABASE_URL runs).
const BY_URL: [RegExp, CpuPart][] = [
  [/\/node_modules\/(better-sqlite3|pg|pg-pool|pg-protocol|pg-types)\/|\/src\/store\//, 'SQLite journal'],
  [/\/node_modules\/(mqtt|mqtt-packet|bl)\/|\/drivers\/mqtt\//, 'MQTT'],
  [/\/node_modules\/(fastify|@fastify\/[^/]+|find-my-way|avvio|fastify-type-provider-zod|light-my-request)\/|\/src\/api\//, 'HTTP admission'],
  [/\/src\/(control|domain)\//, 'loop and rules'],
  [/\/tests\/bench\//, 'bench'],
  [/\/simulators\//, 'simulator'],
];

/** The part a function with this name and script URL belongs to; undefined: its caller's (no URL: native code). */
export function partOfFrame(functionName: string, url: string): CpuPart | 'idle' | undefined {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)' || functionName === '(root)') return 'runtime';
    return undefined;
  }
  for (const [re, part] of BY_URL) if (re.test(url)) return part;
  return 'runtime'; // node:internal/*, the rest of node_modules, the gateway's other modules
}

/** Split `profile`'s self time by part. */
export function splitByPart(profile: CpuProfile): CpuSplit {
  const parent = new Map<number, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const partOfNode = new Map<number, CpuPart | 'idle'>();
  const resolve = (id: number): CpuPart | 'idle' => {
    const known = partOfNode.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const part = partOfFrame(node.callFrame.functionName, node.callFrame.url) ?? (up === undefined ? 'runtime' : resolve(up));
    partOfNode.set(id, part);
    return part;
  };

  const byPart = Object.fromEntries(CPU_PARTS.map((p) => [p, 0])) as Record<CpuPart, number>;
  let idleUs = 0;
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // A sample stands for the time until the next one (as DevTools counts it); the last, until the profile's end.
  let at = profile.startTime;
  const times = deltas.map((d) => (at += d));
  for (let i = 0; i < samples.length; i++) {
    const us = (i + 1 < times.length ? times[i + 1]! : profile.endTime) - times[i]!;
    if (us <= 0) continue;
    const part = resolve(samples[i]!);
    if (part === 'idle') idleUs += us;
    else byPart[part] += us;
  }
  return { byPart, idleUs, busyUs: CPU_PARTS.reduce((s, p) => s + byPart[p], 0) };
}

/** `node dist/tests/bench/cpu-parts.js FILE.cpuprofile [ORDERS]`: the split of a saved profile (e.g. `node --cpu-prof`'s). */
if (process.argv[1]?.endsWith('cpu-parts.js') && process.argv[2]) {
  const { readFileSync } = await import('node:fs');
  const split = splitByPart(JSON.parse(readFileSync(process.argv[2], 'utf8')) as CpuProfile);
  const orders = Number(process.argv[3] ?? 1);
  for (const part of CPU_PARTS) {
    console.log(`${part.padEnd(15)} ${(split.byPart[part] / orders).toFixed(1).padStart(10)} µs  ${((100 * split.byPart[part]) / Math.max(1, split.busyUs)).toFixed(1).padStart(5)} %`);
  }
  console.log(`${'idle'.padEnd(15)} ${(split.idleUs / orders).toFixed(1).padStart(10)} µs`);
}
