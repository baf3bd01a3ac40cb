import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, CliError, EXIT, usageError } from './api-client.js';
import { table } from './format.js';

/**
 * Named contexts: a gateway URL and an API key per name, kept in the user's config directory
 * (`$XDG_CONFIG_HOME/meterline/contexts.json`, else `~/.config/meterline/contexts.json`) so that scripts and
 * terminals need no key in their environment or arguments. The file holds keys, so it is the user's alone: mode
 * 0600 in a 0700 directory. A wider directory is narrowed; a wider file is refused, because its keys may already
 * have been read by others and only the user can judge whether to rotate them.
 */

interface Context {
  url: string;
  key: string;
  /** Whom the key named when it was stored (`whoami`), to show in `context list`; never the key. */
  identity: string;
}

interface ContextFile {
  current: string | null;
  contexts: Record<string, Context>;
}

export const CONTEXT_OPTIONS = {
  context: { type: 'string' },
} as const;

export const contextDir = (env: NodeJS.ProcessEnv): string => join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'meterline');
export const contextFile = (env: NodeJS.ProcessEnv): string => join(contextDir(env), 'contexts.json');

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function modeOf(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The stored contexts; an absent file is an empty one. */
function load(env: NodeJS.ProcessEnv, warn: (text: string) => void): ContextFile {
  const dir = contextDir(env);
  const dirMode = modeOf(dir);
  if (dirMode !== undefined && (dirMode & 0o077) !== 0) {
    chmodSync(dir, 0o700);
    warn(`meterline: ${dir} was open to others (mode ${dirMode.toString(8)}); narrowed to 700`);
  }
  const file = contextFile(env);
  const fileMode = modeOf(file);
  if (fileMode === undefined) return { current: null, contexts: {} };
  if ((fileMode & 0o077) !== 0) {
    throw new CliError(
      EXIT.auth,
      'E_CONTEXT_FILE_MODE',
      `${file} is readable or writable by others (mode ${fileMode.toString(8)}): its API keys may have been read. Rotate them if so (meterline api-keys rotate), then chmod 600 ${file}`,
    );
  }
  let data: ContextFile;
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as ContextFile;
  } catch (err) {
    throw new CliError(EXIT.other, 'E_CONTEXT_FILE_INVALID', `${file} is not a contexts file (${(err as Error).message}); remove it and log in again`);
  }
  if (!data || typeof data.contexts !== 'object' || data.contexts === null) {
    throw new CliError(EXIT.other, 'E_CONTEXT_FILE_INVALID', `${file} is not a contexts file (no "contexts" object); remove it and log in again`);
  }
  return { current: typeof data.current === 'string' ? data.current : null, contexts: data.contexts };
}

/** Write through a new 0600 file renamed over the old one: never a moment where the keys are readable or half-written. */
function save(env: NodeJS.ProcessEnv, data: ContextFile): void {
  const dir = contextDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = contextFile(env);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, file);
}

const known = (data: ContextFile, name: string): Context => {
  const c = data.contexts[name];
  if (!c) throw new CliError(EXIT.notFound, 'E_CONTEXT_NOT_FOUND', `no context "${name}" (meterline context list; meterline login --context ${name} --url <url>)`);
  return c;
};

/**
 * The gateway and key a command uses. Precedence: --url/--key, then the context named by --context, then
 * METERLINE_URL/METERLINE_KEY, then the current context, then the local default URL. The contexts file is read only
 * when a value is still missing after the flags and the environment (or --context names one).
 */
export function resolveTarget(v: { url?: string; key?: string; context?: string }, env: NodeJS.ProcessEnv, warn: (text: string) => void): { url: string; key: string | undefined } {
  let url = v.url;
  let key = v.key;
  if (v.context !== undefined) {
    const c = known(load(env, warn), v.context);
    url ??= c.url;
    key ??= c.key;
  }
  url ??= env.METERLINE_URL;
  key ??= env.METERLINE_KEY;
  if (url === undefined || key === undefined) {
    const data = load(env, warn);
    const c = data.current ? data.contexts[data.current] : undefined;
    url ??= c?.url;
    key ??= c?.key;
  }
  return { url: url ?? 'http://127.0.0.1:8080', key };
}

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  readSecret: (prompt: string) => Promise<string>;
}

/** `login --context <name> --url <url>`: the key comes from stdin or a prompt, is checked with whoami, then stored. */
export async function login(v: { url?: string; key?: string; context?: string; json?: boolean }, args: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  if (args.length > 0) throw usageError(`unexpected argument "${args[0]}" for login`);
  if (v.key !== undefined) throw usageError('login reads the key from stdin or a prompt, never from --key (arguments show in ps)');
  const name = v.context ?? 'default';
  if (!NAME.test(name)) throw usageError(`--context: "${name}" is not a context name (letters, digits, ".", "_", "-")`);
  const url = v.url ?? env.METERLINE_URL;
  if (!url) throw usageError('login needs the gateway: --url <url>');
  if (!/^https?:\/\/[^/]/.test(url)) throw usageError(`--url: "${url}" is not an http(s) URL`);
  const data = load(env, io.err);
  const key = (await io.readSecret(`API key for ${url}: `)).trim();
  if (!key) throw usageError('no API key given (pipe it to stdin or type it at the prompt)');
  const client = new ApiClient({ url, key, idempotencyKey: undefined });
  const who = await client.ok(client.api.GET('/v1/whoami'));
  data.contexts[name] = { url, key, identity: `${who.name} (${who.role})` };
  data.current = name;
  save(env, data);
  const result = { context: name, url, identity: data.contexts[name]!.identity, current: true, file: contextFile(env) };
  io.out(v.json ? JSON.stringify(result, null, 2) : `logged in to ${url} as ${result.identity}; context "${name}" is current (${result.file})`);
  return EXIT.ok;
}

/** `context list|use <name>|remove <name>`. */
export function contextCommand(v: { json?: boolean }, args: string[], env: NodeJS.ProcessEnv, io: Io): number {
  const [sub, name, extra] = args;
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}" for context ${sub}`);
  const data = load(env, io.err);
  if (sub === 'list') {
    if (name !== undefined) throw usageError(`unexpected argument "${name}" for context list`);
    const rows = Object.entries(data.contexts).map(([n, c]) => ({ name: n, url: c.url, identity: c.identity, current: n === data.current }));
    io.out(v.json ? JSON.stringify({ current: data.current, contexts: rows }, null, 2) : rows.length === 0 ? 'no contexts (meterline login --context <name> --url <url>)' : table(['', 'CONTEXT', 'URL', 'KEY OF'], rows.map((r) => [r.current ? '*' : '', r.name, r.url, r.identity])));
    return EXIT.ok;
  }
  if (sub === 'use' || sub === 'remove') {
    if (name === undefined) throw usageError(`missing the context: meterline context ${sub} <name>`);
    const target = name;
    known(data, target);
    if (sub === 'use') data.current = target;
    else {
      delete data.contexts[target];
      if (data.current === target) data.current = null;
    }
    save(env, data);
    io.out(v.json ? JSON.stringify({ current: data.current }, null, 2) : sub === 'use' ? `context "${target}" is current` : `context "${target}" removed${data.current === null ? '; no context is current' : ''}`);
    return EXIT.ok;
  }
  throw usageError(`context needs one of: list, use, remove (got ${sub ?? 'nothing'})`);
}
