/**
 * Array parameters for PostgreSQL, written by the store instead of by pg. The set-based statements send each
 * order's values as array parameters (a completion batch: twenty arrays of up to a thousand elements), and pg's own
 * writer (utils.js arrayString) was the costliest part of the PostgreSQL client on the gateway's main thread: for
 * every element a type dispatch, two regex replaces and three new strings. This writes the very same text literal
 * (the test compares it with pg's, character for character), cheaper: an array with no NULL and no element that
 * needs escaping (ids, states, numbers) is one native join; any other element (audit details and feed payloads are
 * JSON text, full of double quotes) is quoted by JSON.stringify, which escapes exactly a backslash and a double quote
 * as the literal does, for a string without control characters or surrogates (other strings are escaped as pg does).
 */

const NEEDS_ESCAPE = /[\\"]/;
/** Characters JSON.stringify writes otherwise than the array literal does (\n, \uXXXX), and surrogates, to be safe. */
const NOT_FOR_JSON = /[\u0000-\u001f\ud800-\udfff]/;

/** `s` quoted and escaped as an element of PostgreSQL's array literal, as pg's escapeElement writes it. */
function quoted(s: string): string {
  return NOT_FOR_JSON.test(s) ? '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"' : JSON.stringify(s);
}

/**
 * `values` as PostgreSQL's text array literal, exactly as pg writes it (`{"a","b",NULL}`: every element quoted,
 * backslash and double quote escaped, null and undefined as NULL); undefined for an array pg writes another way
 * (nested arrays, buffers, dates, objects), which is then left to pg.
 */
export function pgArrayLiteral(values: readonly unknown[]): string | undefined {
  const n = values.length;
  if (n === 0) return '{}';
  let plain = true;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const t = typeof v;
    if (t === 'string') {
      if (plain && NEEDS_ESCAPE.test(v as string)) plain = false;
    } else if (v === null || v === undefined) plain = false;
    else if (t !== 'number' && t !== 'boolean' && t !== 'bigint') return undefined;
  }
  // Numbers, booleans and bigints print without a backslash or a double quote.
  if (plain) return '{"' + values.join('","') + '"}';
  let out = '{';
  for (let i = 0; i < n; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    if (v === null || v === undefined) {
      out += 'NULL';
      continue;
    }
    out += typeof v === 'string' ? quoted(v) : '"' + String(v) + '"';
  }
  return out + '}';
}

/** `args` with each array written as its literal (the same array when none is; the caller's is never changed). */
export function withArrayLiterals(args: readonly unknown[]): readonly unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!Array.isArray(a)) continue;
    const literal = pgArrayLiteral(a);
    if (literal === undefined) continue;
    out ??= args.slice();
    out[i] = literal;
  }
  return out ?? args;
}
