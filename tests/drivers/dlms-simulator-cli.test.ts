import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseKeyFile } from '../../src/keys/key-file.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { MemoryKeyring } from './dlms/memory-keyring.js';
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

  it('--hls writes random per-meter keys to a 0600 key file the gateway imports, prints system titles (never keys), and an HLS meter switches with them; --keys-in keeps them over a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-sim-keys-'));
    const file = join(dir, 'sim-keys.csv');
    const args = ['dlms', '--tcp', '0', '--meters', '2', '--hls', '--control-mode', '6', '--log-level', 'warn'];
    const sim = run([...args, '--keys-out', file]);
    await until(() => /DLMS-000002/.test(sim.output()));
    const text = sim.output();
    expect(text).toMatch(/2 meter\(s\), HLS-GMAC, suite 0 authenticated-encrypted/);
    expect(text).toContain(`import them with "meterline keys import ${file}"`);
    expect(text).toMatch(/"keys": \["GUEK", "GAK", "KEK"\].*\(shipped: idis-hls-gmac-mode6\)/);
    expect((statSync(file).mode & 0o777).toString(8)).toBe('600');
    const csv = readFileSync(file, 'utf8');
    expect(csv.split('\n')[0]).toBe('meter id,system title,GUEK,GAK,KEK');
    // The gateway's own parser takes the file as it is (what `meterline keys import` sends).
    const rows = parseKeyFile(csv, 'csv');
    expect(rows.map((r) => r.meterId)).toEqual(['DLMS-000001', 'DLMS-000002']);
    for (const r of rows) {
      const title = r.keys.serverSystemTitle!.toString('hex').toUpperCase();
      expect(title).toMatch(/^4D544C/); // "MTL", then 5 random bytes
      expect(text).toMatch(new RegExp(`${r.meterId} {2}address "\\d+" {2}control mode 6 \\(reconnect arms\\) {2}system title ${title}`));
      for (const k of [r.keys.encryptionKey, r.keys.authenticationKey, r.keys.masterKey!]) expect(text.toLowerCase()).not.toContain(k.toString('hex'));
    }
    expect(new Set(rows.flatMap((r) => [r.keys.encryptionKey, r.keys.authenticationKey, r.keys.masterKey!].map((k) => k.toString('hex')))).size).toBe(6);

    const { all } = dlmsTestProfiles(1000);
    const idis = all.find((p) => p.id === 'idis-hls-gmac-mode6')!;
    // Renewal wanted: the profile names KEK too, and the simulator's key file has it.
    const profile: DlmsFirmwareProfile = { ...idis, dlms: { ...idis.dlms, keys: ['GUEK', 'GAK', 'KEK'] } };
    const keyring = new MemoryKeyring();
    for (const r of rows) keyring.set(r.meterId, { keySetId: `${r.meterId}-ks`, ...r.keys });
    const switchOne = async (port: number, id: string) => {
      const driver = createDlmsDriver({ links: { tcp: { sim: { kind: 'wrapper', host: '127.0.0.1', port } } }, profiles: [profile], logger, keyring });
      await driver.start();
      try {
        const meter = dlmsAddress('DLMS-000002', profile, 'sim', '18');
        const ack = await driver.operateRelay(meter, 'disconnect', { timeoutMs: 2000, correlationId: `${id}-1` });
        expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('disconnected');
        const read = await driver.readRelay(meter, { timeoutMs: 2000, correlationId: `${id}-2` });
        expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
      } finally {
        await driver.stop();
      }
    };
    await switchOne(Number(/127\.0\.0\.1:(\d+)/.exec(text)![1]), 'hls-a');
    sim.child.kill('SIGTERM');
    expect(await sim.exited).toBe(0);

    // Again with --keys-out: the file is not overwritten.
    const again = run([...args, '--keys-out', file]);
    expect(await again.exited).toBe(2);
    expect(again.output()).toMatch(/--keys-out .* exists: reuse its keys with --keys-in/);
    expect(readFileSync(file, 'utf8')).toBe(csv);

    // A restart with --keys-in: the same meters, system titles and keys (the keys the gateway imported still fit).
    const restarted = run([...args, '--keys-in', file]);
    await until(() => /DLMS-000002/.test(restarted.output()));
    for (const r of rows) expect(restarted.output()).toContain(`system title ${r.keys.serverSystemTitle!.toString('hex').toUpperCase()}`);
    await switchOne(Number(/127\.0\.0\.1:(\d+)/.exec(restarted.output())![1]), 'hls-b');
    restarted.child.kill('SIGTERM');
    expect(await restarted.exited).toBe(0);
  });

  it('refuses --hls command lines that cannot work, with exit code 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-sim-keys-bad-'));
    const cases: Array<[string[], RegExp]> = [
      [['--hls'], /--hls needs --keys-out <file> .* or --keys-in <file>/],
      [['--hls', '--password', 'x', '--keys-out', join(dir, 'a.csv')], /give --hls or --password, not both/],
      [['--hls', '--ciphering', 'none', '--keys-out', join(dir, 'a.csv')], /--ciphering must be one of authenticated-encrypted\|authenticated\|encrypted/],
      [['--hls', '--ciphering', 'authenticated', '--dedicated-key', '--keys-out', join(dir, 'a.csv')], /--dedicated-key needs encryption/],
      [['--keys-out', join(dir, 'a.csv')], /--keys-out goes with --hls/],
      [['--hls', '--keys-in', join(dir, 'missing.csv')], /--keys-in .*missing\.csv: cannot read it \(ENOENT\)/],
    ];
    const runs = cases.map(([extra]) => run(['dlms', '--tcp', '0', ...extra]));
    const codes = await Promise.all(runs.map((r) => r.exited));
    cases.forEach(([, message], i) => {
      expect(codes[i]).toBe(2);
      expect(runs[i]!.output()).toMatch(message);
    });
    expect(existsSync(join(dir, 'a.csv'))).toBe(false);
    // A key file without a row for every meter, or with a bad row: named, no key value quoted.
    const short = join(dir, 'short.csv');
    writeFileSync(short, `meter id,system title,GUEK,GAK\nDLMS-000001,4D544C0000000001,${'ab'.repeat(16)},${'cd'.repeat(16)}\n`, { mode: 0o600 });
    const missing = run(['dlms', '--tcp', '0', '--meters', '2', '--hls', '--keys-in', short]);
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toMatch(/has no row for meter DLMS-000002/);
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, `meter id,system title,GUEK,GAK\nDLMS-000001,4D544C0000000001,${'ab'.repeat(15)},${'cd'.repeat(16)}\n`, { mode: 0o600 });
    const invalid = run(['dlms', '--tcp', '0', '--meters', '1', '--hls', '--keys-in', bad]);
    expect(await invalid.exited).toBe(2);
    expect(invalid.output()).toMatch(/row 1, encryptionKey: must be 16 bytes/);
    expect(invalid.output()).not.toContain('abab');
  });
});
