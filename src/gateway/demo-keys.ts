import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { newApiKey, type Role } from '../api/auth.js';
import type { GatewayConfig } from '../config/config-schema.js';

/**
 * Demo keys, one per role a demo tour uses. A demo convenience, never a production mechanism: their plaintext is kept
 * in the data directory's `demo-keys.env` (mode 0600, a shell can `source` it) so that sourced shells, scripts and open
 * consoles keep working across restarts; the gateway itself holds only their hashes, as for configured keys.
 */
export const DEMO_ROLES = ['operator', 'billing', 'supervisor', 'field', 'admin'] as const satisfies readonly Role[];
export type DemoRole = (typeof DEMO_ROLES)[number];
export type DemoKeys = Record<DemoRole, string>;

/** The variable each key is exported as: the operator's is the CLI's own `METERLINE_KEY`. */
export const DEMO_KEY_ENV: Readonly<Record<DemoRole, string>> = {
  operator: 'METERLINE_KEY',
  billing: 'METERLINE_BILLING_KEY',
  supervisor: 'METERLINE_SUPERVISOR_KEY',
  field: 'METERLINE_FIELD_KEY',
  admin: 'METERLINE_ADMIN_KEY',
};

const KEY_PREFIX: Readonly<Record<DemoRole, string>> = { operator: 'op', billing: 'bill', supervisor: 'sup', field: 'fld', admin: 'adm' };

export const newDemoKey = (role: DemoRole): string => newApiKey(KEY_PREFIX[role]);

export function newDemoKeys(): DemoKeys {
  return Object.fromEntries(DEMO_ROLES.map((role) => [role, newDemoKey(role)])) as DemoKeys;
}

/** `demo-keys.env` in the data directory: beside the SQLite file. */
export function demoKeysFile(config: Pick<GatewayConfig, 'store'>): string {
  return resolve(dirname(config.store.sqlite.path), 'demo-keys.env');
}

/**
 * The keys kept in `path` (from an earlier start), or new ones when there are none or `rotate` (`--new-keys`) is set.
 * A role missing from an older file gets a new key; the others are kept.
 */
export function demoKeysFor(path: string, rotate: boolean): DemoKeys {
  const kept = rotate ? new Map<string, string>() : readExports(path);
  return Object.fromEntries(DEMO_ROLES.map((role) => [role, kept.get(DEMO_KEY_ENV[role]) ?? newDemoKey(role)])) as DemoKeys;
}

/** `export NAME=value` lines of a file we wrote; a missing file is an empty one. */
function readExports(path: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  return new Map([...text.matchAll(/^export ([A-Z_]+)=([A-Za-z0-9_-]+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** Write the URL and the keys where a shell can `source` them, readable by the owner only (never briefly wider). */
export function writeDemoKeysFile(path: string, apiUrl: string, keys: DemoKeys): void {
  mkdirSync(dirname(path), { recursive: true });
  const lines = [`export METERLINE_URL=${apiUrl}`, ...DEMO_ROLES.map((role) => `export ${DEMO_KEY_ENV[role]}=${keys[role]}`), ''];
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, lines.join('\n'), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
