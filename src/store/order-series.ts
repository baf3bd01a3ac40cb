/**
 * Orders over time, in buckets (the overview's charts, issue 17): how many orders finished in each bucket, how many
 * of them ended well remotely, and how many were open at its end. Computed from the orders table alone, on both
 * stores, by index range scans over the asked range (orders_created, orders_completed, orders_escalated): never a
 * walk of the whole table, however old the store.
 *
 * The queue depth at an instant t is the orders created before t and not yet closed at t (an order closes when it
 * reaches a terminal state, at its completed_at). It is the depth at the range's start plus those created minus
 * those closed since; the depth at the start counts the orders open now that were created before it and the orders
 * closed since it that were created before it, both small sets reached by index.
 */

/** One bucket: [at, at + step). */
export interface OrderSeriesBucket {
  /** The bucket's start, ms since epoch. */
  at: number;
  /** Orders that finished in it: done, armed, failed, done by the field, or escalated to the field (as the success rate counts them). */
  finished: number;
  /** Of those, the ones that ended well remotely (done or armed, never escalated). */
  done: number;
  failedOrEscalated: number;
  /** done / finished; null when nothing finished. */
  successRate: number | null;
  /** Orders open (accepted, held, queued, in flight, escalated) at the bucket's end. */
  queueDepth: number;
}

/** The most buckets one request may ask for (a day by the minute). */
export const MAX_SERIES_BUCKETS = 1440;

/** How a store writes a bound parameter (`?` or `$n::bigint`). */
export type SeriesParam = (value: number) => string;

const OPEN = `('accepted', 'held', 'queued', 'in_flight', 'escalated')`;
const WELL = `state IN ('done', 'armed') AND escalated_at IS NULL`;

/** The statements, each a range scan of one index; `end` is from + buckets × step. */
export const seriesSql = {
  openAtStart: (p: SeriesParam, from: number) =>
    `SELECT (SELECT COUNT(*) FROM orders WHERE state IN ${OPEN} AND created_at < ${p(from)})
          + (SELECT COUNT(*) FROM orders WHERE completed_at >= ${p(from)} AND created_at < ${p(from)}) AS n`,
  created: (p: SeriesParam, from: number, end: number, step: number) =>
    `SELECT (created_at - ${p(from)}) / ${p(step)} AS b, COUNT(*) AS n FROM orders
     WHERE created_at >= ${p(from)} AND created_at < ${p(end)} GROUP BY 1`,
  completed: (p: SeriesParam, from: number, end: number, step: number) =>
    `SELECT (completed_at - ${p(from)}) / ${p(step)} AS b, COUNT(*) AS closed,
            SUM(CASE WHEN state IN ('done', 'armed', 'failed', 'done_by_field') THEN 1 ELSE 0 END) AS finished,
            SUM(CASE WHEN ${WELL} THEN 1 ELSE 0 END) AS done
     FROM orders WHERE completed_at >= ${p(from)} AND completed_at < ${p(end)} GROUP BY 1`,
  escalated: (p: SeriesParam, from: number, end: number, step: number) =>
    `SELECT (escalated_at - ${p(from)}) / ${p(step)} AS b, COUNT(*) AS n FROM orders
     WHERE escalated_at >= ${p(from)} AND escalated_at < ${p(end)} AND state = 'escalated' GROUP BY 1`,
};

export interface SeriesRows {
  openAtStart: number;
  created: readonly { b: number; n: number }[];
  completed: readonly { b: number; closed: number; finished: number; done: number }[];
  escalated: readonly { b: number; n: number }[];
}

/** Number of buckets for a range: whole steps, the last one possibly running past `to`. */
export function bucketCount(from: number, to: number, stepMs: number): number {
  return Math.max(1, Math.ceil((to - from) / stepMs));
}

/** The statements' rows as buckets. Pure. */
export function assembleSeries(from: number, stepMs: number, buckets: number, rows: SeriesRows): OrderSeriesBucket[] {
  const created = new Array<number>(buckets).fill(0);
  const closed = new Array<number>(buckets).fill(0);
  const finished = new Array<number>(buckets).fill(0);
  const done = new Array<number>(buckets).fill(0);
  const inRange = (b: number) => Number.isInteger(b) && b >= 0 && b < buckets;
  for (const r of rows.created) if (inRange(Number(r.b))) created[Number(r.b)]! += Number(r.n);
  for (const r of rows.completed) {
    const b = Number(r.b);
    if (!inRange(b)) continue;
    closed[b]! += Number(r.closed);
    finished[b]! += Number(r.finished ?? 0);
    done[b]! += Number(r.done ?? 0);
  }
  for (const r of rows.escalated) if (inRange(Number(r.b))) finished[Number(r.b)]! += Number(r.n);
  const out: OrderSeriesBucket[] = [];
  let depth = Number(rows.openAtStart);
  for (let i = 0; i < buckets; i++) {
    depth += created[i]! - closed[i]!;
    const f = finished[i]!;
    out.push({ at: from + i * stepMs, finished: f, done: done[i]!, failedOrEscalated: f - done[i]!, successRate: f === 0 ? null : done[i]! / f, queueDepth: depth });
  }
  return out;
}

/**
 * Run the statements on a store: `all` runs one with its arguments; `placeholder(n)` writes the n-th (1-based)
 * parameter in the store's dialect (SQLite `?`, PostgreSQL `$n::bigint`).
 */
export async function queryOrderSeries(
  all: (sql: string, args: number[]) => Promise<Record<string, unknown>[]> | Record<string, unknown>[],
  placeholder: (n: number) => string,
  from: number,
  to: number,
  stepMs: number,
): Promise<OrderSeriesBucket[]> {
  const buckets = bucketCount(from, to, stepMs);
  const end = from + buckets * stepMs;
  const run = async (build: (p: SeriesParam) => string) => {
    const args: number[] = [];
    const sql = build((v) => (args.push(v), placeholder(args.length)));
    return all(sql, args);
  };
  const [open] = await run((p) => seriesSql.openAtStart(p, from));
  const rows: SeriesRows = {
    openAtStart: Number(open?.n ?? 0),
    created: (await run((p) => seriesSql.created(p, from, end, stepMs))) as unknown as SeriesRows['created'],
    completed: (await run((p) => seriesSql.completed(p, from, end, stepMs))) as unknown as SeriesRows['completed'],
    escalated: (await run((p) => seriesSql.escalated(p, from, end, stepMs))) as unknown as SeriesRows['escalated'],
  };
  return assembleSeries(from, stepMs, buckets, rows);
}
