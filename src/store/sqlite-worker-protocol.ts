import { MeterlineError, type ErrorCode } from '../errors.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { PortableAuditKeySource } from './audit-key-source.js';
import type { StatementCounter } from './statement-counter.js';
import type { StoreWriteHealth } from './store-availability.js';

/** The messages between SqliteWorkerStore (main thread) and sqlite-store-worker.ts: plain data only (structured clone). */

export interface WorkerOptions {
  path: string;
  /** Absent: the store's default (audit.key beside the file). */
  auditKey: PortableAuditKeySource | null;
  countStatements: boolean;
}

/** A SubmitContext without its function: the order ids made on the main thread, in the order they are to be used. */
export interface PortableSubmitContext {
  portableSubmitContext: true;
  now: number;
  reconnectLimitHours: number;
  policy: PolicyConfig;
  orderIds: string[];
}

export interface WorkerCall {
  id: number;
  method: string;
  args: unknown[];
}

/** An error as it crosses: what rebuilding it on the main thread needs (a MeterlineError keeps its code, status, details). */
export interface PortableError {
  name: string;
  message: string;
  code?: string;
  details?: unknown;
  stack?: string;
  meterline: boolean;
}

export type WorkerResult = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: PortableError };

export type StatementSnapshot = ReturnType<StatementCounter['snapshot']>;

export type ToWorker =
  | { type: 'calls'; calls: WorkerCall[] }
  | { type: 'statements'; id: number; reset: boolean }
  | { type: 'close'; id: number };

export type ToMain =
  | { type: 'ready'; /** The worker's thread id as the OS knows it (/proc/<pid>/task/<tid>), for per-thread CPU figures; null off Linux. */ osThreadId: number | null }
  | { type: 'openFailed'; error: PortableError }
  | { type: 'results'; results: WorkerResult[]; health: StoreWriteHealth }
  | { type: 'statements'; id: number; snapshot: StatementSnapshot | null }
  | { type: 'closed'; id: number; snapshot: StatementSnapshot | null; error: PortableError | null }
  | { type: 'keyCreated'; file: string; keyId: string };

export function serialiseError(err: unknown): PortableError {
  if (err instanceof MeterlineError) return { name: err.name, message: err.message, code: err.code, details: cloneable(err.details), ...(err.stack ? { stack: err.stack } : {}), meterline: true };
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), ...(err.stack ? { stack: err.stack } : {}), meterline: false };
  }
  return { name: 'Error', message: String(err), meterline: false };
}

/** The error again, on this thread: a MeterlineError with the same code, message and details; any other as an Error of its name and code. */
export function rebuildError(e: PortableError): Error {
  if (e.meterline) {
    const err = new MeterlineError(e.code as ErrorCode, e.message, e.details);
    if (e.stack) err.stack = e.stack;
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code !== undefined) (err as Error & { code?: string }).code = e.code;
  if (e.stack) err.stack = e.stack;
  return err;
}

/** Details as they can cross (they are JSON-shaped by design; anything else is turned into JSON's view of it). */
function cloneable(details: unknown): unknown {
  try {
    structuredClone(details);
    return details;
  } catch {
    return JSON.parse(JSON.stringify(details ?? null)) as unknown;
  }
}
