import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigSchema, type GatewayConfig } from './config-schema.js';
import { projectRoot } from './project-root.js';

/**
 * Load the configuration: `config/default.json`, then the file named by METERLINE_CONFIG (if any), then
 * environment overrides `METERLINE__SECTION__KEY=value` (value parsed as JSON when it parses, else a string;
 * keys matched case-insensitively, e.g. METERLINE__API__PORT=9090, METERLINE__MQTT__MODE=external).
 * An invalid result throws ConfigError naming every bad field, where it came from, and what is allowed.
 */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function readJsonFile(path: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([`${path}: cannot be read (${(e as Error).message})`]);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (!isObject(parsed)) throw new Error('the top level must be a JSON object');
    return parsed;
  } catch (e) {
    throw new ConfigError([`${path}: not valid JSON (${(e as Error).message})`]);
  }
}

function parseEnvValue(raw: string): Json {
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
}

/** Apply METERLINE__A__B=... overrides; returns the merged object and where each overridden path came from. */
function applyEnv(config: JsonObject, env: NodeJS.ProcessEnv, origins: Map<string, string>): JsonObject {
  const out = structuredClone(config);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('METERLINE__') || raw === undefined) continue;
    const segments = name.slice('METERLINE__'.length).split('__').filter(Boolean);
    let node: JsonObject = out;
    const path: string[] = [];
    segments.forEach((seg, i) => {
      const key = Object.keys(node).find((k) => k.toLowerCase() === seg.toLowerCase().replaceAll('_', '')) ?? seg.toLowerCase();
      path.push(key);
      if (i === segments.length - 1) {
        node[key] = parseEnvValue(raw);
      } else {
        if (!isObject(node[key])) node[key] = {};
        node = node[key] as JsonObject;
      }
    });
    origins.set(path.join('.'), name);
  }
  return out;
}

function describeIssue(issue: z.core.$ZodIssue, origins: Map<string, string>): string {
  const path = issue.path.map(String).join('.') || '(top level)';
  const origin = origins.get(path);
  if (issue.code === 'unrecognized_keys') return `${path}: unknown field(s) ${issue.keys.join(', ')}`;
  return `${path}${origin ? ` (from ${origin})` : ''}: ${issue.message}`;
}

/**
 * NODE_ENV=production runs without the demo: `config/production-defaults.json` goes over the defaults (no demo keys,
 * no simulated fleet, an external broker), unless METERLINE_DEMO=1 asks for the demo explicitly.
 */
export function productionMode(env: NodeJS.ProcessEnv): boolean {
  return env.NODE_ENV === 'production' && env.METERLINE_DEMO !== '1' && env.METERLINE_DEMO !== 'true';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: JsonObject = {}): GatewayConfig {
  const root = projectRoot();
  let merged = readJsonFile(join(root, 'config', 'default.json'));
  const production = productionMode(env);
  if (production) merged = deepMerge(merged, readJsonFile(join(root, 'config', 'production-defaults.json')));
  if (env.METERLINE_CONFIG) merged = deepMerge(merged, readJsonFile(env.METERLINE_CONFIG));
  merged = deepMerge(merged, overrides);
  const origins = new Map<string, string>();
  // The usual DATABASE_URL selects the PostgreSQL store.
  if (env.DATABASE_URL) {
    const store = (merged.store ?? {}) as JsonObject;
    const postgres = (isObject(store.postgres) ? store.postgres : { schema: null, maxConnections: 20 }) as JsonObject;
    merged = deepMerge(merged, { store: { kind: 'postgres', postgres: { ...postgres, url: env.DATABASE_URL } } });
    origins.set('store.postgres.url', 'DATABASE_URL');
  }
  merged = applyEnv(merged, env, origins);
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) throw new ConfigError(result.error.issues.map((i) => describeIssue(i, origins)));
  // Demo keys are printed and kept in plain text: a production start never makes them, whatever a file or variable says.
  if (production && result.data.auth.demoKeys) {
    const origin = origins.get('auth.demoKeys') ?? env.METERLINE_CONFIG;
    throw new ConfigError([`auth.demoKeys${origin ? ` (from ${origin})` : ''}: demo keys are refused with NODE_ENV=production; set METERLINE_DEMO=1 to run the demo`]);
  }
  return result.data;
}
