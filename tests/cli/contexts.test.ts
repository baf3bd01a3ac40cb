import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { CLI, runCli } from './run-cli.js';

/**
 * `meterline login` and `meterline context` against a real gateway: the key goes in through stdin, is checked,
 * stored in the user's config directory with mode 0600 (directory 0700), never printed, and used with the
 * precedence flags > environment > current context.
 */
let f: GatewayFixture;
const modeOf = (path: string) => statSync(path).mode & 0o777;

beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'CTX-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline contexts', () => {
  it('login stores URL and key per context (0600 file in a 0700 directory), checks the key, never prints it; context use/list/remove', async () => {
    const config = join(mkdtempSync(join(tmpdir(), 'ml-ctx-')), 'config');
    const env = { XDG_CONFIG_HOME: config };
    const file = join(config, 'meterline', 'contexts.json');

    const op = await runCli(['login', '--context', 'ops', '--url', f.gateway.apiUrl], env, `${f.operatorKey}\n`);
    expect(op.code, op.stderr).toBe(0);
    expect(op.stdout).toContain('as demo-operator (operator); context "ops" is current');
    expect(modeOf(file)).toBe(0o600);
    expect(modeOf(join(config, 'meterline'))).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8')).contexts.ops).toMatchObject({ url: f.gateway.apiUrl, key: f.operatorKey });

    const who = await runCli(['whoami', '--json'], env);
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout).role).toBe('operator');

    expect((await runCli(['login', '--context', 'bill', '--url', f.gateway.apiUrl], env, f.billingKey)).code).toBe(0);
    const list = await runCli(['context', 'list'], env);
    expect(list.stdout).toMatch(/^\s+ops\s+http:\/\/127\.0\.0\.1:\d+\s+demo-operator \(operator\)$/m);
    expect(list.stdout).toMatch(/^\*\s+bill\s+.*demo-billing \(billing\)$/m);
    for (const out of [op.stdout, op.stderr, list.stdout, (await runCli(['context', 'list', '--json'], env)).stdout]) {
      expect(out).not.toContain(f.operatorKey);
      expect(out).not.toContain(f.billingKey);
    }

    // Precedence: the current context (bill), then the environment over it, --context over the environment, --key over all.
    const role = async (args: string[], extra: NodeJS.ProcessEnv = {}) => JSON.parse((await runCli(['whoami', '--json', ...args], { ...env, ...extra })).stdout).role;
    expect(await role([])).toBe('billing');
    expect(await role([], { METERLINE_KEY: f.supervisorKey })).toBe('supervisor');
    expect(await role(['--context', 'ops'], { METERLINE_KEY: f.supervisorKey })).toBe('operator');
    expect(await role(['--context', 'ops', '--key', f.adminKey])).toBe('admin');

    expect((await runCli(['context', 'use', 'ops'], env)).stdout).toContain('context "ops" is current');
    expect(await role([])).toBe('operator');
    const missing = await runCli(['context', 'use', 'nope'], env);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('E_CONTEXT_NOT_FOUND');
    expect((await runCli(['context', 'remove', 'ops'], env)).stdout).toContain('no context is current');
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')).contexts)).toEqual(['bill']);
    expect(modeOf(file)).toBe(0o600);
  }, 90_000);

  it('at a terminal, login prompts for the key with echo off: the typed key never appears on the screen', async () => {
    const config = join(mkdtempSync(join(tmpdir(), 'ml-ctx-')), 'config');
    // script(1) runs the CLI on a pseudo-terminal; the key is typed only once the prompt is shown.
    const child = spawn('script', ['-qec', `${process.execPath} ${CLI} login --context tty --url ${f.gateway.apiUrl}`, '/dev/null'], {
      env: { PATH: process.env.PATH, XDG_CONFIG_HOME: config, TERM: 'dumb' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    let typed = false;
    child.stdout.on('data', (d) => {
      screen += d;
      if (!typed && screen.includes(`API key for ${f.gateway.apiUrl}: `)) {
        typed = true;
        child.stdin.write(`${f.operatorKey}\r`);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, screen).toBe(0);
    expect(screen).toContain('logged in to');
    expect(screen).toContain('context "tty" is current');
    expect(screen).not.toContain(f.operatorKey);
    expect(JSON.parse(readFileSync(join(config, 'meterline', 'contexts.json'), 'utf8')).contexts.tty.key).toBe(f.operatorKey);
  }, 90_000);

  it('refuses a key on the command line, a key the gateway does not know (nothing stored), and a contexts file open to others; narrows an open directory', async () => {
    const config = join(mkdtempSync(join(tmpdir(), 'ml-ctx-')), 'config');
    const env = { XDG_CONFIG_HOME: config };
    const file = join(config, 'meterline', 'contexts.json');
    const argv = await runCli(['login', '--url', f.gateway.apiUrl, '--key', f.operatorKey], env);
    expect(argv.code).toBe(2);
    expect(argv.stderr).toContain('never from --key');
    const unknown = await runCli(['login', '--url', f.gateway.apiUrl], env, 'op_not-a-key\n');
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toContain('E_UNAUTHORIZED');
    expect(() => statSync(file)).toThrow();
    expect((await runCli(['login', '--url', f.gateway.apiUrl], env, '')).code).toBe(2);

    mkdirSync(join(config, 'meterline'), { recursive: true, mode: 0o755 });
    chmodSync(join(config, 'meterline'), 0o755);
    const ok = await runCli(['login', '--url', f.gateway.apiUrl], { ...env }, f.operatorKey);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain('mode 755); narrowed to 700');
    expect(modeOf(join(config, 'meterline'))).toBe(0o700);

    chmodSync(file, 0o644);
    const open = await runCli(['whoami'], env);
    expect(open.code).toBe(5);
    expect(open.stderr).toContain('E_CONTEXT_FILE_MODE');
    expect(open.stderr).toContain(`chmod 600 ${file}`);
    // The environment alone needs no context file, so a script with METERLINE_URL and METERLINE_KEY still runs.
    expect((await runCli(['whoami'], { ...env, METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: f.operatorKey })).code).toBe(0);
  }, 90_000);
});
