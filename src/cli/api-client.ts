import { randomUUID } from 'node:crypto';

/**
 * The CLI's HTTP client: the same API, the same rules, the same error codes as every other client. Every write
 * carries an Idempotency-Key, so a script that retries a command never creates a second order.
 */

/** Exit codes scripts can rely on (printed by `meterline --help`). */
export const EXIT = {
  ok: 0,
  other: 1,
  usage: 2,
  refused: 3,
  notFound: 4,
  auth: 5,
  /** --wait/--watch with --timeout: the timeout passed and the order is still open. */
  stillOpen: 6,
  /** --wait/--watch: the order went to a field crew (escalated); without --wait-field the CLI stops waiting there. */
  escalated: 7,
} as const;

export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(EXIT.usage, 'E_USAGE', message);

/** The exit code for an API error: by code where the status would mislead, else by HTTP status. */
export function exitCodeFor(status: number, code: string): number {
  if (code === 'E_SELF_APPROVAL') return EXIT.refused; // a rule (maker–checker), although sent as 403
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.refused;
  if (status === 400 || status === 413 || status === 422) return EXIT.usage;
  return EXIT.other;
}

export interface ClientOptions {
  url: string;
  key: string | undefined;
  idempotencyKey: string | undefined;
}

export class ApiClient {
  private writes = 0;
  constructor(private readonly options: ClientOptions) {}

  get baseUrl(): string {
    return this.options.url.replace(/\/+$/, '');
  }

  /** The key for the next write: the one given with --idempotency-key (then "<key>-2", … for further writes), or a new one. */
  nextIdempotencyKey(): string {
    this.writes += 1;
    const given = this.options.idempotencyKey;
    if (given) return this.writes === 1 ? given : `${given}-${this.writes}`;
    return `cli-${randomUUID()}`;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    if (!this.options.key) throw new CliError(EXIT.auth, 'E_UNAUTHORIZED', 'no API key: set METERLINE_KEY or pass --key');
    return { authorization: `Bearer ${this.options.key}`, accept: 'application/json', ...extra };
  }

  async request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const { data } = await this.send(method, path, body);
    return data as T;
  }

  /** A GET whose answer is text (an export), not JSON; errors as `request`. */
  async text(path: string): Promise<string> {
    return (await this.send('GET', path)).text;
  }

  private async send(method: string, path: string, body?: unknown): Promise<{ data: unknown; text: string }> {
    const write = method !== 'GET';
    const headers = this.headers({
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(write ? { 'idempotency-key': this.nextIdempotencyKey() } : {}),
    });
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (err) {
      throw new CliError(EXIT.other, 'E_NETWORK', `cannot reach the gateway at ${this.baseUrl} (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}); check METERLINE_URL or --url`);
    }
    const text = await res.text();
    let data: any = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text };
    }
    if (!res.ok) {
      const code = typeof data?.code === 'string' ? data.code : `HTTP_${res.status}`;
      throw new CliError(exitCodeFor(res.status, code), code, typeof data?.message === 'string' ? data.message : res.statusText, data?.details);
    }
    return { data, text };
  }
}
