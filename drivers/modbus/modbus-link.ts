import type { Logger } from 'pino';
import { countException, type LinkStateLog } from '../link-health.js';
import type { TransactionPriority } from './bus-scheduler.js';
import { hex2 } from './modbus-exceptions.js';
import { parseResponse, type ParsedResponse } from './modbus-pdu.js';
import { toHex } from './rtu-frame.js';

/**
 * What the driver needs from a Modbus link (an RTU bus or a TCP connection), and the transaction loop both
 * share: send a request, take a well-formed answer, re-send on a corrupted one up to `frameRetries` times.
 * Only corruption is retried: a request with no answer is reported as a timeout (a relay command that
 * vanished is the control loop's to judge, after a read-back).
 */

/** One frame on the wire and what came back. */
export type FrameTry =
  | { kind: 'reply'; pdu: Buffer; raw: Buffer }
  /** Bytes came back that are no valid answer: CRC error (`crc`), wrong unit or function, incomplete, noise. */
  | { kind: 'corrupt'; crc: boolean; reason: string; raw: Buffer }
  | { kind: 'timeout'; raw?: Buffer }
  | { kind: 'link_error'; detail: string };

export type TransactionResult =
  | { ok: true; response: Exclude<ParsedResponse, { kind: 'malformed' }>; evidence: string; latencyMs: number; tries: number }
  | { ok: false; outcome: 'timeout' | 'garbled' | 'link_error'; detail: string; evidence?: string; latencyMs: number };

/**
 * Per-link counters (exposed by the driver per bus / connection: `linkStatus()` in full, `linkHealth()` mapped to
 * the counters every driver shows).
 */
export interface ModbusLinkCounters {
  transactions: number;
  /** Frames written, retries included. */
  framesSent: number;
  replies: number;
  crcErrors: number;
  /** Answers that were not CRC errors but still no valid answer (wrong unit / function, bad length, noise). */
  garbledFrames: number;
  /** Frames re-sent after a corrupted answer. */
  retries: number;
  timeouts: number;
  /** Exception responses (MB AP §7), by code in hex ("0x02"). */
  exceptions: Record<string, number>;
  linkErrors: number;
  /** Answers whose MBAP transaction id no request was waiting for (a late answer to a request given up on): discarded. */
  unmatchedReplies: number;
  /** Bytes that arrived while no transaction was waiting (late answers, noise): discarded. */
  strayBytes: number;
  /** Bytes written and received on the line (frames / ADUs), for throughput against the line's capacity. */
  bytesOut: number;
  bytesIn: number;
  /** Times the port / connection was (re)opened. */
  opens: number;
  /** Times it was lost. */
  losses: number;
}

export const newModbusLinkCounters = (): ModbusLinkCounters => ({
  transactions: 0,
  framesSent: 0,
  replies: 0,
  crcErrors: 0,
  garbledFrames: 0,
  retries: 0,
  timeouts: 0,
  exceptions: {},
  linkErrors: 0,
  unmatchedReplies: 0,
  strayBytes: 0,
  bytesOut: 0,
  bytesIn: 0,
  opens: 0,
  losses: 0,
});

export interface TransactionRequest {
  unitId: number;
  pdu: Buffer;
  priority: TransactionPriority;
  /** Response timeout per frame, from the moment the request has been written. */
  timeoutMs: number;
  /** meterId, orderId, attempt for log lines. */
  log: Logger;
}

export interface ModbusLink {
  readonly name: string;
  readonly kind: 'rtu' | 'tcp';
  readonly counters: ModbusLinkCounters;
  /** Up or down since when, and the last failure in words (GET /v1/links). */
  readonly state: LinkStateLog;
  start(): Promise<void>;
  stop(): Promise<void>;
  isUp(): boolean;
  /** Requests waiting for the link. */
  readonly queued: number;
  transact(request: TransactionRequest): Promise<TransactionResult>;
}

/**
 * The retry loop: `tryOnce` puts one frame on the wire (the caller holds the bus for all tries). A failure is the
 * link's last error; an exception is the device's answer, counted by code.
 */
export async function runTransaction(
  request: TransactionRequest,
  frameRetries: number,
  link: Pick<ModbusLink, 'counters' | 'state'>,
  tryOnce: () => Promise<FrameTry>,
): Promise<TransactionResult> {
  const result = await transactionTries(request, frameRetries, link.counters, tryOnce);
  if (!result.ok) link.state.failed(`unit ${request.unitId}: ${result.detail}`);
  return result;
}

async function transactionTries(request: TransactionRequest, frameRetries: number, counters: ModbusLinkCounters, tryOnce: () => Promise<FrameTry>): Promise<TransactionResult> {
  counters.transactions++;
  const started = performance.now();
  const latency = () => Math.round((performance.now() - started) * 10) / 10;
  const bad: string[] = [];
  let lastReason = '';
  let crcOnly = true;
  for (let tryNo = 0; ; tryNo++) {
    counters.framesSent++;
    const t = await tryOnce();
    if (t.kind === 'link_error') {
      counters.linkErrors++;
      return { ok: false, outcome: 'link_error', detail: t.detail, latencyMs: latency(), ...(bad.length ? { evidence: bad.join(' ') } : {}) };
    }
    if (t.kind === 'timeout') {
      counters.timeouts++;
      const evidence = [...bad, ...(t.raw && t.raw.length ? [toHex(t.raw)] : [])];
      const detail = bad.length ? `no reply within ${request.timeoutMs} ms after ${bad.length} corrupted answer(s) (${lastReason})` : `no reply within ${request.timeoutMs} ms`;
      return { ok: false, outcome: 'timeout', detail, latencyMs: latency(), ...(evidence.length ? { evidence: evidence.join(' ') } : {}) };
    }
    if (t.kind === 'reply') {
      counters.replies++;
      const parsed = parseResponse(request.pdu, t.pdu);
      if (parsed.kind !== 'malformed') {
        if (parsed.kind === 'exception') countException(counters.exceptions, hex2(parsed.code));
        return { ok: true, response: parsed, evidence: toHex(t.raw), latencyMs: latency(), tries: tryNo + 1 };
      }
      counters.garbledFrames++;
      crcOnly = false;
      lastReason = parsed.reason;
      bad.push(toHex(t.raw));
    } else {
      if (t.crc) counters.crcErrors++;
      else {
        counters.garbledFrames++;
        crcOnly = false;
      }
      lastReason = t.reason;
      bad.push(toHex(t.raw));
    }
    if (tryNo >= frameRetries) {
      const what = crcOnly ? 'CRC error in the reply' : `undecodable reply (${lastReason})`;
      return { ok: false, outcome: 'garbled', detail: `${what}; ${tryNo + 1} frame(s) sent`, evidence: bad.join(' '), latencyMs: latency() };
    }
    counters.retries++;
    request.log.debug({ unitId: request.unitId, try: tryNo + 1, reason: lastReason }, 'corrupted reply; re-sending the frame');
  }
}
