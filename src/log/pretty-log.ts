/**
 * Pino's JSON lines made readable for a person at a terminal: `time LEVEL message key=value …`, an error's stack on
 * the lines below. Only the gateway's own log goes through it, and only when stdout is a terminal (or `log.format`
 * says `pretty`): a pipe, a file or a log shipper gets the JSON unchanged.
 */

/** ANSI colours per level; none when `colour` is off (NO_COLOR, or not a terminal). */
const LEVEL_COLOUR: Readonly<Record<string, string>> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31', fatal: '35' };

/** Fields the line's layout already shows, or that every line would repeat (the banner names the instance). */
const SHOWN = new Set(['time', 'level', 'msg', 'instance', 'err']);

/** One JSON log line as one readable line (plus the stack of an `err`). A line that is not JSON is passed through. */
export function prettyLine(json: string, colour: boolean): string {
  let rec: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return json.trimEnd();
    rec = parsed as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const time = typeof rec.time === 'number' ? new Date(rec.time).toISOString() : String(rec.time ?? '');
  const level = String(rec.level ?? '');
  const paint = (code: string | undefined, text: string) => (colour && code ? `\x1b[${code}m${text}\x1b[0m` : text);
  const fields = Object.entries(rec)
    .filter(([k]) => !SHOWN.has(k))
    .map(([k, v]) => `${paint('2', `${k}=`)}${formatValue(v)}`);
  const head = [time, paint(LEVEL_COLOUR[level], level.toUpperCase().padEnd(5)), String(rec.msg ?? ''), ...fields].join(' ');
  return rec.err === undefined ? head : `${head}\n${formatError(rec.err)}`;
}

/** Plain words stay bare; anything with spaces, quotes or structure is written as JSON, so the line stays one line. */
function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Pino serialises an error as `{ type, message, stack }`: the stack (which starts with the message) indented. */
function formatError(err: unknown): string {
  const e = err as { stack?: unknown; message?: unknown };
  const text = typeof e?.stack === 'string' ? e.stack : typeof e?.message === 'string' ? e.message : JSON.stringify(err);
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** A pino destination that writes each JSON line to `out` as a readable line. */
export function prettyDestination(out: NodeJS.WritableStream, colour: boolean): { write(chunk: string): void } {
  return {
    write(chunk) {
      // Pino hands over one record per write, ending in a newline.
      for (const line of chunk.split('\n')) if (line) out.write(`${prettyLine(line, colour)}\n`);
    },
  };
}
