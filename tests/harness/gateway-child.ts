import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN } from './fault-run.js';
import { freePort } from './mosquitto.js';
import { eventually } from './startup-run.js';

/**
 * The built gateway as a user runs it (`node dist/src/main.js`), in demo form: its embedded broker, a small simulated
 * fleet in the process, a SQLite file in a data directory of its own. stdout and stderr are kept apart, as a shell
 * pipe (`npm start | jq`) keeps them.
 */
export interface DemoDir {
  dir: string;
  configFile: string;
  port: number;
  url: string;
  /** Where the demo keys are kept: beside the SQLite file. */
  keysFile: string;
}

/** A data directory and a demo configuration for it (a 20-meter fleet; `extra` is merged over it). */
export async function prepareDemoDir(name: string, extra: Record<string, unknown> = {}): Promise<DemoDir> {
  const dir = mkdtempSync(join(tmpdir(), `ml-${name}-`));
  const port = await freePort();
  const configFile = join(dir, 'gateway.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      instanceId: name,
      api: { host: '127.0.0.1', port },
      store: { kind: 'sqlite', sqlite: { path: join(dir, 'data', 'meterline.db') }, postgres: null },
      mqtt: { mode: 'embedded', embeddedPort: 0 },
      fleet: { seed: { count: 20, prefix: 'SIM-', profiles: ['acme-em340-fw2.4', 'volta-pp20-fw1.7'], links: 2, regions: ['north'] } },
      ...extra,
    }),
  );
  return { dir, configFile, port, url: `http://127.0.0.1:${port}`, keysFile: join(dir, 'data', 'demo-keys.env') };
}

export interface GatewayChild {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Wait for the start-up banner ("… is running"), which follows a finished start. */
  started(timeoutMs?: number): Promise<void>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Run `node dist/src/main.js …args` (or another built `main`, from `cwd`) on `configFile` when given, with `env` over a
 * clean environment (no METERLINE*, DATABASE_URL or NODE_ENV of the test run's own).
 */
export function runGateway(o: { configFile?: string; args?: string[]; env?: Record<string, string>; cwd?: string; main?: string }): GatewayChild {
  const main = o.main ?? MAIN;
  if (!existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('METERLINE') && k !== 'DATABASE_URL' && k !== 'NODE_ENV'));
  const child = spawn(process.execPath, [main, ...(o.args ?? [])], {
    env: { ...base, ...(o.configFile ? { METERLINE_CONFIG: o.configFile } : {}), ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(o.cwd ? { cwd: o.cwd } : {}),
  });
  const run: GatewayChild = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    async started(timeoutMs = 60_000) {
      await eventually(
        'the start-up banner on stderr',
        async () => {
          if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${run.stderr.slice(-2000)}`);
          return run.stderr.includes('is running') ? true : undefined;
        },
        timeoutMs,
      );
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const exit = await run.exited;
      clearTimeout(killer);
      return exit;
    },
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (run.stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (run.stderr += d));
  return run;
}
