import { readFileSync } from 'node:fs';
import { DEMO_KEY_ENV, DEMO_ROLES, type DemoKeys } from '../../src/gateway/demo-keys.js';
import { prepareDemoDir, runGateway, type DemoDir, type GatewayChild } from './gateway-child.js';

/**
 * The demo as `npm run demo` runs it (the built main, the demo configuration, a data directory of its own), at a pace a
 * test can wait for: `demo` goes over the shipped demo section (plans and payments every so many ms), and the demo
 * calendar's second notice is 0 minutes before the command (the shipped demo says 1).
 */
export interface DemoRun {
  dir: DemoDir;
  gw: GatewayChild;
  /** The keys as `. data/demo-keys.env` gives them to a shell. */
  keys: DemoKeys;
  url: string;
  /** An API call with a key; POSTs carry a fresh Idempotency-Key. */
  api(key: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

export async function startDemo(name: string, demo: Record<string, unknown>): Promise<DemoRun> {
  const dir = await prepareDemoDir(name, { demo: { billing: true, planMeters: 2, policy: { alwaysOpen: true, secondNoticeMinutes: 0 }, ...demo } });
  const gw = runGateway({ configFile: dir.configFile });
  try {
    await gw.started();
  } catch (err) {
    await gw.stop();
    throw err;
  }
  const vars = new Map([...readFileSync(dir.keysFile, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const keys = Object.fromEntries(DEMO_ROLES.map((r) => [r, vars.get(DEMO_KEY_ENV[r])!])) as DemoKeys;
  const url = vars.get('METERLINE_URL')!;
  let n = 0;
  const api: DemoRun['api'] = async (key, method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(method === 'POST' ? { 'idempotency-key': `${name}-${++n}`, 'content-type': 'application/json' } : {}) },
      ...(method === 'POST' ? { body: JSON.stringify(body ?? {}) } : {}),
    });
    return { status: res.status, body: await res.json() };
  };
  return { dir, gw, keys, url, api };
}
