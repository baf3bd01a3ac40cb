/**
 * The open loop's API client (gateway-100k-bench.ts, runOpenLoop), run as a child process so that its HTTP work is
 * not charged to the gateway's process, as a billing system's would not be. Every `tickMs` it sends one bulk request
 * (POST /v1/orders/bulk, at most `bulkLimit` orders; more if a late tick owes more) with the orders the schedule owes
 * by then (dueBy: rate × elapsed), without waiting for earlier answers. Each meter is ordered once.
 *
 * Input: one JSON line in argv[2]: {url, key, ratePerS, seconds, tickMs, bulkLimit, prefix, from, count}: meters
 * prefix+from … prefix+(from+count−1) (ids as meterIds in bench-common.ts). It prints "submitter ready", then starts
 * when it reads a line on stdin (so the parent can start its meters first).
 * Output: one JSON line on stdout: {sent: [orderId, sentAtEpochMs][], refusedRequests, refusals, startEpochMs,
 * submitEndEpochMs, cpuUs (this process's CPU from the start to the last answer)}; times are performance.timeOrigin + performance.now() (ms since the epoch, sub-millisecond), the
 * clock the parent converts to its own.
 */
import { createInterface } from 'node:readline';
import { dueBy } from './bench-math.js';

interface Job {
  url: string;
  key: string;
  ratePerS: number;
  seconds: number;
  tickMs: number;
  bulkLimit: number;
  prefix: string;
  from: number;
  count: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const epochNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const meterId = (n: number): string => `${job.prefix}${String(n).padStart(6, '0')}`;
const total = Math.min(job.count, dueBy(job.ratePerS, job.seconds * 1000));
const sent: [string, number][] = [];
const refusals: string[] = [];
let refusedRequests = 0;
let request = 0;

async function post(first: number, end: number): Promise<void> {
  const orders = [];
  for (let i = first; i < end; i++) orders.push({ meterId: meterId(job.from + i), action: 'reconnect', reason: 'payment' });
  const at = epochNow();
  try {
    const res = await fetch(`${job.url}/v1/orders/bulk`, {
      method: 'POST',
      headers: { authorization: `Bearer ${job.key}`, 'content-type': 'application/json', 'idempotency-key': `bench-open-${request++}` },
      body: JSON.stringify({ orders }),
    });
    const out = (await res.json()) as { results?: { order: { id: string } }[] };
    if (res.status >= 300 || !out.results) throw new Error(`${res.status} ${JSON.stringify(out).slice(0, 300)}`);
    for (const r of out.results) sent.push([r.order.id, at]);
  } catch (err) {
    refusedRequests++;
    if (refusals.length < 5) refusals.push(String(err));
  }
}

process.stdout.write('submitter ready\n');
await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));

const cpuAtStart = process.cpuUsage();
const posts: Promise<void>[] = [];
const t0 = performance.now();
const startEpochMs = performance.timeOrigin + t0;
let submitted = 0;
while (submitted < total) {
  const due = Math.min(total, dueBy(job.ratePerS, performance.now() - t0));
  for (let i = submitted; i < due; i += job.bulkLimit) posts.push(post(i, Math.min(due, i + job.bulkLimit)));
  submitted = Math.max(submitted, due);
  if (submitted >= total) break;
  const next = t0 + (Math.floor((performance.now() - t0) / job.tickMs) + 1) * job.tickMs;
  await sleep(Math.max(0, next - performance.now()));
}
const submitEndEpochMs = epochNow();
await Promise.all(posts);
const cpu = process.cpuUsage(cpuAtStart);
const cpuUs = cpu.user + cpu.system;
// Exit only once the (large) line is written: stdout to a pipe is asynchronous.
process.stdout.write(JSON.stringify({ sent, refusedRequests, refusals, startEpochMs, submitEndEpochMs, cpuUs }) + '\n', () => process.exit(0));
