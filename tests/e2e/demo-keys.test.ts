import { readFileSync, statSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_KEY_ENV, DEMO_ROLES, type DemoKeys } from '../../src/gateway/demo-keys.js';
import { prepareDemoDir, runGateway, type DemoDir, type GatewayChild } from '../harness/gateway-child.js';

/**
 * The demo's keys, as a user lives with them: every role's key is printed and kept in the data directory's
 * demo-keys.env (owner-only), a restart keeps them (sourced shells and open consoles keep working), and
 * `--new-keys` replaces them, after which the old ones are refused.
 */
const running: GatewayChild[] = [];
let demo: DemoDir;

afterAll(async () => {
  await Promise.all(running.map((g) => g.stop()));
});

async function start(args: string[] = []): Promise<GatewayChild> {
  const gw = runGateway({ configFile: demo.configFile, args });
  running.push(gw);
  await gw.started();
  return gw;
}

/** The file as `source` would read it. */
function keptKeys(): { url: string; keys: DemoKeys } {
  const vars = new Map([...readFileSync(demo.keysFile, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  return { url: vars.get('METERLINE_URL')!, keys: Object.fromEntries(DEMO_ROLES.map((r) => [r, vars.get(DEMO_KEY_ENV[r])])) as DemoKeys };
}

async function whoami(key: string): Promise<{ status: number; role?: string }> {
  const res = await fetch(`${demo.url}/v1/whoami`, { headers: { authorization: `Bearer ${key}` } });
  const body = (await res.json()) as { role?: string };
  return { status: res.status, ...(body.role ? { role: body.role } : {}) };
}

describe('demo keys', () => {
  it('every role has a key, printed on stderr and kept owner-only in the data directory; each key works as its role', async () => {
    demo = await prepareDemoDir('demo-keys');
    const gw = await start();
    const { url, keys } = keptKeys();
    expect(url).toBe(demo.url);
    expect(statSync(demo.keysFile).mode & 0o777).toBe(0o600);
    for (const role of DEMO_ROLES) {
      expect(keys[role], role).toMatch(/^[a-z]+_[A-Za-z0-9_-]{32}$/);
      expect(gw.stderr).toContain(keys[role]);
      expect(gw.stdout, 'no key in the log').not.toContain(keys[role]);
      expect(await whoami(keys[role])).toEqual({ status: 200, role });
    }
    expect(await gw.stop()).toEqual({ code: 0, signal: null });
  });

  it('a restart keeps them: the same keys work and are printed again', async () => {
    const before = keptKeys().keys;
    const gw = await start();
    expect(keptKeys().keys).toEqual(before);
    for (const role of DEMO_ROLES) {
      expect(gw.stderr).toContain(before[role]);
      expect(await whoami(before[role])).toEqual({ status: 200, role });
    }
    expect(await gw.stop()).toEqual({ code: 0, signal: null });
  });

  it('--new-keys replaces them: the old keys get 401, the new ones work', async () => {
    const old = keptKeys().keys;
    const gw = await start(['--new-keys']);
    const fresh = keptKeys().keys;
    expect(statSync(demo.keysFile).mode & 0o777).toBe(0o600);
    for (const role of DEMO_ROLES) {
      expect(fresh[role]).not.toBe(old[role]);
      expect(await whoami(old[role])).toEqual({ status: 401 });
      expect(await whoami(fresh[role])).toEqual({ status: 200, role });
    }
    expect(await gw.stop()).toEqual({ code: 0, signal: null });
  });

  it('an unknown argument is refused with E_USAGE and changes nothing', async () => {
    const before = readFileSync(demo.keysFile, 'utf8');
    const gw = runGateway({ configFile: demo.configFile, args: ['--new-key'] });
    expect(await gw.exited).toEqual({ code: 2, signal: null });
    expect(gw.stderr).toContain('meterline: E_USAGE: unknown argument "--new-key"');
    expect(readFileSync(demo.keysFile, 'utf8')).toBe(before);
  });
});
