import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPEN_ORDER_STATES } from '../../src/domain/switch-order.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * `/metrics` as Prometheus's own linter reads it (issue 18 item 3): a gateway that has switched meters, with its
 * MQTT link, an SSE client following the orders and a 404, scraped and piped into `promtool check metrics`
 * (Debian's `prometheus` package; tests/setup/test-deps.sh installs it). promtool prints one line per problem
 * (a gauge named `_total`, a counter without it, a missing help…) and exits non-zero.
 */
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `prom-${++n}` });

beforeAll(async () => {
  f = await startGatewayFixture([
    { meterId: 'PT-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' },
    { meterId: 'PT-2', profileId: 'acme-em340-fw2.4', initialRelay: 'disconnected' },
  ]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

/** Every sample line of a scrape, by series (`name{labels}`). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    const v = line.slice(at + 1);
    out.set(line.slice(0, at), v === '+Inf' ? Number.POSITIVE_INFINITY : v === '-Inf' ? Number.NEGATIVE_INFINITY : Number(v));
  }
  return out;
}

describe('/metrics by Prometheus conventions', () => {
  it('a scrape of a working gateway passes `promtool check metrics` with nothing to say, and the new metrics hold sensible values', async () => {
    const d = await f.http('POST', '/v1/meters/PT-1/disconnect', { headers: k(), body: { reason: 'customer_request', reference: 'REQ-1' } });
    const r = await f.http('POST', '/v1/meters/PT-2/reconnect', { headers: k(), body: { reason: 'payment' } });
    expect([d.status, r.status]).toEqual([202, 202]);
    expect((await f.waitForOrder(d.body.id)).state).toBe('done');
    expect((await f.waitForOrder(r.body.id)).state).toBe('done');
    await f.gateway.monitor.evaluate(); // the success rates, as the singleton job computes them every minute
    expect((await f.http('GET', '/v1/no-such-route')).status).toBe(404);

    const abort = new AbortController();
    const sse = await fetch(`${f.gateway.apiUrl}/v1/events`, { headers: { authorization: `Bearer ${f.operatorKey}` }, signal: abort.signal });
    try {
      expect(sse.status).toBe(200);
      const res = await f.http('GET', '/metrics');
      expect(res.status).toBe(200);
      const text = res.body as string;

      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(lint.error, 'promtool is missing: bash tests/setup/test-deps.sh installs it (Debian package prometheus)').toBeUndefined();
      expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
      expect(lint.status).toBe(0);

      const m = samples(text);
      // Only open states, each one (0 when empty); the two finished orders are not a queue.
      expect([...m.keys()].filter((s) => s.startsWith('meterline_queue_depth{')).sort()).toEqual(OPEN_ORDER_STATES.map((s) => `meterline_queue_depth{state="${s}"}`).sort());
      for (const s of OPEN_ORDER_STATES) expect(m.get(`meterline_queue_depth{state="${s}"}`), s).toBe(0);
      expect(m.get('meterline_orders_finished_total{action="disconnect",state="done"}')).toBe(1);

      expect(m.get('meterline_broker_connected')).toBe(1);
      expect(m.get('meterline_sse_clients')).toBe(1);
      expect(m.get('meterline_most_urgent_reconnect_remaining_seconds')).toBe(Number.POSITIVE_INFINITY);
      const anchorAge = m.get('meterline_audit_anchor_age_seconds')!;
      expect(anchorAge).toBeGreaterThanOrEqual(0); // anchored at start (SQLite: the anchor file beside the database)
      expect(anchorAge).toBeLessThan(120);
      expect(text).toContain('# TYPE meterline_timeseries_dropped_points_total counter');

      // A ratio per window the monitor computes: 15 and 60 minutes by default.
      const ratio = (window: string) => m.get(`meterline_success_ratio{scope="profile",key="acme-em340-fw2.4",action="disconnect",kind="attempt",window="${window}"}`);
      expect(ratio('15m')).toBe(1);
      expect(ratio('60m')).toBe(1);
      expect(m.get('meterline_success_samples{scope="profile",key="acme-em340-fw2.4",action="disconnect",kind="attempt",window="15m"}')).toBe(1);

      // Requests by route template and status; a 404 on no route is `unmatched`; never a raw URL.
      expect(m.get('meterline_http_request_duration_seconds_count{method="POST",route="/v1/meters/:meterId/disconnect",status="202"}')).toBe(1);
      expect(m.get('meterline_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}')).toBe(1);
      expect(m.get('meterline_http_request_duration_seconds_count{method="GET",route="/v1/orders/:orderId",status="200"}')).toBeGreaterThanOrEqual(2);
      expect(text).not.toContain('PT-1');
      expect(text).not.toContain('no-such-route');

      // The standard Node.js names, as the usual dashboards expect them.
      for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) expect(m.has(name), name).toBe(true);
      expect([...m.entries()].filter(([s]) => s.startsWith('meterline_link_up{') && s.includes('kind="mqtt"')).map(([, v]) => v)).toEqual([1]);
    } finally {
      abort.abort();
    }
    // The client gone, the gauge follows.
    await expect.poll(async () => samples((await f.http('GET', '/metrics')).body as string).get('meterline_sse_clients'), { timeout: 5000 }).toBe(0);
  });
});
