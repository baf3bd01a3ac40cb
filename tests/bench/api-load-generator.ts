/**
 * Open-loop HTTP load generator for api-latency-bench.ts, run as a child process (a second process, as a
 * billing system or console would be). Request i is due at t0 + i / rate whatever happened to earlier ones (no
 * waiting for answers, so a slow gateway cannot slow the offered load down), alternating
 * `POST /v1/meters/{id}/reconnect` (each on its own meter) and `GET /v1/meters/{id}`. Latency is measured from
 * the request's due time, so time spent queued in this process or the gateway counts (no coordinated omission).
 *
 * Input: one JSON line in argv[2]: {url, key, rate, seconds, prefix, postFrom, postCount, getCount}: POSTs go to
 * meters prefix+postFrom … prefix+(postFrom+postCount−1), GETs to meters 1 … getCount (ids as in simulators/fleet-plan.ts).
 * Output: one JSON line on stdout: {post: number[], get: number[], errors: {kind: count}, lateStartsMs, timeline}
 * (latencies in ms; timeline: [second the requests were due, latency] pairs, to see whether slow answers are spread
 * out or one stall).
 */
interface Job {
  url: string;
  key: string;
  rate: number;
  seconds: number;
  prefix: string;
  postFrom: number;
  postCount: number;
  getCount: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const id = (n: number) => `${job.prefix}${String(n).padStart(6, '0')}`;
const total = Math.round(job.rate * job.seconds);
const post: number[] = [];
const get: number[] = [];
const errors: Record<string, number> = {};
const timeline: [number, number][] = [];
const error = (kind: string) => (errors[kind] = (errors[kind] ?? 0) + 1);
let maxLateStart = 0;
const running: Promise<void>[] = [];

async function one(i: number, due: number): Promise<void> {
  const isPost = i % 2 === 0;
  const meterId = isPost ? id(job.postFrom + ((i >> 1) % job.postCount)) : id(1 + ((i * 7919) % job.getCount));
  try {
    const res = isPost
      ? await fetch(`${job.url}/v1/meters/${meterId}/reconnect`, {
          method: 'POST',
          headers: { authorization: `Bearer ${job.key}`, 'content-type': 'application/json', 'idempotency-key': `lat-${i}` },
          body: JSON.stringify({ reason: 'payment' }),
        })
      : await fetch(`${job.url}/v1/meters/${meterId}`, { headers: { authorization: `Bearer ${job.key}` } });
    await res.arrayBuffer();
    if (res.status !== (isPost ? 202 : 200)) error(`HTTP ${res.status}`);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    error(cause?.code ?? cause?.message ?? String(err));
  }
  const latency = performance.now() - due;
  (isPost ? post : get).push(latency);
  timeline.push([Math.floor((due - t0) / 1000), latency]);
}

const t0 = performance.now() + 100;
for (let i = 0; i < total; i++) {
  const due = t0 + (i * 1000) / job.rate;
  const wait = due - performance.now();
  if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  maxLateStart = Math.max(maxLateStart, performance.now() - due);
  running.push(one(i, due));
}
await Promise.all(running);
// Exit only once the (large) line is written: stdout to a pipe is asynchronous.
process.stdout.write(JSON.stringify({ post, get, errors, lateStartsMs: maxLateStart, timeline }) + '\n', () => process.exit(0));
