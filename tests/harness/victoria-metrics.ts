import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './child-process.js';
import { freePort } from './mosquitto.js';

/**
 * Starts a real VictoriaMetrics (Debian's `victoria-metrics`, v1.79) for tests: the time-series writer's
 * behaviour (line protocol accepted, points queryable, the server going away and coming back) is server
 * behaviour, so the tests run against a server that speaks the InfluxDB write protocol (DESIGN.md §7).
 *
 * Flags: `-search.latencyOffset=0s` (by default the newest 30 s are hidden from queries) and
 * `-search.disableCache` (no response cache hiding fresh points). v1.79 has no `-inmemoryDataFlushInterval`:
 * freshly ingested rows reach the searchable parts about a second later. `query`/`export` therefore call
 * `/internal/force_flush` first and, when asked to expect results, poll until they are there.
 *
 * What VictoriaMetrics makes of a line (verified against v1.79): `meter_reading,meter=M-1 voltage_v=230.5`
 * becomes the series `meter_reading_voltage_v{meter="M-1"}` (`{measurement}_{field}`); `/api/v2/write` adds no
 * label for org or bucket; string fields are stored as a series with value 0 (their text is lost).
 */

export interface VictoriaMetrics {
  /** Base URL, e.g. `http://127.0.0.1:40123`: what the InfluxDB client takes as `url`. */
  url: string;
  /** The InfluxDB v2 write endpoint. */
  writeUrl: string;
  port: number;
  stop(): Promise<void>;
  /** Start again on the same port and data directory after `stop()`. */
  start(): Promise<void>;
  /** PromQL instant query; with `expectSeries`, polls (up to `timeoutMs`, default 5 s) until that many series answer. */
  query(promql: string, options?: { expectSeries?: number; timeoutMs?: number }): Promise<PromSample[]>;
  /**
   * `/api/v1/export` for one series selector: one JSON line per series. Polls like `query`, and with
   * `expectPoints` until the series hold that many points in all (batches become visible one by one).
   */
  export(match: string, options?: { expectSeries?: number; expectPoints?: number; timeoutMs?: number }): Promise<ExportedSeries[]>;
  log(): string;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startVictoriaMetrics(options: { binary?: string } = {}): Promise<VictoriaMetrics> {
  installExitHook();
  const binary = options.binary ?? '/usr/bin/victoria-metrics';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'meterline-vm-'));
  tempDirs.add(dir);
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let stderr = '';

  const start = async (): Promise<void> => {
    if (child) throw new Error('victoria-metrics is already running');
    const c = spawn(
      binary,
      [
        `-httpListenAddr=127.0.0.1:${port}`,
        `-storageDataPath=${join(dir, 'data')}`,
        '-retentionPeriod=1',
        '-search.latencyOffset=0s',
        '-search.disableCache',
        '-loggerLevel=WARN',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    c.stderr?.setEncoding('utf8');
    c.stderr?.on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    });
    const spawnError = await new Promise<Error | undefined>((resolve) => {
      c.once('spawn', () => resolve(undefined));
      c.once('error', (err) => resolve(err));
    });
    if (spawnError) throw new Error(`cannot start ${binary}: ${spawnError.message} (apt-get install victoria-metrics)`);
    child = c;
    running.add(c);
    let exited: string | undefined;
    c.once('exit', (code, signal) => {
      exited = `exited with code ${code} signal ${signal}`;
      running.delete(c);
      if (child === c) child = undefined;
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return;
      if (exited !== undefined || Date.now() > deadline) {
        c.kill('SIGKILL');
        throw new Error(`victoria-metrics did not answer /health on ${url} (${exited ?? 'timed out after 15 s'}); stderr:\n${stderr}`);
      }
      await sleep(25);
    }
  };

  const stop = async (): Promise<void> => {
    if (child) await stopChild(child, 5000);
    child = undefined;
  };

  const forceFlush = async (): Promise<void> => {
    const res = await fetch(`${url}/internal/force_flush`);
    if (!res.ok) throw new Error(`force_flush answered HTTP ${res.status}`);
  };

  async function poll<T>(once: () => Promise<T[]>, done: (result: T[]) => boolean, timeoutMs: number, what: string): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await forceFlush();
      const result = await once();
      if (done(result)) return result;
      if (Date.now() > deadline) throw new Error(`${what}: not the expected result after ${timeoutMs} ms: ${JSON.stringify(result).slice(0, 500)}`);
      await sleep(100);
    }
  }

  const query = (promql: string, o: { expectSeries?: number; timeoutMs?: number } = {}): Promise<PromSample[]> =>
    poll(
      async () => {
        const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: promql })}`);
        const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
        if (body.status !== 'success' || !body.data) throw new Error(`query ${promql} failed: ${body.error ?? res.status}`);
        return body.data.result;
      },
      (r) => r.length >= (o.expectSeries ?? 0),
      o.timeoutMs ?? 5000,
      `query ${promql}`,
    );

  const exportSeries = (match: string, o: { expectSeries?: number; expectPoints?: number; timeoutMs?: number } = {}): Promise<ExportedSeries[]> =>
    poll(
      async () => {
        const res = await fetch(`${url}/api/v1/export?${new URLSearchParams({ 'match[]': match })}`);
        if (!res.ok) throw new Error(`export ${match} failed: HTTP ${res.status} ${await res.text()}`);
        const text = await res.text();
        return text
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as ExportedSeries);
      },
      (r) => r.length >= (o.expectSeries ?? 0) && r.reduce((n, s) => n + s.values.length, 0) >= (o.expectPoints ?? 0),
      o.timeoutMs ?? 5000,
      `export ${match}`,
    );

  await start();

  return { url, writeUrl: `${url}/api/v2/write`, port, stop, start, query, export: exportSeries, log: () => stderr };
}
