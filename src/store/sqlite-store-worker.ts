import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { newOrderId } from '../domain/order-id.js';
import { releaseMemoryWhenQuiet } from '../runtime/quiet-memory.js';
import { auditKeySourceFrom } from './audit-key-source.js';
import { SqliteStore } from './sqlite-store.js';
import { StatementCounter } from './statement-counter.js';
import type { SubmitContext } from './store.js';
import type { StoreWriteHealth } from './store-availability.js';
import type { AnswerCodec, ArgsCodec, PortableError, PortableSubmitContext, ToMain, ToWorker, WorkerCalls, WorkerOptions } from './sqlite-worker-protocol.js';
import { ANSWER_CODECS, ARGS_CODECS, serialiseError } from './sqlite-worker-protocol.js';

/**
 * The worker side of SqliteWorkerStore (sqlite-worker-store.ts): a real SqliteStore on this thread. Each message is
 * a batch of calls made in one turn of the main thread's event loop; they start here in order, in one turn, so the
 * store's writes among them commit in one transaction (SqliteStore.enqueue), and their answers go back in one message
 * (compact where ANSWER_CODECS says) with the store's write health after them when it changed.
 */
const port = parentPort;
if (!port) throw new Error('sqlite-store-worker runs as a worker thread (SqliteWorkerStore starts it)');
const options = workerData as WorkerOptions;
const counter = options.countStatements ? new StatementCounter() : undefined;
const post = (m: ToMain): void => port.postMessage(m);
let opened: SqliteStore;
try {
  opened = new SqliteStore(options.path, {
    ...(options.auditKey ? { auditKey: auditKeySourceFrom(options.auditKey, (file, keyId) => post({ type: 'keyCreated', file, keyId })) } : {}),
    ...(counter ? { countStatements: counter } : {}),
  });
  // A thread started again after the last one died: the store was migrated by then (this only checks it and builds
  // what needs the schema); its first calls come once it is ready.
  if (options.migrate) await opened.migrate();
} catch (err) {
  // E_STORE_OPEN (a directory, permission denied, a read-only file system): the main thread says so and ends this thread.
  // Ended by exit, not by the error thrown: a thread's 'error' can reach the main thread before this message (the
  // caller then saw E_STORE_UNAVAILABLE), while every message it posted is delivered before its 'exit'.
  post({ type: 'openFailed', error: serialiseError(err) });
  process.exit(1);
}
const store = opened;
const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

/** A submit context back to a live one: the ids the main thread made first, then the gateway's own generator. */
function liveContext(p: PortableSubmitContext): SubmitContext {
  const ids = p.orderIds;
  let next = 0;
  return { now: p.now, reconnectLimitHours: p.reconnectLimitHours, policy: p.policy, newOrderId: () => (next < ids.length ? ids[next++]! : newOrderId(p.now)) };
}

function start(method: string, encoded: unknown[]): Promise<unknown> {
  const fn = methods[method];
  if (typeof fn !== 'function' || method === 'close') return Promise.reject(new Error(`the SQLite store has no method ${method}`));
  try {
    const codec = (ARGS_CODECS as Record<string, ArgsCodec<unknown[]> | undefined>)[method];
    const args = codec ? codec.decode(encoded) : encoded;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a !== null && typeof a === 'object' && (a as { portableSubmitContext?: true }).portableSubmitContext) args[i] = liveContext(a as PortableSubmitContext);
    }
    // Promise.resolve: a method the store answers synchronously (writeHealth, which the main thread asks for after a
    // second with no call) is answered like the others; a promise is returned as it is.
    return Promise.resolve(fn.apply(store, args));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Batches whose answers are not yet posted: close() waits for them, so every call made before it is answered. */
const inFlight = new Set<Promise<void>>();

/** The write health last sent: a batch's answers carry it only when it changed. */
let healthSent: StoreWriteHealth | undefined;

function healthIfChanged(): StoreWriteHealth | undefined {
  const h = store.writeHealth();
  if (healthSent && healthSent.writable === h.writable && healthSent.detail === h.detail) return undefined;
  healthSent = h;
  return h;
}

/** All started in this turn, in order (the store batches their writes); then every answer at once. */
function runBatch(batch: number, calls: WorkerCalls): Promise<void> {
  const n = calls.length >> 1;
  // Filled in order (a packed array crosses densely; one with holes would cross key by key).
  const values: unknown[] = [];
  for (let i = 0; i < n; i++) values.push(null);
  let errors: (number | PortableError)[] | null = null;
  let left = n;
  return new Promise<void>((done) => {
    const send = (): void => {
      const health = healthIfChanged();
      const m: ToMain = health ? { type: 'results', batch, values, errors, health } : { type: 'results', batch, values, errors };
      try {
        post(m);
      } catch (err) {
        // An answer that cannot be cloned: fail the batch's calls with the reason rather than leave them waiting.
        const e = serialiseError(err);
        const failed: (number | PortableError)[] = [];
        for (let i = 0; i < n; i++) failed.push(i, e);
        post(health ? { type: 'results', batch, values: [], errors: failed, health } : { type: 'results', batch, values: [], errors: failed });
      }
      done();
    };
    for (let i = 0; i < n; i++) {
      const method = calls[2 * i] as string;
      const codec = (ANSWER_CODECS as Record<string, AnswerCodec<unknown> | undefined>)[method];
      start(method, calls[2 * i + 1] as unknown[]).then(
        (v) => {
          try {
            values[i] = codec ? codec.encode(v) : v;
          } catch (err) {
            (errors ??= []).push(i, serialiseError(err));
          }
          if (--left === 0) send();
        },
        (err: unknown) => {
          (errors ??= []).push(i, serialiseError(err));
          if (--left === 0) send();
        },
      );
    }
    if (n === 0) send();
  });
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'calls':
    {
      const batch = runBatch(m.batch, m.calls);
      inFlight.add(batch);
      void batch.finally(() => inFlight.delete(batch));
      break;
    }
    case 'statements':
      if (m.reset) counter?.reset();
      post({ type: 'statements', id: m.id, snapshot: counter ? counter.snapshot() : null });
      break;
    case 'close':
      void Promise.allSettled([...inFlight]).then(() => store.close()).then(
        () => post({ type: 'closed', id: m.id, snapshot: counter ? counter.snapshot() : null, error: null }),
        (err: unknown) => post({ type: 'closed', id: m.id, snapshot: counter ? counter.snapshot() : null, error: serialiseError(err) }),
      );
      break;
  }
});
// The young generation a burst grew goes back once the journal is quiet (quiet-memory.ts).
releaseMemoryWhenQuiet();
post({ type: 'ready', osThreadId: osThreadId() });

/** This thread's id as the OS knows it (Linux: /proc/thread-self links to /proc/<pid>/task/<tid>); null elsewhere. */
function osThreadId(): number | null {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : null;
  } catch {
    return null;
  }
}
