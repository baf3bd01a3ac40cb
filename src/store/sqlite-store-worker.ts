import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { newOrderId } from '../domain/order-id.js';
import { auditKeySourceFrom } from './audit-key-source.js';
import { releaseMemoryWhenQuiet } from './quiet-memory.js';
import { SqliteStore } from './sqlite-store.js';
import { StatementCounter } from './statement-counter.js';
import type { SubmitContext } from './store.js';
import type { PortableSubmitContext, ToMain, ToWorker, WorkerCall, WorkerOptions, WorkerResult } from './sqlite-worker-protocol.js';
import { serialiseError } from './sqlite-worker-protocol.js';

/**
 * The worker side of SqliteWorkerStore (sqlite-worker-store.ts): a real SqliteStore on this thread. Each message is
 * a batch of calls made in one turn of the main thread's event loop; they start here in order, in one turn, so the
 * store's writes among them commit in one transaction (SqliteStore.enqueue), and their answers go back in one message
 * with the store's write health after them.
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

function start(call: WorkerCall): Promise<unknown> {
  const fn = methods[call.method];
  if (typeof fn !== 'function' || call.method === 'close') return Promise.reject(new Error(`the SQLite store has no method ${call.method}`));
  const args = call.args.map((a) => (a !== null && typeof a === 'object' && (a as { portableSubmitContext?: true }).portableSubmitContext ? liveContext(a as PortableSubmitContext) : a));
  try {
    return fn.apply(store, args);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Batches whose answers are not yet posted: close() waits for them, so every call made before it is answered. */
const inFlight = new Set<Promise<void>>();

async function runBatch(calls: readonly WorkerCall[]): Promise<void> {
  // All started in this turn, in order: the store batches their writes; then every answer at once.
  const settled = await Promise.allSettled(calls.map(start));
  const results: WorkerResult[] = settled.map((s, i) => (s.status === 'fulfilled' ? { id: calls[i]!.id, ok: true, value: s.value } : { id: calls[i]!.id, ok: false, error: serialiseError(s.reason) }));
  post({ type: 'results', results, health: store.writeHealth() });
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'calls':
    {
      const batch = runBatch(m.calls).catch((err: unknown) => {
        // An answer that cannot be cloned: fail the batch's calls with the reason rather than leave them waiting.
        post({ type: 'results', results: m.calls.map((c) => ({ id: c.id, ok: false, error: serialiseError(err) })), health: store.writeHealth() });
      });
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
