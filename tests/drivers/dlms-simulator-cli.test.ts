import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pino } from 'pino';
import { createDlmsDriver } from '../../drivers/dlms/index.js';
import { dlmsAddress, dlmsTestProfiles, passwordEnv } from './dlms/fixture.js';

/**
 * The standalone DLMS simulator (`npm run simulator -- dlms …`, built into dist/ as `npm test` does first):
 * it prints every meter with its address, and the driver switches one of them over the TCP wrapper.
 */

const CLI = join(process.cwd(), 'dist', 'simulators', 'cli.js');
const logger = pino({ level: 'silent' });
const children: ChildProcess[] = [];

function run(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});

describe('simulator CLI: dlms mode', () => {
  it('--tcp with N meters lists them with their addresses, and the driver switches one over the wrapper', async () => {
    const sim = run(['dlms', '--tcp', '0', '--meters', '3', '--password', 'cli-secret', '--control-mode', '2', '--log-level', 'warn', '--host', '127.0.0.1']);
    await until(() => /DLMS-000003/.test(sim.output()));
    const text = sim.output();
    expect(text).toMatch(/DLMS simulator on TCP 127\.0\.0\.1:(\d+) \(wrapper\): 3 meter\(s\), LLS password required/);
    expect(text).toMatch(/DLMS-000001 {2}address "17" {2}control mode 2 \(reconnect closes\)/);
    expect(text).toMatch(/DLMS-000003 {2}address "19"/);
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(text)![1]);

    const { closes, arms, all } = dlmsTestProfiles(1000);
    const driver = createDlmsDriver({ links: { tcp: { cli: { kind: 'wrapper', host: '127.0.0.1', port } } }, profiles: all, logger, env: { ...passwordEnv(closes, arms), [closes.dlms.passwordEnv!]: 'cli-secret' } });
    await driver.start();
    try {
      const meter = dlmsAddress('DLMS-000002', closes, 'cli', '18');
      const ack = await driver.operateRelay(meter, 'disconnect', { timeoutMs: 1000, correlationId: 'cli-1' });
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('disconnected');
      const read = await driver.readRelay(meter, { timeoutMs: 1000, correlationId: 'cli-2' });
      expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
    } finally {
      await driver.stop();
    }
    sim.child.kill('SIGTERM');
    expect(await sim.exited).toBe(0);
  });

  it('refuses a bad command line with exit code 2 and says what to give', async () => {
    const both = run(['dlms', '--tcp', '0', '--serial', '/dev/null']);
    expect(await both.exited).toBe(2);
    expect(both.output()).toMatch(/give exactly one of --serial <device> or --tcp <port>/);
    const mode = run(['dlms', '--tcp', '0', '--control-mode', '9']);
    expect(await mode.exited).toBe(2);
    expect(mode.output()).toMatch(/--control-mode must be 0\.\.6 or "mixed"/);
  });
});
