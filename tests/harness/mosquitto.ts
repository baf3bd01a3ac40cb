import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { stopChild } from './child-process.js';
import { join } from 'node:path';

/**
 * Starts a real mosquitto broker for tests. The MQTT driver's safety rules (per-client queue limits,
 * message expiry, session loss on restart) are broker behaviour; a mocked or in-process broker would
 * not show them, so the tests run against the broker the deployment uses.
 */

export interface MosquittoOptions {
  /** mosquitto binary. Default: `mosquitto` on PATH, else /usr/sbin/mosquitto. */
  binary?: string;
  /** Per-client queue limit; left at mosquitto's default (1000) unless given. */
  maxQueuedMessages?: number;
  /** Extra config lines. */
  extraConfig?: string[];
}

export interface MosquittoBroker {
  url: string;
  port: number;
  /** Stop the broker (SIGTERM, then SIGKILL after 3 s). */
  stop(): Promise<void>;
  /** Start it again on the same port after `stop()`. */
  start(): Promise<void>;
  /** Stop and start on the same port (broker-restart tests). */
  restart(): Promise<void>;
  /** What the broker wrote to stderr so far (its log). */
  log(): string;
  /** The broker's process id while it runs (changes on restart). */
  pid(): number | undefined;
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

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('could not read the free port'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  installExitHook();
  const binary = options.binary ?? 'mosquitto';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'meterline-mosquitto-'));
  tempDirs.add(dir);
  const confPath = join(dir, 'mosquitto.conf');
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    // As docs/DEPLOYMENT.md asks of a deployment's broker: without it each reply waits on Nagle's algorithm (tens of ms).
    'set_tcp_nodelay true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
  ];
  if (process.getuid?.() === 0) lines.push('user root');
  if (options.maxQueuedMessages !== undefined) lines.push(`max_queued_messages ${options.maxQueuedMessages}`);
  lines.push(...(options.extraConfig ?? []));
  writeFileSync(confPath, lines.join('\n') + '\n');

  let child: ChildProcess | undefined;
  let stderr = '';

  const spawnBroker = (bin: string): ChildProcess => {
    const c = spawn(bin, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr?.setEncoding('utf8');
    c.stderr?.on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    });
    return c;
  };

  const start = async (): Promise<void> => {
    if (child) throw new Error('mosquitto is already running');
    let c = spawnBroker(binary);
    let exited: string | undefined;
    const spawnError = await new Promise<Error | undefined>((resolve) => {
      c.once('spawn', () => resolve(undefined));
      c.once('error', (err) => resolve(err));
    });
    if (spawnError && options.binary === undefined) {
      c = spawnBroker('/usr/sbin/mosquitto');
      const err2 = await new Promise<Error | undefined>((resolve) => {
        c.once('spawn', () => resolve(undefined));
        c.once('error', (err) => resolve(err));
      });
      if (err2) throw new Error(`cannot start mosquitto: ${err2.message}`);
    } else if (spawnError) {
      throw new Error(`cannot start ${binary}: ${spawnError.message}`);
    }
    child = c;
    running.add(c);
    c.once('exit', (code, signal) => {
      exited = `exited with code ${code} signal ${signal}`;
      running.delete(c);
      if (child === c) child = undefined;
    });
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(port))) {
      if (exited !== undefined || Date.now() > deadline) {
        c.kill('SIGKILL');
        throw new Error(
          `mosquitto did not accept connections on 127.0.0.1:${port} (${exited ?? 'timed out after 10 s'}); stderr:\n${stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const stop = async (): Promise<void> => {
    if (child) await stopChild(child, 3000);
    child = undefined;
  };

  await start();

  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    stop: async () => {
      await stop();
    },
    start,
    restart: async () => {
      await stop();
      await start();
    },
    log: () => stderr,
    pid: () => child?.pid,
  };
}
