import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MeterlineError } from '../errors.js';

/**
 * Request bodies, bounded per route (DESIGN.md §8). The key is checked before any of this (`onRequest`,
 * src/api/auth.ts), so an unknown caller's body is never read; a known caller's body is refused by its
 * Content-Length before it is read when it is larger than the route takes, and is never read past that limit.
 *
 * A route that takes one thing (an order, a payment, a key, a callback) has the default limit. A bulk route's limit
 * is its item limit times what one item weighs at most, so no body is larger than the work the route may be asked
 * for. A JSON body may nest at most `MAX_JSON_DEPTH` levels.
 */

/** One order, one payment, a key, a note: well under 2 KiB even with every field at its longest. */
export const DEFAULT_BODY_LIMIT = 16 * 1024;

/** What a bulk body carries besides its items: braces, the list's name, a note. */
const ENVELOPE_BYTES = 4 * 1024;

/** The body limit of a route that takes up to `items` items of at most `bytesPerItem` each. */
export const bulkBodyLimit = (items: number, bytesPerItem: number): number => items * bytesPerItem + ENVELOPE_BYTES;

/**
 * The deepest a request of this API nests is 3 levels (`{"orders": [{…}]}`); 32 leaves room and stays far below
 * what recursion over a parsed body (JSON.stringify for a request hash, validation) can take: 5,000 levels in 10 KB
 * overflowed the stack.
 */
export const MAX_JSON_DEPTH = 32;

/**
 * Whether the JSON text nests arrays and objects deeper than `max`. A linear scan that stops at the first level too
 * deep, run before `JSON.parse` so a body that is refused is never built into objects. Brackets inside strings do
 * not count; the text need not be valid JSON (the parser judges that next).
 */
export function jsonNestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Jump to the closing quote: one not preceded by an odd number of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return false;
        let backslashes = 0;
        while (text.charCodeAt(i - 1 - backslashes) === 0x5c /* \ */) backslashes++;
        if (backslashes % 2 === 0) break;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > max) return true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return false;
}

/**
 * Replaces fastify's JSON parser with one that refuses a body nested deeper than `MAX_JSON_DEPTH` (400
 * E_BODY_TOO_DEEP) and otherwise parses as fastify does (secure-json-parse: `__proto__` and `constructor.prototype`
 * keys are refused). The body limit is fastify's: the route's `bodyLimit`, checked against Content-Length first.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const parseSecurely = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (jsonNestsDeeperThan(body as string, MAX_JSON_DEPTH)) {
      done(new MeterlineError('E_BODY_TOO_DEEP', `the JSON body nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects; no request of this API needs more than 3. Nothing was done`, { maxDepth: MAX_JSON_DEPTH }), undefined);
      return;
    }
    parseSecurely(req, body as string, done);
  });
}

/** The 413 for a body over the route's limit: names the limit in bytes and what to do. */
export function bodyTooLarge(req: FastifyRequest): MeterlineError {
  const limit = req.routeOptions.bodyLimit;
  const declared = Number(req.headers['content-length']);
  const sent = Number.isFinite(declared) && declared > 0 ? ` (this one declared ${declared.toLocaleString('en')} bytes)` : '';
  const what = limit > DEFAULT_BODY_LIMIT ? 'split the items over several requests' : 'one request of this route needs far less; check what is being sent';
  return new MeterlineError(
    'E_BODY_TOO_LARGE',
    `${req.method} ${req.routeOptions.url ?? req.url} takes a body of at most ${limit.toLocaleString('en')} bytes${sent}; ${what}. Nothing was done`,
    { limitBytes: limit },
  );
}
