import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { OUTCOME_CODES, RELAY_CODES, TimeSeriesWriter, type TimeSeriesWriterOptions } from '../../src/integrations/time-series-writer.js';
import { startVictoriaMetrics, type VictoriaMetrics } from '../harness/victoria-metrics.js';

const logger = pino({ level: 'silent' });
let vm: VictoriaMetrics;

beforeAll(async () => {
  vm = await startVictoriaMetrics();
});
afterAll(async () => {
  await vm?.stop();
});

function writerFor(url: string, over: Partial<TimeSeriesWriterOptions> = {}): TimeSeriesWriter {
  return new TimeSeriesWriter({
    url,
    token: '',
    org: 'meterline',
    bucket: 'meterline',
    batchSize: 5,
    flushIntervalMs: 50,
    maxBufferLines: 20,
    maxRetries: 3,
    logger,
    retryBaseDelayMs: 20,
    retryMaxDelayMs: 100,
    ...over,
  });
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('TimeSeriesWriter against a real VictoriaMetrics', () => {
  it('writes readings, attempts and events that can be queried back under the names VictoriaMetrics derives', async () => {
    const w = writerFor(vm.url);
    const at = Date.now();
    w.writeReading({ meterId: 'M-1', profileId: 'mqtt-a', region: 'north', link: 'broker-1', at, relay: 'connected', voltageV: 230.5, energyWh: 1234, source: 'read' });
    w.writeReading({ meterId: 'M-2', profileId: 'mqtt-a', region: 'north', link: 'broker-1', at, relay: 'armed', source: 'read_back' });
    w.writeAttempt({ meterId: 'M-1', orderId: 'ord_1', profileId: 'mqtt-a', region: 'north', link: 'broker-1', protocol: 'mqtt', action: 'reconnect', outcome: 'ok', attempt: 1, latencyMs: 44, at });
    w.writeEvent('meterline_alert', { kind: 'success_rate_low', scope: 'profile', note: 'below 95 %' }, { rate: 0.91, open: true, count: { int: 3 } }, at);
    await w.flush();
    expect(w.stats()).toEqual({ written: 4, dropped: 0, failedFlushes: 0, buffered: 0 });

    const voltage = await vm.query('meter_reading_voltage_v{meter="M-1"}', { expectSeries: 1 });
    expect(voltage[0]?.metric).toEqual({ __name__: 'meter_reading_voltage_v', meter: 'M-1', profile: 'mqtt-a', region: 'north', link: 'broker-1', source: 'read', relay: 'connected' });
    expect(Number(voltage[0]?.value[1])).toBe(230.5);

    const closed = await vm.export('{__name__="meter_reading_relay_closed",region="north"}', { expectSeries: 2 });
    expect(Object.fromEntries(closed.map((s) => [s.metric.meter, s.values]))).toEqual({ 'M-1': [1], 'M-2': [0] });
    expect(closed[0]?.timestamps).toEqual([at]);
    // A reading without voltage writes no voltage series for that meter.
    expect(await vm.query('meter_reading_voltage_v{meter="M-2"}')).toEqual([]);

    const latency = await vm.query('switch_attempt_latency_ms{protocol="mqtt",action="reconnect",outcome="ok"}', { expectSeries: 1 });
    expect(Number(latency[0]?.value[1])).toBe(44);
    expect(latency[0]?.metric).toMatchObject({ meter: 'M-1' }); // the meter is a tag; the order id is not written
    expect(latency[0]?.metric).not.toHaveProperty('order_id');
    const attemptNo = await vm.query('switch_attempt_attempt{link="broker-1"}', { expectSeries: 1 });
    expect(Number(attemptNo[0]?.value[1])).toBe(1);

    const alert = await vm.query('meterline_alert_rate{kind="success_rate_low"}', { expectSeries: 1 });
    expect(Number(alert[0]?.value[1])).toBe(0.91);
    expect(Number((await vm.query('meterline_alert_open', { expectSeries: 1 }))[0]?.value[1])).toBe(1);

    // The relay state is a label and a number; the outcome too.
    const relay = await vm.query('meter_reading_relay_code{region="north"}', { expectSeries: 2 });
    expect(Object.fromEntries(relay.map((s) => [s.metric.meter, [s.metric.relay, Number(s.value[1])]]))).toEqual({ 'M-1': ['connected', 1], 'M-2': ['armed', 2] });
    expect(Number((await vm.query('meter_reading_relay_code{meter="M-2",relay="armed"}', { expectSeries: 1 }))[0]?.value[1])).toBe(RELAY_CODES.armed);
    expect(Number((await vm.query('switch_attempt_outcome_code{meter="M-1"}', { expectSeries: 1 }))[0]?.value[1])).toBe(OUTCOME_CODES.ok);

    // VictoriaMetrics keeps no text: a string field would be a series of zeros. Every series is a number field.
    const all = await vm.export('{__name__=~"meter_reading_.*|switch_attempt_.*|meterline_alert_.*"}', { expectSeries: 11 });
    expect([...new Set(all.map((s) => s.metric.__name__))].sort()).toEqual([
      'meter_reading_energy_wh',
      'meter_reading_relay_closed',
      'meter_reading_relay_code',
      'meter_reading_voltage_v',
      'meterline_alert_count',
      'meterline_alert_open',
      'meterline_alert_rate',
      'switch_attempt_attempt',
      'switch_attempt_latency_ms',
      'switch_attempt_outcome_code',
    ]);
    expect(all.find((s) => s.metric.__name__ === 'meterline_alert_rate')?.metric.note).toBe('below 95 %'); // text as a tag
    await w.close();
  });

  it("the README's table of relay and outcome codes is the writer's", () => {
    const readme = readFileSync('README.md', 'utf8');
    for (const [state, code] of Object.entries(RELAY_CODES)) expect(readme, state).toContain(`| \`relay_code\` | ${code} | \`${state}\``);
    for (const [outcome, code] of Object.entries(OUTCOME_CODES)) expect(readme, outcome).toContain(`| \`outcome_code\` | ${code} | \`${outcome}\` |`);
  });

  it('keeps accepting points while the server is down, keeps at most maxBufferLines (oldest waiting lines dropped, counted) and delivers them when it is back', async () => {
    const w = writerFor(vm.url, { batchSize: 5, maxBufferLines: 20 });
    await vm.stop();
    try {
      const base = Date.now();
      const started = performance.now();
      for (let i = 0; i < 50; i++) {
        w.writeReading({ meterId: 'M-down', profileId: 'p', region: 'r', link: 'l', at: base + i, relay: 'connected', energyWh: i, source: 'read' });
      }
      expect(performance.now() - started).toBeLessThan(100); // never waits for the network
      expect(w.stats()).toMatchObject({ written: 0, dropped: 30, buffered: 20 });

      await expect(w.flush()).resolves.toBeUndefined(); // fails, does not throw
      await until(() => w.stats().failedFlushes >= 3); // retried with backoff while down
      expect(w.stats()).toMatchObject({ written: 0, dropped: 30, buffered: 20 });
    } finally {
      await vm.start();
    }
    // Delivered by the writer's own retry, without a flush from the caller.
    await until(() => w.stats().buffered === 0);
    expect(w.stats()).toMatchObject({ written: 20, dropped: 30, buffered: 0 });
    const series = await vm.export('{__name__="meter_reading_energy_wh",meter="M-down"}', { expectPoints: 20 });
    // The first batch (0-4) was already on the wire when the buffer filled, so the oldest *waiting* lines
    // (5-34) were the ones dropped; the newest 15 survived with it.
    const expected = [0, 1, 2, 3, 4, ...Array.from({ length: 15 }, (_, i) => 35 + i)];
    expect(series[0]?.values.slice().sort((a, b) => a - b)).toEqual(expected);
    await w.close();
  });

  it('a point with an invalid value is dropped and counted, never thrown at the caller', async () => {
    const w = writerFor(vm.url);
    expect(() => w.writeReading({ meterId: 'M-x', profileId: 'p', region: 'r', link: 'l', at: Date.now(), relay: 'connected', voltageV: Number.NaN, source: 'read' })).not.toThrow();
    expect(() => w.writeAttempt({ meterId: 'M-x', orderId: 'o', profileId: 'p', region: 'r', link: 'l', protocol: 'mqtt', action: 'disconnect', outcome: 'ok', attempt: 1, latencyMs: 5, at: Number.NaN })).not.toThrow();
    // Text in a field (from untyped code): refused, not written as a useless series.
    expect(() => w.writeEvent('meterline_alert', {}, { note: 'text' as unknown as number }, Date.now())).not.toThrow();
    expect(w.stats()).toMatchObject({ dropped: 3, buffered: 0 });
    await w.close();
    w.writeEvent('meterline_alert', {}, { x: 1 }, Date.now()); // after close: counted, not thrown
    expect(w.stats().dropped).toBe(4);
  });
});

describe('TimeSeriesWriter against a scripted server (hanging, refusing)', () => {
  let server: Server;
  let url: string;
  const requests: { req: IncomingMessage; body: string }[] = [];
  /** What the server does with the next request: never answer, or answer with this status. */
  let answer: 'hang' | number = 'hang';

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        requests.push({ req, body });
        if (answer !== 'hang') res.writeHead(answer, { 'content-type': 'application/json' }).end(answer === 204 ? undefined : '{"error":"scripted"}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('has one request on the wire at a time, stays within its buffer and sends no Authorization header without a token', async () => {
    const w = writerFor(url, { batchSize: 10, maxBufferLines: 40, requestTimeoutMs: 300 });
    for (let i = 0; i < 200; i++) w.writeReading({ meterId: `M-${i}`, profileId: 'p', region: 'r', link: 'l', at: Date.now(), relay: 'disconnected', source: 'read' });
    await new Promise((r) => setTimeout(r, 150));
    expect(requests.length).toBe(1);
    expect(requests[0]?.req.headers.authorization).toBeUndefined();
    expect(requests[0]?.req.url).toBe('/api/v2/write?org=meterline&bucket=meterline&precision=ms');
    expect(w.stats()).toMatchObject({ buffered: 40, dropped: 160, written: 0 });
    await until(() => w.stats().failedFlushes >= 1, 2000); // the request timed out
    expect(w.stats().buffered).toBe(40);
    await w.close();
    expect(w.stats()).toMatchObject({ buffered: 0, dropped: 200 });
  });

  it('a batch the server refuses (HTTP 400) is dropped at once; one answered with 503 is retried maxRetries times, then dropped', async () => {
    requests.length = 0;
    answer = 400;
    const w = writerFor(url, { batchSize: 1, maxBufferLines: 10, maxRetries: 2 });
    w.writeEvent('meterline_bad', {}, { v: 1 }, 1);
    await until(() => w.stats().buffered === 0);
    expect(w.stats()).toMatchObject({ written: 0, dropped: 1, failedFlushes: 1 });
    expect(requests).toHaveLength(1);

    answer = 503;
    w.writeEvent('meterline_overloaded', {}, { v: 2 }, 2);
    await until(() => w.stats().buffered === 0);
    expect(w.stats()).toMatchObject({ written: 0, dropped: 2, failedFlushes: 4 }); // first try + 2 retries
    expect(requests.slice(1).map((r) => r.body)).toEqual(Array(3).fill('meterline_overloaded v=2 2'));

    answer = 204;
    w.writeEvent('meterline_fine', {}, { v: 3 }, 3);
    await w.flush();
    expect(w.stats()).toMatchObject({ written: 1, dropped: 2, buffered: 0 });
    await w.close();
  });

  it('writes line protocol that InfluxDB 2 and VictoriaMetrics read alike: numeric fields only, ints as ints, states as tags', async () => {
    requests.length = 0;
    answer = 204;
    const w = writerFor(url, { batchSize: 10 });
    w.writeReading({ meterId: 'M 1', profileId: 'p', region: 'r', link: 'l', at: 1000, relay: 'disconnected', voltageV: 0, source: 'read' });
    w.writeAttempt({ meterId: 'M 1', orderId: 'ord_9', profileId: 'p', region: 'r', link: 'l', protocol: 'mqtt', action: 'disconnect', outcome: 'verify_mismatch', attempt: 2, latencyMs: 12.5, at: 1001 });
    await w.flush();
    expect(requests.map((r) => r.body)).toEqual([
      'meter_reading,link=l,meter=M\\ 1,profile=p,region=r,relay=disconnected,source=read relay_closed=0i,relay_code=0i,voltage_v=0 1000\n' +
        'switch_attempt,action=disconnect,link=l,meter=M\\ 1,outcome=verify_mismatch,profile=p,protocol=mqtt,region=r attempt=2i,latency_ms=12.5,outcome_code=4i 1001',
    ]);
    expect(requests[0]?.body).not.toContain('"'); // no string field anywhere
    expect(requests[0]?.body).not.toContain('ord_9');
    await w.close();
  });
});
