import { describe, expect, it } from 'vitest';
import { register as globalRegistry } from 'prom-client';
import type { LinkHealth } from '../../drivers/driver.js';
import { zeroLinkCounters } from '../../drivers/link-health.js';
import { createGatewayMetrics, METRICS_TABLE, type GatewayMetricsProviders, type SuccessRateSample } from '../../src/integrations/metrics.js';

const rates: SuccessRateSample[] = [
  { scope: 'profile', key: 'mtr-em500-modbus-fw1.4', action: 'reconnect', kind: 'first_attempt', windowMinutes: 15, rate: 0.9, samples: 40 },
  { scope: 'profile', key: 'mtr-em500-modbus-fw1.4', action: 'reconnect', kind: 'first_attempt', windowMinutes: 60, rate: 0.95, samples: 160 },
  { scope: 'link', key: 'rtu-bus-1', action: 'disconnect', kind: 'final', windowMinutes: 15, rate: 1, samples: 12 },
];

const links: LinkHealth[] = [
  { link: 'rtu-bus-1', kind: 'modbus-rtu', state: 'down', since: 0, lastError: { at: 0, message: 'serial port /dev/ttyUSB0 closed' }, counters: { ...zeroLinkCounters(), crcErrors: 4, timeouts: 2, exceptions: { '0x02': 1 }, reopens: 1 } },
  { link: 'mqtt://broker:1883', kind: 'mqtt', state: 'up', since: 0, lastError: null, counters: { ...zeroLinkCounters(), unknownCorrelationIds: 3, reconnects: 2 } },
];

function providers(over: Partial<GatewayMetricsProviders> = {}): GatewayMetricsProviders & { calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const count = (name: string): void => {
    calls[name] = (calls[name] ?? 0) + 1;
  };
  return {
    calls,
    queueDepth: async () => (count('queueDepth'), { queued: 3, in_flight: 1 }),
    workOrdersByStatus: async () => (count('workOrdersByStatus'), { open: 2, assigned: 1 }),
    mostUrgentReconnectSecondsLeft: async () => (count('mostUrgent'), 5400),
    successRates: async () => (count('successRates'), rates),
    openCircuitBreakers: async () => (count('openCircuitBreakers'), 1),
    timeSeries: () => (count('timeSeries'), { dropped: 7, buffered: 12 }),
    singletonDutyHeld: () => (count('singletonDutyHeld'), true),
    dlmsPush: () => (count('dlmsPush'), { delivered: 3, dropped: { 'unknown-system-title': 1, 'bad-tag': 2, replayed: 0 } }),
    links: () => (count('links'), links),
    brokerConnected: () => (count('brokerConnected'), true),
    auditAnchorAgeSeconds: () => (count('auditAnchorAgeSeconds'), 42),
    sqliteThreadRestarts: () => (count('sqliteThreadRestarts'), 0),
    ...over,
  };
}

/** Value of one sample line in the exposition text, e.g. `meterline_queue_depth{state="queued"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (line === undefined) return undefined;
  const v = line.slice(series.length + 1);
  return v === '+Inf' ? Number.POSITIVE_INFINITY : v === '-Inf' ? Number.NEGATIVE_INFINITY : Number(v);
}

describe('gateway metrics (Prometheus)', () => {
  it('every metric the registry exposes is in METRICS_TABLE, and every row of METRICS_TABLE is exposed', async () => {
    const m = createGatewayMetrics(providers());
    const exposed = (await m.registry.getMetricsAsJSON()).map((x) => ({ name: x.name, type: String(x.type) }));
    const rows = METRICS_TABLE;
    const covers = (row: (typeof rows)[number], name: string): boolean => (row.name.endsWith('*') ? name.startsWith(row.name.slice(0, -1)) : row.name === name);
    for (const metric of exposed) {
      const row = rows.find((r) => covers(r, metric.name));
      expect(row, `${metric.name} is exposed but not in METRICS_TABLE`).toBeDefined();
      if (row && row.type !== 'default') expect(row.type, metric.name).toBe(metric.type);
    }
    for (const row of rows) expect(exposed.some((e) => covers(row, e.name)), `${row.name} is in METRICS_TABLE but not exposed`).toBe(true);
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
  });

  it('DLMS push outcomes are the listener\'s counters as they stand, reasons in snake case, none without a listener', async () => {
    let counts = { delivered: 3, dropped: { 'unknown-system-title': 1, 'bad-tag': 2, replayed: 0 } as Record<string, number> };
    const m = createGatewayMetrics(providers({ dlmsPush: () => counts }));
    let text = await m.render();
    expect(sample(text, 'meterline_dlms_push_total{outcome="delivered"}')).toBe(3);
    expect(sample(text, 'meterline_dlms_push_total{outcome="unknown_system_title"}')).toBe(1);
    expect(sample(text, 'meterline_dlms_push_total{outcome="bad_tag"}')).toBe(2);
    expect(sample(text, 'meterline_dlms_push_total{outcome="replayed"}')).toBe(0);
    counts = { delivered: 5, dropped: { 'unknown-system-title': 1, 'bad-tag': 4, replayed: 1 } };
    text = await m.render();
    expect(sample(text, 'meterline_dlms_push_total{outcome="delivered"}')).toBe(5);
    expect(sample(text, 'meterline_dlms_push_total{outcome="bad_tag"}')).toBe(4);
    const none = await createGatewayMetrics(providers({ dlmsPush: () => undefined })).render();
    expect(none).toContain('# TYPE meterline_dlms_push_total counter');
    expect(none).not.toMatch(/^meterline_dlms_push_total\{/m);
  });

  it("the SQLite store thread's restarts are the store's count as it stands; absent without a store thread", async () => {
    let restarts = 0;
    const m = createGatewayMetrics(providers({ sqliteThreadRestarts: () => restarts }));
    expect(sample(await m.render(), 'meterline_sqlite_thread_restarts_total')).toBe(0);
    restarts = 2;
    expect(sample(await m.render(), 'meterline_sqlite_thread_restarts_total')).toBe(2);
    expect(sample(await m.render(), 'meterline_sqlite_thread_restarts_total')).toBe(2); // a scrape does not add to it
    const none = await createGatewayMetrics(providers({ sqliteThreadRestarts: () => undefined })).render();
    expect(none).toContain('# TYPE meterline_sqlite_thread_restarts_total counter');
    expect(none).not.toMatch(/^meterline_sqlite_thread_restarts_total /m);
  });

  it('each link shows as up or down and with its counters as the driver has them, exceptions by code', async () => {
    let now = links;
    const m = createGatewayMetrics(providers({ links: () => now }));
    let text = await m.render();
    expect(sample(text, 'meterline_link_up{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(0);
    expect(sample(text, 'meterline_link_up{link="mqtt://broker:1883",kind="mqtt"}')).toBe(1);
    expect(sample(text, 'meterline_link_crc_errors_total{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(4);
    expect(sample(text, 'meterline_link_timeouts_total{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(2);
    expect(sample(text, 'meterline_link_exceptions_total{link="rtu-bus-1",kind="modbus-rtu",code="0x02"}')).toBe(1);
    expect(sample(text, 'meterline_link_reopens_total{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(1);
    expect(sample(text, 'meterline_link_unknown_correlation_ids_total{link="mqtt://broker:1883",kind="mqtt"}')).toBe(3);
    expect(sample(text, 'meterline_link_reconnects_total{link="mqtt://broker:1883",kind="mqtt"}')).toBe(2);
    now = [{ ...links[0]!, state: 'up', counters: { ...links[0]!.counters, crcErrors: 9, exceptions: { '0x02': 1, '0x04': 2 }, reopens: 2 } }];
    text = await m.render();
    expect(sample(text, 'meterline_link_up{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(1);
    expect(sample(text, 'meterline_link_crc_errors_total{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(9);
    expect(sample(text, 'meterline_link_exceptions_total{link="rtu-bus-1",kind="modbus-rtu",code="0x04"}')).toBe(2);
    expect(sample(text, 'meterline_link_reopens_total{link="rtu-bus-1",kind="modbus-rtu"}')).toBe(2);
    expect(text).not.toContain('link="mqtt://broker:1883"'); // a link no driver keeps any more is gone
  });

  it('labels in METRICS_TABLE are the labels the metrics carry', async () => {
    const m = createGatewayMetrics(providers());
    m.attempts.inc({ protocol: 'mqtt', action: 'reconnect', outcome: 'ok' });
    m.attemptLatency.observe({ protocol: 'mqtt', action: 'reconnect' }, 0.2);
    m.ordersFinished.inc({ action: 'reconnect', state: 'done' });
    m.alerts.inc({ kind: 'success_rate_low' });
    m.profileMismatches.inc({ profile: 'p', field: 'remote_reconnect' });
    m.authFailures.inc({ protocol: 'dlms', link: 'rs485-a' });
    m.sseClientsDropped.inc({ reason: 'stalled' });
    m.httpRequestDuration.observe({ method: 'GET', route: '/v1/orders/:orderId', status: '200' }, 0.01);
    await m.render();
    let checked = 0;
    for (const metric of await m.registry.getMetricsAsJSON()) {
      const row = METRICS_TABLE.find((r) => r.name === metric.name);
      if (!row || metric.values.length === 0) continue; // default metrics; a labelled counter never incremented
      checked += 1;
      const labels = new Set(metric.values.flatMap((v) => Object.keys(v.labels)).filter((l) => l !== 'le'));
      expect([...labels].sort(), metric.name).toEqual([...row.labels].sort());
    }
    expect(checked).toBe(METRICS_TABLE.filter((r) => r.type !== 'default').length - 1); // all but provider errors
  });

  it('gauges show what the providers answer at scrape time', async () => {
    let depth: Partial<Record<'accepted' | 'held' | 'queued' | 'in_flight' | 'escalated', number>> = { queued: 3, in_flight: 1 };
    const p = providers({ queueDepth: async () => depth });
    const m = createGatewayMetrics(p);
    let text = await m.render();
    expect(sample(text, 'meterline_queue_depth{state="queued"}')).toBe(3);
    expect(sample(text, 'meterline_queue_depth{state="in_flight"}')).toBe(1);
    expect(sample(text, 'meterline_work_orders{status="open"}')).toBe(2);
    expect(sample(text, 'meterline_queue_depth{state="escalated"}')).toBe(0); // an open state with no order is 0, not absent
    expect(text).not.toMatch(/^meterline_queue_depth\{state="(done|failed|cancelled|superseded|refused|armed|done_by_field)"\}/m);
    expect(sample(text, 'meterline_work_orders{status="open"}')).toBe(2);
    expect(sample(text, 'meterline_most_urgent_reconnect_remaining_seconds')).toBe(5400);
    // One series per window the monitor computes.
    expect(sample(text, 'meterline_success_ratio{scope="profile",key="mtr-em500-modbus-fw1.4",action="reconnect",kind="first_attempt",window="15m"}')).toBe(0.9);
    expect(sample(text, 'meterline_success_ratio{scope="profile",key="mtr-em500-modbus-fw1.4",action="reconnect",kind="first_attempt",window="60m"}')).toBe(0.95);
    expect(sample(text, 'meterline_success_samples{scope="profile",key="mtr-em500-modbus-fw1.4",action="reconnect",kind="first_attempt",window="60m"}')).toBe(160);
    expect(sample(text, 'meterline_success_samples{scope="link",key="rtu-bus-1",action="disconnect",kind="final",window="15m"}')).toBe(12);
    expect(sample(text, 'meterline_circuit_breakers_open')).toBe(1);
    expect(text).toContain('# TYPE meterline_timeseries_dropped_points_total counter');
    expect(sample(text, 'meterline_timeseries_dropped_points_total')).toBe(7);
    expect(sample(text, 'meterline_timeseries_buffered_points')).toBe(12);
    expect(sample(text, 'meterline_broker_connected')).toBe(1);
    expect(sample(text, 'meterline_audit_anchor_age_seconds')).toBe(42);
    expect(p.calls.successRates).toBe(1); // one provider call feeds both success gauges

    depth = { queued: 5 }; // a state that emptied reads 0 instead of keeping its last value
    text = await m.render();
    expect(sample(text, 'meterline_queue_depth{state="queued"}')).toBe(5);
    expect(sample(text, 'meterline_queue_depth{state="in_flight"}')).toBe(0);
    expect(p.calls.successRates).toBe(2);
  });

  it('counters and the latency histogram (seconds, 0.05 s to 60 s buckets) count what the control loop reports', async () => {
    const m = createGatewayMetrics(providers());
    m.attempts.inc({ protocol: 'dlms', action: 'disconnect', outcome: 'timeout' });
    m.attempts.inc({ protocol: 'dlms', action: 'disconnect', outcome: 'timeout' });
    m.attemptLatency.observe({ protocol: 'dlms', action: 'disconnect' }, 0.04);
    m.attemptLatency.observe({ protocol: 'dlms', action: 'disconnect' }, 45);
    m.ordersFinished.inc({ action: 'disconnect', state: 'failed' });
    m.alerts.inc({ kind: 'circuit_breaker_open' });
    const text = await m.render();
    expect(sample(text, 'meterline_switch_attempts_total{protocol="dlms",action="disconnect",outcome="timeout"}')).toBe(2);
    expect(sample(text, 'meterline_switch_attempt_duration_seconds_bucket{le="0.05",protocol="dlms",action="disconnect"}')).toBe(1);
    expect(sample(text, 'meterline_switch_attempt_duration_seconds_bucket{le="30",protocol="dlms",action="disconnect"}')).toBe(1);
    expect(sample(text, 'meterline_switch_attempt_duration_seconds_bucket{le="60",protocol="dlms",action="disconnect"}')).toBe(2);
    expect(sample(text, 'meterline_orders_finished_total{action="disconnect",state="failed"}')).toBe(1);
    expect(sample(text, 'meterline_alerts_total{kind="circuit_breaker_open"}')).toBe(1);
    expect(m.contentType).toContain('text/plain');
  });

  it('standard process and Node.js metrics carry their usual names, without the gateway prefix', async () => {
    const text = await createGatewayMetrics(providers()).render();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(text, name).toMatch(new RegExp(`^${name}(\\{| )`, 'm'));
    }
    expect(text).not.toContain('meterline_process_');
    expect(text).not.toContain('meterline_nodejs_');
    expect(text).not.toMatch(/^nodejs_active_\w+_total/m); // gauges named _total, which promtool refuses
  });

  it('no reconnect open reads +Inf (not 0, which would look due now); a failing provider does not break the page', async () => {
    const m = createGatewayMetrics(
      providers({
        mostUrgentReconnectSecondsLeft: async () => null,
        brokerConnected: () => undefined,
        auditAnchorAgeSeconds: () => null,
        queueDepth: async () => {
          throw new Error('store is locked');
        },
        openCircuitBreakers: async () => {
          throw new Error('store is locked');
        },
      }),
    );
    const text = await m.render();
    expect(sample(text, 'meterline_most_urgent_reconnect_remaining_seconds')).toBe(Number.POSITIVE_INFINITY);
    expect(text).not.toMatch(/^meterline_broker_connected /m); // no MQTT link: absent
    expect(sample(text, 'meterline_audit_anchor_age_seconds')).toBeNaN(); // anchoring off
    expect(text).not.toMatch(/^meterline_queue_depth\{/m);
    expect(sample(text, 'meterline_circuit_breakers_open')).toBeNaN();
    expect(sample(text, 'meterline_metrics_provider_errors_total{provider="queueDepth"}')).toBe(1);
    expect(sample(text, 'meterline_work_orders{status="open"}')).toBe(2);
  });

  it('uses its own registry: two gateways in one process do not clash and the global registry stays empty', async () => {
    const a = createGatewayMetrics(providers());
    const b = createGatewayMetrics(providers());
    a.alerts.inc({ kind: 'x' });
    expect(sample(await b.render(), 'meterline_alerts_total{kind="x"}')).toBeUndefined();
    expect(await globalRegistry.getMetricsAsJSON()).toEqual([]);
  });
});
