/**
 * Shared pieces of the issue-9 benches (raw MQTT limit, 100k gateway run, memory, API latency, crash recovery):
 * the bench firmware profile, the simulator child process, the gateway configuration and small helpers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { projectRoot } from '../../src/config/project-root.js';
import { parseCpuList } from './bench-math.js';

export const BENCH_PROFILE = 'acme-em340-fw2.4';
/** Relay operate time of the bench profile (shipped: 150 ms). Stated in every printed result. */
export const BENCH_OPERATE_MS = Number(process.env.BENCH_OPERATE_MS ?? 20);
export const LINKS = 10;
/** Commands in flight per link in the control loop: 10 links × 200 = 2,000, above the driver's window of 500. */
export const LINK_CONCURRENCY = 200;
/** The MQTT driver's window per broker connection (config/default.json mqtt.maxInFlight). */
export const MAX_IN_FLIGHT = 500;

/** The p-th percentile of an ascending array. */
export const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

export const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** True when this module is the script node was started with (so each bench file also runs on its own). */
export function isMain(importMetaUrl: string): boolean {
  return process.argv[1] !== undefined && importMetaUrl === pathToFileURL(process.argv[1]).href;
}

export function meterIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(6, '0')}`);
}

/**
 * The shipped firmware profiles, written to a temp directory, with the bench profile's relay operate time set
 * to BENCH_OPERATE_MS (everything else as shipped: topics, QoS 1, timeouts, retries). Gateway and simulator
 * load this directory.
 */
export function writeBenchProfiles(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ml-bench-profiles-'));
  for (const p of loadFirmwareProfiles(join(projectRoot(), 'firmware-profiles')).values()) {
    const out = p.id === BENCH_PROFILE ? { ...p, relay: { ...p.relay, operateTimeMs: BENCH_OPERATE_MS } } : p;
    writeFileSync(join(dir, `${p.id}.json`), JSON.stringify(out, null, 2));
  }
  return dir;
}

/**
 * The pinning switch (issue 19): BENCH_CPUS_GATEWAY pins the bench's own process (the gateway runs in it, and the raw
 * loop's requester), BENCH_CPUS_PEERS the processes it talks to (mosquitto, the simulator, the raw loop's echo
 * responder), each as a taskset CPU list ("0,1", "2-3"). Unset: nothing is pinned.
 */
export const PIN = {
  gateway: process.env.BENCH_CPUS_GATEWAY ? process.env.BENCH_CPUS_GATEWAY.trim() : undefined,
  peers: process.env.BENCH_CPUS_PEERS ? process.env.BENCH_CPUS_PEERS.trim() : undefined,
};
if (PIN.gateway) parseCpuList(PIN.gateway); // refuse a bad list before anything starts
if (PIN.peers) parseCpuList(PIN.peers);

/** Pin every thread of process `pid` to `cpus` (`taskset -a -p -c`); throws if taskset fails (no such CPU, no taskset). */
export function pinProcess(pid: number | undefined, cpus: string | undefined): void {
  if (!cpus) return;
  if (pid === undefined) throw new Error('cannot pin a process that has no pid');
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const now = parseCpuList(affinityOf(pid));
  if (now.join(',') !== parseCpuList(cpus).join(',')) throw new Error(`pinning process ${pid} to CPUs ${cpus} did not take: it may run on ${now.join(',')}`);
}

/** The CPUs `pid` may run on now, as taskset reports them ("0,1"), to show the pinning took. */
export function affinityOf(pid: number): string {
  const out = execFileSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' });
  return out.slice(out.lastIndexOf(':') + 1).trim();
}

/** A peer process (broker, simulator, echo responder): pinned to BENCH_CPUS_PEERS if set. */
export const pinPeer = (pid: number | undefined): void => pinProcess(pid, PIN.peers);

/** Pin this process (all its threads, the gateway's and V8's) to BENCH_CPUS_GATEWAY if set; call before starting anything. */
export function pinSelf(): void {
  pinProcess(process.pid, PIN.gateway);
}

/** The pinning, as the set-up lines print it. */
export function pinningLine(): string {
  if (!PIN.gateway && !PIN.peers) return 'not pinned (BENCH_CPUS_GATEWAY / BENCH_CPUS_PEERS unset)';
  const self = PIN.gateway ? `gateway process on CPUs ${affinityOf(process.pid)} (BENCH_CPUS_GATEWAY=${PIN.gateway})` : 'gateway process not pinned';
  const peers = PIN.peers ? `broker, simulator and echo responder on CPUs ${PIN.peers} (BENCH_CPUS_PEERS)` : 'broker, simulator and echo responder not pinned';
  return `pinned with taskset: ${self}; ${peers}`;
}

const children = new Set<ChildProcess>();
/** Kill `child` when this process exits, however it exits (a failed bench leaves no simulator behind). */
export function track(child: ChildProcess): ChildProcess {
  if (children.size === 0) process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Start `simulators/cli.js` (the MQTT fleet) as a child process and wait until it is subscribed. BENCH_SIM_CPU_PROF=DIR
 * profiles it (`node --cpu-prof --cpu-prof-dir DIR`; the .cpuprofile is written when it stops; read it with
 * `node dist/tests/bench/cpu-parts.js FILE ORDERS`).
 */
export async function startSimulator(o: { brokerUrl: string; meters: number; prefix: string; profilesDir: string; initial?: string }): Promise<ChildProcess> {
  const prof = process.env.BENCH_SIM_CPU_PROF;
  const sim = track(spawn(
    process.execPath,
    [
      ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []),
      join(projectRoot(), 'dist', 'simulators', 'cli.js'),
      ...['--broker', o.brokerUrl, '--meters', String(o.meters), '--prefix', o.prefix, '--profiles', BENCH_PROFILE],
      ...['--profiles-dir', o.profilesDir, '--links', String(LINKS), '--initial', o.initial ?? 'disconnected', '--log-level', 'info'],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  ));
  pinPeer(sim.pid);
  await waitForLine(sim, 'simulator running', 'simulator');
  return sim;
}

/** Resolve when the child prints a line containing `marker` on stdout; reject if it exits first. */
export function waitForLine(child: ChildProcess, marker: string, name: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (l) => {
      if (l.includes(marker)) resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

export { stopChild } from '../harness/child-process.js';

/**
 * Configuration overrides shared by the gateway runs (merged over config/default.json): external mosquitto,
 * SQLite on disk, the bench profiles, 10 links × 200 in the control loop, fleet seeded with `meters` meters of
 * the bench profile, no in-process simulator, no demo traffic, no scheduled readings (they would add unrelated
 * MQTT traffic during the run), a rate limit that does not throttle the bench client.
 */
export function benchConfigOverrides(o: { instanceId: string; brokerUrl: string; dbPath: string; profilesDir: string; meters: number; prefix: string; port?: number }): Record<string, unknown> {
  return {
    instanceId: o.instanceId,
    api: { host: '127.0.0.1', port: o.port ?? 0, rateLimit: { max: 1_000_000, timeWindowMs: 1000 } },
    // BENCH_DATABASE_URL: the same bench on PostgreSQL, in a fresh schema (left behind for inspection; drop ml_bench_* schemas at will).
    store: process.env.BENCH_DATABASE_URL
      ? { kind: 'postgres', postgres: { url: process.env.BENCH_DATABASE_URL, schema: `ml_bench_${Date.now().toString(36)}`, maxConnections: 10 } }
      : { kind: 'sqlite', sqlite: { path: o.dbPath } },
    // PostgreSQL has no default place for the audit key: beside the bench's (unused) SQLite path.
    ...(process.env.BENCH_DATABASE_URL ? { audit: { keyFile: join(dirname(o.dbPath), 'audit.key') } } : {}),
    mqtt: { mode: 'external', url: o.brokerUrl, maxInFlight: MAX_IN_FLIGHT },
    profilesDir: o.profilesDir,
    control: { linkConcurrency: LINK_CONCURRENCY },
    fleet: { seed: o.meters > 0 ? { count: o.meters, prefix: o.prefix, profiles: [BENCH_PROFILE], links: LINKS, regions: ['north'] } : null },
    simulator: { inProcess: false },
    demo: { reconnectEveryMs: 0 },
    readings: { schedules: [] },
    log: { level: 'warn' },
  };
}

/** Plain recursive merge of JSON objects (b wins), for building a config from defaults + overrides. */
export function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] =
      v !== null && typeof v === 'object' && !Array.isArray(v) && av !== null && typeof av === 'object' && !Array.isArray(av)
        ? merge(av as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** POST a JSON body; throws unless the status is 2xx. */
export async function postJson(url: string, key: string, body: unknown, idempotencyKey: string): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
    body: JSON.stringify(body),
  });
  const out = await res.json();
  if (res.status >= 300) throw new Error(`POST ${url}: ${res.status} ${JSON.stringify(out).slice(0, 500)}`);
  return out;
}

export function machineLine(): string {
  // The load average shows whether something else was using the two cores when the bench started.
  return `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}
