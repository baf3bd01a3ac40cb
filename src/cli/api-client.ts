import { randomUUID } from 'node:crypto';
import createClient, { createQuerySerializer, type Client } from 'openapi-fetch';
import type { paths } from './generated/openapi-types.js';

/**
 * The CLI's HTTP client: the same API, the same rules, the same error codes as every other client. It is the client a
 * billing system generates from our OpenAPI document (openapi-fetch over the types `npm run contracts` writes), so
 * the CLI's tests prove the document. Every write carries an Idempotency-Key, so a script that retries a command
 * never creates a second order.
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

/**
 * A value typed by the user for a parameter the document limits to a set (a state, a role, an outcome): sent as given,
 * because the gateway checks it and refuses with E_VALIDATION naming what it allows. The CLI keeps no second list of
 * the allowed values that could drift from the document.
 */
export function asGiven<T>(value: string | readonly string[] | undefined): T {
  return value as T;
}

export interface ClientOptions {
  url: string;
  key: string | undefined;
  idempotencyKey: string | undefined;
}

/** The gateway's API as generated from its OpenAPI document (docs/openapi.json; `npm run contracts`). */
export type GatewayApi = Client<paths>;

/** What every openapi-fetch call answers: the parsed body on success, the error body otherwise. */
type Answer<T> = { data?: T; error?: unknown; response: Response };

export class ApiClient {
  private writes = 0;
  private readonly client: GatewayApi;

  constructor(private readonly options: ClientOptions) {
    const serialize = createQuerySerializer();
    this.client = createClient<paths>({
      baseUrl: this.baseUrl,
      // An option given empty (--state '') is left out, as if not given.
      querySerializer: (query) => serialize(Object.fromEntries(Object.entries(query).filter(([, value]) => value !== ''))),
      headers: { ...(options.key ? { authorization: `Bearer ${options.key}` } : {}), accept: 'application/json' },
    });
  }

  get baseUrl(): string {
    return this.options.url.replace(/\/+$/, '');
  }

  /** The typed API (paths, parameters, bodies and answers from the document); refused without a key. Unwrap answers with `ok`. */
  get api(): GatewayApi {
    if (!this.options.key) throw new CliError(EXIT.auth, 'E_UNAUTHORIZED', 'no API key: set METERLINE_KEY or pass --key');
    return this.client;
  }

  /** The key for the next write: the one given with --idempotency-key (then "<key>-2", … for further writes), or a new one. */
  nextIdempotencyKey(): string {
    this.writes += 1;
    const given = this.options.idempotencyKey;
    if (given) return this.writes === 1 ? given : `${given}-${this.writes}`;
    return `cli-${randomUUID()}`;
  }

  /** The header parameters of one write (`params.header`): every write carries its own Idempotency-Key. */
  write(): { 'idempotency-key': string } {
    return { 'idempotency-key': this.nextIdempotencyKey() };
  }

  /** The answer's body; an error answer or an unreachable gateway becomes a CliError with the gateway's code and the exit code for it. */
  async ok<T>(call: Promise<Answer<T>>): Promise<T> {
    let answer: Answer<T>;
    try {
      answer = await call;
    } catch (err) {
      if (err instanceof CliError || (err as Error).name === 'AbortError') throw err;
      // A success answer that is not JSON: the URL names some other web server.
      if (err instanceof SyntaxError) throw new CliError(EXIT.other, 'E_NOT_A_GATEWAY', `the answer from ${this.baseUrl} is not the gateway's JSON (${err.message}); check METERLINE_URL or --url`);
      const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
      throw new CliError(EXIT.other, 'E_NETWORK', `cannot reach the gateway at ${this.baseUrl} (${cause}); check METERLINE_URL or --url`);
    }
    const { response } = answer;
    if (!response.ok) {
      const body = (typeof answer.error === 'string' ? { message: answer.error } : answer.error) as { code?: unknown; message?: unknown; details?: unknown } | undefined;
      const code = typeof body?.code === 'string' ? body.code : `HTTP_${response.status}`;
      throw new CliError(exitCodeFor(response.status, code), code, typeof body?.message === 'string' && body.message ? body.message : response.statusText, body?.details);
    }
    return answer.data as T;
  }
}
