import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real serial link for tests: two pseudo-terminals joined by socat (Debian package `socat`), so the
 * gateway's `serialport` code opens a real tty at one end and a simulated meter or bus sits at the other.
 * `stop()` removes the link, as when an RS-485 adapter is unplugged; `start()` brings it back at the same paths.
 */
export interface PtyPair {
  /** The end the gateway opens (like /dev/ttyUSB0). */
  gatewayPath: string;
  /** The end the simulator opens. */
  devicePath: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const running = new Set<ChildProcess>();
let hookInstalled = false;

export async function startPtyPair(): Promise<PtyPair> {
  if (!hookInstalled) {
    hookInstalled = true;
    process.on('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'meterline-pty-'));
  const gatewayPath = join(dir, 'gateway');
  const devicePath = join(dir, 'device');
  let child: ChildProcess | undefined;
  let stderr = '';
  /** Plugged in: socat ends when one end's user closes its pty while the other reopens; a real adapter stays. */
  let plugged = false;

  const start = async (): Promise<void> => {
    if (child) throw new Error('pty pair already running');
    plugged = true;
    // Links left by a socat that was slow to exit would make the new one fail to create its own.
    rmSync(gatewayPath, { force: true });
    rmSync(devicePath, { force: true });
    const c = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${gatewayPath}`, `pty,raw,echo=0,link=${devicePath}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const spawnError = await new Promise<Error | undefined>((resolve) => {
      c.once('spawn', () => resolve(undefined));
      c.once('error', (e) => resolve(e));
    });
    if (spawnError) throw new Error(`cannot start socat (apt-get install socat): ${spawnError.message}`);
    child = c;
    running.add(c);
    c.once('exit', () => {
      running.delete(c);
      if (child !== c) return;
      child = undefined;
      if (plugged) setTimeout(() => void (plugged && !child ? start().catch(() => undefined) : undefined), 20);
    });
    const until = Date.now() + 5000;
    while (!(existsSync(gatewayPath) && existsSync(devicePath))) {
      if (Date.now() > until || child !== c) throw new Error(`socat did not create the pty pair: ${stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const stop = async (): Promise<void> => {
    plugged = false;
    const c = child;
    if (!c) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
    const until = Date.now() + 2000;
    while ((existsSync(gatewayPath) || existsSync(devicePath)) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  };

  await start();
  return {
    gatewayPath,
    devicePath,
    start,
    async stop() {
      await stop();
    },
  };
}

/** Remove the pair's directory when a test file is done with it. */
export function removePtyDir(pair: PtyPair): void {
  rmSync(join(pair.gatewayPath, '..'), { recursive: true, force: true });
}
