import { HttpError, InfluxDB, Point, type WriteApi } from '@influxdata/influxdb-client';
import type { Logger } from 'pino';
import { retryDelay } from '../domain/deadlines.js';
import type { AttemptOutcome, RelayState } from '../domain/relay.js';

/**
 * Writes meter readings, switch attempts and events to a time-series database over the InfluxDB v2 write API
 * (line protocol, ms precision): InfluxDB itself or VictoriaMetrics (`/api/v2/write`, no token). DESIGN.md §4.
 *
 * Why our own bounded queue in front of `WriteApi` rather than the client's retry buffer (read in
 * node_modules/@influxdata/influxdb-client, src/impl/WriteApiImpl.ts and RetryBuffer.ts, v1.35):
 * - the client sends every full batch at once, so against a *slow* server requests pile up in flight and the
 *   lines they carry are not counted against `maxBufferLines`;
 * - when its retry buffer overflows it drops down to 70 % of the limit, and it drops lines after `maxRetryTime`
 *   (180 s) even when there is room, so a five-minute outage loses data that would have fitted;
 * - it logs through its own global console logger.
 * Here one request is on the wire at a time, everything not yet written (queued + in flight) is at most
 * `maxBufferLines`, the oldest lines go first when it is full, and every loss is counted. `WriteApi` is used as
 * the transport: its own batching is disabled (`flushInterval: 0`, `batchSize` above ours, so it never sends a
 * batch behind our back and swallows the error) and `writeFailed` returns a rejected promise, which hands
 * every failure to us instead of its retry buffer.
 *
 * All `write*` methods are synchronous, never throw and never wait for the network: the control loop must not
 * slow down or stop because the database is down.
 *
 * Fields are numbers only: VictoriaMetrics keeps no text (a string field becomes a series of zeros) and a
 * number is what a graph or an alert can use. Identifiers and states are tags; states are also numeric fields
 * (`relay_code`, `outcome_code`, codes below) so that they can be graphed. Order ids are not written at all:
 * one tag value per order would grow the series without bound (they are in the store).
 */

/** `relay_code` of a reading: the README's table. Never renumbered: dashboards and stored points rely on them. */
export const RELAY_CODES: Readonly<Record<RelayState, number>> = { disconnected: 0, connected: 1, armed: 2 };

/** `outcome_code` of an attempt: the README's table. Never renumbered; a new outcome takes the next number. */
export const OUTCOME_CODES: Readonly<Record<AttemptOutcome, number>> = {
  ok: 0,
  timeout: 1,
  nack: 2,
  garbled: 3,
  verify_mismatch: 4,
  link_error: 5,
  auth_failed: 6,
  load_side_voltage: 7,
  interrupted: 8,
};

export interface TimeSeriesWriterOptions {
  /** Base URL, e.g. `http://127.0.0.1:8428` (VictoriaMetrics) or `http://influxdb:8086`. */
  url: string;
  /** InfluxDB API token; empty for VictoriaMetrics (no Authorization header is sent). */
  token: string;
  org: string;
  bucket: string;
  /** Lines per request. */
  batchSize: number;
  /** A partial batch is sent this long after its first line arrived. */
  flushIntervalMs: number;
  /**
   * Lines kept while the database is down or slow (queued + in flight, never more); beyond it the oldest
   * *waiting* lines are dropped (a batch already on the wire is not recalled: if it fails it is retried).
   */
  maxBufferLines: number;
  /**
   * Retries of one batch that the server *answered* with a retryable error (5xx, 429): after that many the batch
   * is dropped so that one bad batch cannot block the queue. A server that does not answer at all (refused,
   * timed out) costs no retries: its lines wait in the buffer, bounded by `maxBufferLines`.
   */
  maxRetries: number;
  logger: Logger;
  /** First backoff after a failed request (default 500 ms), doubling up to `retryMaxDelayMs` (default 30 s). */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** Give up on one HTTP request after this long (default 10 s). */
  requestTimeoutMs?: number;
}

export interface MeterReadingPoint {
  meterId: string;
  profileId: string;
  region: string;
  link: string;
  at: number;
  relay: RelayState;
  voltageV?: number | null;
  energyWh?: number | null;
  /** Where the reading came from: `read` (scheduled or live), `status_report`, `read_back`, … */
  source: string;
}

export interface SwitchAttemptPoint {
  meterId: string;
  orderId: string;
  profileId: string;
  region: string;
  link: string;
  protocol: string;
  action: string;
  /** An AttemptOutcome; one without a code is written without `outcome_code`. */
  outcome: string;
  attempt: number;
  latencyMs: number;
  at: number;
}

/** A field value of `writeEvent`: numbers are floats, `{ int }` an integer field, a boolean the integer 1 or 0. No text. */
export type EventFieldValue = number | boolean | { int: number };

export interface TimeSeriesWriterStats {
  /** Lines the server accepted. */
  written: number;
  /** Lines lost: buffer full, invalid values, rejected by the server, or still buffered at close. */
  dropped: number;
  /** Requests that failed (each retry counts). */
  failedFlushes: number;
  /** Lines waiting (queued + in flight). */
  buffered: number;
}

/** FIFO of lines with O(1) take from the head; compacts itself now and then. */
class LineQueue {
  private items: string[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(line: string): void {
    this.items.push(line);
  }

  take(n: number): string[] {
    const out = this.items.slice(this.head, this.head + n);
    this.head += out.length;
    this.compact();
    return out;
  }

  /** Put lines back at the head (a failed batch is still the oldest). */
  unshift(lines: string[]): void {
    this.items = lines.concat(this.items.slice(this.head));
    this.head = 0;
  }

  dropOldest(n: number): number {
    const k = Math.min(n, this.size);
    this.head += k;
    this.compact();
    return k;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

export class TimeSeriesWriter {
  private readonly writeApi: WriteApi;
  private readonly queue = new LineQueue();
  private readonly log: Logger;
  private inFlight: Promise<boolean> | undefined;
  private inFlightLines = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  /** No request before this time (backoff after a failure). */
  private retryAt = 0;
  private consecutiveFailures = 0;
  /** Server-answered retryable failures of the batch at the head of the queue. */
  private headBatchRetries = 0;
  private closed = false;
  private written = 0;
  private dropped = 0;
  private failedFlushes = 0;
  private lastDropLogAt = 0;

  constructor(private readonly options: TimeSeriesWriterOptions) {
    const { batchSize, maxBufferLines, flushIntervalMs, maxRetries } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`time-series writer: batchSize must be a positive integer (got ${batchSize})`);
    if (!Number.isInteger(maxBufferLines) || maxBufferLines < batchSize) {
      throw new Error(`time-series writer: maxBufferLines (${maxBufferLines}) must be an integer of at least batchSize (${batchSize})`);
    }
    if (!(flushIntervalMs > 0)) throw new Error(`time-series writer: flushIntervalMs must be positive (got ${flushIntervalMs})`);
    if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new Error(`time-series writer: maxRetries must be a non-negative integer (got ${maxRetries})`);
    this.log = options.logger.child({ component: 'time-series-writer', url: options.url, bucket: options.bucket });
    const influx = new InfluxDB({ url: options.url, token: options.token || undefined, timeout: options.requestTimeoutMs ?? 10_000 });
    this.writeApi = influx.getWriteApi(options.org, options.bucket, 'ms', {
      batchSize: batchSize + 1,
      maxBatchBytes: Number.MAX_SAFE_INTEGER,
      flushInterval: 0,
      maxRetries: 0,
      writeFailed: (error: Error) => Promise.reject(error),
    });
  }

  /**
   * One reading of one meter: `meter_reading` (VictoriaMetrics: `meter_reading_voltage_v{meter=…}`, …). The relay
   * state is the tag `relay` and the field `relay_code` (RELAY_CODES); `relay_closed` is 1 when connected.
   */
  writeReading(r: MeterReadingPoint): void {
    this.enqueue('meter_reading', () => {
      if (!Object.hasOwn(RELAY_CODES, r.relay)) throw new Error(`unknown relay state ${String(r.relay)}`);
      const code = RELAY_CODES[r.relay];
      const p = new Point('meter_reading')
        .tag('meter', r.meterId)
        .tag('profile', r.profileId)
        .tag('region', r.region)
        .tag('link', r.link)
        .tag('source', r.source)
        .tag('relay', r.relay)
        .intField('relay_code', code)
        .intField('relay_closed', r.relay === 'connected' ? 1 : 0)
        .timestamp(checkedTime(r.at));
      if (r.voltageV !== undefined && r.voltageV !== null) p.floatField('voltage_v', r.voltageV);
      if (r.energyWh !== undefined && r.energyWh !== null) p.floatField('energy_wh', r.energyWh);
      return p;
    });
  }

  /**
   * One try on the wire: `switch_attempt`, the meter a tag (series grow with the meters that were switched, as
   * readings do with the fleet), the outcome a tag and `outcome_code` (OUTCOME_CODES). The order id is not
   * written: a tag per order would grow without bound, and a text field is useless in VictoriaMetrics.
   */
  writeAttempt(a: SwitchAttemptPoint): void {
    this.enqueue('switch_attempt', () => {
      const p = new Point('switch_attempt')
        .tag('meter', a.meterId)
        .tag('profile', a.profileId)
        .tag('region', a.region)
        .tag('link', a.link)
        .tag('protocol', a.protocol)
        .tag('action', a.action)
        .tag('outcome', a.outcome)
        .floatField('latency_ms', a.latencyMs)
        .intField('attempt', a.attempt)
        .timestamp(checkedTime(a.at));
      return Object.hasOwn(OUTCOME_CODES, a.outcome) ? p.intField('outcome_code', OUTCOME_CODES[a.outcome as AttemptOutcome]) : p;
    });
  }

  /**
   * Anything else worth a timeline: alerts, work orders, audit exceptions. Text goes in tags; a field that is
   * not a number (or a boolean, written as 1/0) drops the point, counted and logged.
   */
  writeEvent(measurement: string, tags: Record<string, string>, fields: Record<string, EventFieldValue>, at: number): void {
    this.enqueue(measurement, () => {
      const p = new Point(measurement).timestamp(checkedTime(at));
      for (const [k, v] of Object.entries(tags)) p.tag(k, v);
      for (const [k, v] of Object.entries(fields)) {
        if (typeof v === 'number') p.floatField(k, v);
        else if (typeof v === 'boolean') p.intField(k, v ? 1 : 0);
        else if (typeof v === 'object' && v !== null && typeof v.int === 'number') p.intField(k, v.int);
        else throw new Error(`field ${k} is not a number (text belongs in a tag)`);
      }
      return p;
    });
  }

  /**
   * Sends everything buffered now, ignoring any backoff. Resolves when the buffer is empty or at the first
   * failed request (the lines stay buffered and are retried later); never rejects.
   */
  async flush(): Promise<void> {
    this.clearTimer();
    this.retryAt = 0;
    for (;;) {
      if (this.inFlight) {
        if (!(await this.inFlight)) return;
        continue;
      }
      if (this.queue.size === 0 || this.closed) return;
      if (!(await this.send())) return;
    }
  }

  /** Flushes once more and stops; whatever could not be delivered is counted as dropped. Never rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    this.clearTimer();
    if (this.inFlight) await this.inFlight;
    const left = this.queue.size;
    if (left > 0) {
      this.queue.dropOldest(left);
      this.dropped += left;
      this.log.warn({ lines: left }, 'time-series writer closed with lines not delivered; they are lost');
    }
    await this.writeApi.close().catch(() => undefined);
  }

  stats(): TimeSeriesWriterStats {
    return { written: this.written, dropped: this.dropped, failedFlushes: this.failedFlushes, buffered: this.queue.size + this.inFlightLines };
  }

  private enqueue(measurement: string, build: () => Point): void {
    if (this.closed) {
      this.countDropped(1, 'writer is closed');
      return;
    }
    let line: string | undefined;
    try {
      line = build().toLineProtocol(this.writeApi);
    } catch (err) {
      this.log.warn({ measurement, err: (err as Error).message }, 'time-series point dropped: invalid value');
    }
    if (!line) {
      this.dropped += 1;
      return;
    }
    if (this.queue.size + this.inFlightLines >= this.options.maxBufferLines) {
      // Make room by losing the oldest waiting line; if all are in flight, the new one is the one lost.
      if (this.queue.dropOldest(1) === 1) this.queue.push(line);
      this.countDropped(1, 'buffer full');
    } else {
      this.queue.push(line);
    }
    this.kick();
  }

  /** Decides when the next request goes: at once for a full batch, after flushIntervalMs, or after backoff. */
  private kick(): void {
    if (this.closed || this.inFlight || this.queue.size === 0) return;
    const now = Date.now();
    if (now < this.retryAt) this.arm(this.retryAt - now);
    else if (this.queue.size >= this.options.batchSize) {
      this.clearTimer();
      void this.send();
    } else this.arm(this.options.flushIntervalMs);
  }

  private arm(delayMs: number): void {
    const due = Date.now() + delayMs;
    if (this.timer && this.timerDue <= due) return;
    this.clearTimer();
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.inFlight && this.queue.size > 0 && !this.closed) void this.send();
    }, delayMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One request with at most batchSize lines. Resolves true when the server accepted it. */
  private send(): Promise<boolean> {
    const batch = this.queue.take(this.options.batchSize);
    this.inFlightLines = batch.length;
    const attempt = (async (): Promise<boolean> => {
      try {
        this.writeApi.writeRecords(batch);
        await this.writeApi.flush();
        this.written += batch.length;
        if (this.consecutiveFailures > 0) this.log.info({ afterFailures: this.consecutiveFailures }, 'time-series database reachable again');
        this.consecutiveFailures = 0;
        this.headBatchRetries = 0;
        return true;
      } catch (err) {
        this.onFailure(batch, err);
        return false;
      } finally {
        this.inFlightLines = 0;
      }
    })();
    this.inFlight = attempt;
    void attempt.then(() => {
      this.inFlight = undefined;
      this.kick();
    });
    return attempt;
  }

  private onFailure(batch: string[], err: unknown): void {
    this.failedFlushes += 1;
    this.consecutiveFailures += 1;
    const status = err instanceof HttpError ? err.statusCode : undefined;
    const detail = err instanceof HttpError ? `HTTP ${err.statusCode}: ${(err.body ?? err.message).slice(0, 300)}` : (err as Error).message;
    // A 4xx (other than 408/429) means the lines themselves are refused: retrying cannot help.
    const refused = status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
    const answeredRetryable = status !== undefined && !refused;
    if (answeredRetryable) this.headBatchRetries += 1;
    if (refused || this.headBatchRetries > this.options.maxRetries) {
      this.dropped += batch.length;
      this.headBatchRetries = 0;
      this.log.error({ lines: batch.length, error: detail, firstLine: batch[0]?.slice(0, 200) }, 'time-series batch dropped: the server refused it');
    } else {
      this.queue.unshift(batch);
      const over = this.queue.size - this.options.maxBufferLines;
      if (over > 0) this.countDropped(this.queue.dropOldest(over), 'buffer full');
    }
    const delay = retryDelay(this.consecutiveFailures, this.options.retryBaseDelayMs ?? 500, this.options.retryMaxDelayMs ?? 30_000, Math.random());
    this.retryAt = Date.now() + delay;
    const logLine = { error: detail, consecutiveFailures: this.consecutiveFailures, retryInMs: delay, buffered: this.queue.size };
    // Every failure while it is new, then one line in ten: an outage must not flood the log.
    if (this.consecutiveFailures <= 3 || this.consecutiveFailures % 10 === 0) this.log.warn(logLine, 'time-series write failed; will retry');
  }

  private countDropped(n: number, why: string): void {
    if (n <= 0) return;
    this.dropped += n;
    const now = Date.now();
    if (now - this.lastDropLogAt >= 10_000) {
      this.lastDropLogAt = now;
      this.log.warn({ why, droppedTotal: this.dropped, maxBufferLines: this.options.maxBufferLines }, 'time-series lines dropped');
    }
  }
}

function checkedTime(at: number): number {
  if (!Number.isFinite(at)) throw new Error(`invalid timestamp ${at}`);
  return Math.floor(at);
}
