import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MeterlineError, retryAfterSec } from '../errors.js';
import type { AuditKeySource } from './audit-key-source.js';
import type { StatementCounter } from './statement-counter.js';
import type { StoreWriteHealth } from './store-availability.js';
import { RestartBackoff, type RestartBackoffOptions } from './thread-restart-backoff.js';
import type { GatewayStore, SubmitContext } from './store.js';
import { ANSWER_CODECS, ARGS_CODECS, rebuildError, type ArgsCodec, type AnswerCodec, type PortableError, type PortableSubmitContext, type StatementSnapshot, type ToMain, type ToWorker, type WorkerCalls, type WorkerOptions, type WorkerResults } from './sqlite-worker-protocol.js';

/**
 * The SQLite store on a thread of its own (issue 19, "use the cores"): a real SqliteStore runs on a worker thread
 * (sqlite-store-worker.ts) and this forwards every GatewayStore call to it, so the journal's CPU (statements, commits,
 * row mapping) leaves the main thread, which is left with the control loop, the drivers and the API.
 *
 * The calls made in one turn of the event loop go in one message and start on the worker in that order, in one turn,
 * so the writes among them still commit in one transaction and every promise resolves only after its commit:
 * "durable before acted on" holds as with SqliteStore on the main thread. Answers come back in one message per batch,
 * with the store's write health when it changed, which writeHealth() answers from synchronously. What crosses is kept
 * small (issue 19): a batch is flat arrays, not an object per call, and the control loop's answers (orders, due orders,
 * a meter) cross as arrays of values that this side rebuilds into the very objects SqliteStore returns (ANSWER_CODECS). A MeterlineError keeps its code,
 * message and details across the thread.
 *
 * The thread dying (an abort in native code, out of memory, a bug) heals: the calls sent to it fail with
 * E_STORE_UNAVAILABLE (details.committed 'unknown': a write among them may have committed just before; callers retry
 * with their idempotency keys), and a new thread is started on the same file after a backoff (100 ms doubling to 5 s,
 * back to 100 ms after a minute up: thread-restart-backoff.ts), which opens the store again (migrated already; the
 * caches, which live on the thread, start empty). Calls made meanwhile wait for the new thread, at most `waitMs` (3 s),
 * then fail with E_STORE_UNAVAILABLE (Retry-After); when the next start is further off than that, they fail at once.
 * Waiting rather than failing at once lets a short restart (a few hundred ms) go unnoticed by API clients, and lets a
 * write that failed give its Idempotency-Key back. Health is not writable from the death until the new thread answers.
 * The file's ownership lock (sqlite-file-owner.ts) is held by the main thread, not this one, so it stays held across
 * restarts: no other gateway can take the file in between. A thread that never answered (the file cannot be opened at
 * start) is not restarted: the gateway refuses to start, as before. close() ends restarting; nothing hangs.
 */

/**
 * Every GatewayStore method forwarded to the worker as it is: a Record over the interface's keys, so a method added to
 * GatewayStore and not here (or here and not there) does not compile. writeHealth and close are this class's own.
 */
const FORWARDED: Record<Exclude<keyof GatewayStore, 'writeHealth' | 'close'>, true> = {
  actOnAlert: true, addNotice: true, appendAudit: true, appendCreditEvent: true, approveOrder: true,
  assignWorkOrder: true, attemptStats: true, auditHead: true, beginAttempts: true, cancelOrder: true,
  checkPayments: true, claimEpisode: true, claimOrphans: true, clientEvents: true, completeAttempt: true,
  completeWorkOrder: true, confirmMeterKeySet: true, countOpenOrdersByState: true, countOrdersByState: true,
  countWorkOrdersByStatus: true, createApiKey: true, createPlan: true, creditControl: true, creditEvents: true,
  decidePlan: true, declareWeather: true, dueOrders: true, endEpisodes: true, energyReadings: true,
  escalateOrder: true, existingMeterIds: true, findApiKey: true, gateDisconnect: true, getCallback: true,
  getIdempotentResponse: true, getMeter: true, getOrder: true, getPlan: true, getWorkOrder: true, holdDuty: true,
  importMeterFacts: true, inFlightOrders: true, lastCompletedOrder: true, latestRelayAudit: true,
  leaseDisconnect: true, liftWeather: true, listAlerts: true, listApiKeys: true, listAttempts: true, listAudit: true,
  listBreakers: true, listCallbacks: true, listEpisodes: true, listMeterSwaps: true, listMeters: true,
  listNotices: true, listNotifications: true, listObservations: true, listOrderEvents: true, listOrders: true,
  listPayments: true, listPlans: true, listWeather: true, listWorkOrders: true, markClientEvent: true,
  markNotification: true, meterKeySetBySystemTitle: true, meterKeySets: true, meterKeySetsWithoutSystemTitle: true,
  migrate: true, mostUrgentReconnectDeadline: true, openBreaker: true, openOrdersForMeter: true,
  orderOutcomeStats: true, orderSeries: true, pendingClientEvents: true, pendingNotifications: true,
  putMeterKeySets: true, raiseInvocationCounter: true, reconnectsNearDeadline: true, recordAlert: true,
  recordMeterKeySetSystemTitle: true, recordMeterSwap: true, recordObservation: true, recordPaymentCheck: true,
  recordPayments: true, registerClients: true, relayAuditFacts: true, releaseAttempt: true, releaseDuty: true,
  releaseIdempotentWrite: true, renewLeases: true, reserveIdempotentWrite: true, reserveInvocationCounters: true,
  resetBreaker: true, retireMeterKeySet: true, revokeApiKey: true, rotateApiKey: true, saveIdempotentResponse: true,
  saveRelayAudit: true, setCallback: true, setCreditControl: true, setMeterFlags: true, stageMeterKeySet: true,
  submitOrders: true, touchApiKey: true, upsertMeters: true, verifyAudit: true, wakeHeldDisconnects: true,
};

/** The forwarded method names (the test compares them with SqliteStore's). */
export const FORWARDED_METHODS: readonly string[] = Object.keys(FORWARDED);

/** The compiled worker beside this file; run from the TypeScript sources (vitest), the build's copy in dist/. */
function workerUrl(): URL {
  const beside = new URL('./sqlite-store-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const built = new URL('../../dist/src/store/sqlite-store-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error(`the SQLite store worker is not built (${fileURLToPath(beside)}): run npm run build`);
}

/** writeHealth() asks the worker again when its latest answer is older than this. */
const HEALTH_REFRESH_MS = 1000;

/** How long a call made while the thread restarts waits for the new one, at most, before E_STORE_UNAVAILABLE. */
const RESTART_WAIT_MS = 3000;

interface Waiting {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A turn's calls made while no thread could take them: posted to the next thread that answers, or failed at `failAt`. */
interface HeldBatch {
  calls: WorkerCalls;
  waiting: unknown[];
  failAt: number;
}

/** Where the store says its thread died and came back (the gateway's logger, pino's shape). */
export interface StoreThreadLog {
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface SqliteWorkerStoreOptions {
  auditKey?: AuditKeySource;
  countStatements?: StatementCounter;
  /** Where deaths and restarts of the thread are logged (also later, setLogger()). */
  logger?: StoreThreadLog;
  /**
   * Starting the thread again when it dies (see the class): the backoff, and `waitMs`, how long a call made meanwhile
   * waits for the new thread (default 3 s). `false`: never (the store stays unavailable, as before restarts existed).
   */
  restart?: (RestartBackoffOptions & { waitMs?: number }) | false;
}

const CODECS = ANSWER_CODECS as Record<string, AnswerCodec<unknown> | undefined>;
const ARGS = ARGS_CODECS as Record<string, ArgsCodec<unknown[]> | undefined>;

export interface SqliteWorkerStore extends GatewayStore {}

export class SqliteWorkerStore {
  /** The thread now (after a death, the one starting or started again). */
  private worker: Worker;
  /** What a thread starts with; `migrate` once the store has been migrated (a thread started again then migrates first). */
  private readonly workerData: WorkerOptions;
  private readonly key: AuditKeySource | undefined;
  private nextId = 1;
  /** Calls made in this turn, not yet posted: method, arguments, per call. */
  private outbox: WorkerCalls = [];
  /**
   * Their callers, flat: per call its resolve, its reject and its answer's codec (or undefined), in the calls' order
   * (no object, no map entry per call: issue 19).
   */
  private outboxWaiting: unknown[] = [];
  /** Posted batches not yet answered (their callers as outboxWaiting holds them), by batch number. */
  private readonly waiting = new Map<number, unknown[]>();
  private readonly pendingControl = new Map<string, Waiting>();
  private health: StoreWriteHealth = { writable: true, detail: null };
  /** When the latest answer came (performance.now()), and whether a refresh of the health is on its way. */
  private answeredAt = 0;
  private healthAsked = false;
  /** Set once the worker can take no more calls: why (its first thread's crash or failure to open the file, close()). */
  private gone: Error | undefined;
  private closing: Promise<void> | undefined;
  private readonly opened: Promise<void>;
  private markOpened!: () => void;
  private markOpenFailed!: (e: Error) => void;
  private readonly counter: StatementCounter | undefined;
  /** A thread has answered once: from then on a death is healed by a new thread (before, it is the store failing to open). */
  private everReady = false;
  /** The thread died and its successor has not answered yet: why (what calls made meanwhile fail with, if they must). */
  private down: MeterlineError | undefined;
  /** When the next thread starts (this.now()), while one is waited for. */
  private restartAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private held: HeldBatch[] = [];
  private heldTimer: NodeJS.Timeout | undefined;
  private readonly backoff: RestartBackoff | undefined;
  private readonly waitMs: number;
  private readonly now = (): number => performance.now();
  private logger: StoreThreadLog | undefined;
  /** Lines said before a logger was given (the journal started early, before the gateway's logger exists). */
  private unsaid: [level: 'error' | 'info', obj: object, msg: string][] = [];
  private diedAt = 0;
  private restarts = 0;

  /**
   * Starts the worker, which opens (creating) the file. `auditKey` must be a source auditKeySource() or fixedAuditKey()
   * made (it is rebuilt on the worker from its portable form). `countStatements`: the worker counts, and this counter
   * gets the worker's counts at statementCounts() and close() (a thread started again counts from zero).
   */
  constructor(
    readonly path: string,
    options: SqliteWorkerStoreOptions = {},
  ) {
    const key = options.auditKey;
    if (key && !key.portable) throw new Error(`the audit key source ${key.where} cannot be handed to the store's worker thread (use auditKeySource or fixedAuditKey)`);
    this.key = key;
    this.counter = options.countStatements;
    if (this.counter) {
      this.counter.remote = {
        reset: () => void this.control({ type: 'statements', id: 0, reset: true }).catch(() => undefined),
        pull: async () => void (await this.statementCounts()),
      };
    }
    this.backoff = options.restart === false ? undefined : new RestartBackoff(options.restart);
    this.waitMs = (options.restart || undefined)?.waitMs ?? RESTART_WAIT_MS;
    this.logger = options.logger;
    this.workerData = { path, auditKey: key?.portable ?? null, countStatements: this.counter !== undefined, migrate: false };
    this.opened = new Promise<void>((res, rej) => {
      this.markOpened = res;
      this.markOpenFailed = rej;
    });
    // Not every caller waits for ready(): the failure still reaches them through their calls.
    this.opened.catch(() => undefined);
    this.worker = this.startThread();
  }

  /** Resolves once the worker has opened the file; rejects as the open failed (E_STORE_OPEN, as SqliteStore's constructor throws it). */
  /** The worker's thread id as the OS knows it, once ready (Linux), for per-thread CPU figures (the benches). */
  osThreadId: number | undefined;

  ready(): Promise<void> {
    return this.opened;
  }

  /** Threads started after a death (the first thread is not counted). */
  get threadRestarts(): number {
    return this.restarts;
  }

  /** Where deaths and restarts of the thread are logged from now on (and those before, if any). */
  setLogger(logger: StoreThreadLog): void {
    this.logger = logger;
    for (const [level, obj, msg] of this.unsaid.splice(0)) logger[level](obj, msg);
  }

  /**
   * As of the worker's latest answer. With no call for a second, this asks the worker again in the background (the
   * store's standing checks, free disk space, change between writes), so a health check that polls sees it.
   */
  writeHealth(): StoreWriteHealth {
    if (!this.gone && !this.closing && !this.down && !this.healthAsked && performance.now() - this.answeredAt > HEALTH_REFRESH_MS) {
      this.healthAsked = true;
      this.call('writeHealth', []).then(
        () => (this.healthAsked = false),
        () => (this.healthAsked = false),
      );
    }
    return this.health;
  }

  /** The worker's statement counts so far (the bench); `reset` starts them again from zero after reading. Also copied into the counter given. */
  async statementCounts(reset = false): Promise<StatementSnapshot | null> {
    const snapshot = (await this.control({ type: 'statements', id: 0, reset })) as StatementSnapshot | null;
    if (snapshot) this.copyCounts(snapshot);
    return snapshot;
  }

  /**
   * Drains every call made so far, closes the worker's store, ends the thread. While the thread is being started again
   * there is none to drain: the calls held for it fail (E_STORE_UNAVAILABLE), a thread starting is ended, none starts.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.gone) return;
      clearTimeout(this.restartTimer);
      const closed = new MeterlineError('E_STORE_UNAVAILABLE', `the SQLite file ${this.path} is closed`, { store: `the SQLite file ${this.path}`, cause: 'closed' });
      if (this.down) {
        this.gone = closed;
        this.fail(closed);
        await this.worker.terminate();
        return;
      }
      this.post();
      let failure: Error | undefined;
      try {
        const answer = (await this.control({ type: 'close', id: 0 })) as { snapshot: StatementSnapshot | null };
        if (answer.snapshot) this.copyCounts(answer.snapshot);
      } catch (err) {
        failure = err as Error;
      }
      this.gone = closed;
      await this.worker.terminate();
      if (failure && !(failure instanceof MeterlineError && failure.code === 'E_STORE_UNAVAILABLE')) throw failure;
    })();
    return this.closing;
  }

  /** A forwarded call: queued for this turn's message. */
  call(method: string, args: unknown[]): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    if (this.closing) return Promise.reject(new Error('store closed'));
    // No thread before the wait is over: fail now rather than after it (Retry-After says when to come back).
    if (this.down && this.restartAt - this.now() >= this.waitMs) return Promise.reject(this.down);
    // The arguments as they are (rest arguments, this call's own array: issue 19, no copy of the array per call), compact
    // where ARGS_CODECS says, a submit context without its function.
    const argsCodec = ARGS[method];
    let portable = args;
    if (argsCodec) {
      try {
        portable = argsCodec.encode(args);
      } catch (err) {
        return Promise.reject(err);
      }
    } else {
      for (const a of args) {
        if (isSubmitContext(a)) {
          portable = args.map((x) => (isSubmitContext(x) ? portableContext(x, method, args) : x));
          break;
        }
      }
    }
    if (method === 'migrate') {
      return this.enqueue(method, portable).then((v) => {
        this.workerData.migrate = true;
        return v;
      });
    }
    return this.enqueue(method, portable);
  }

  private enqueue(method: string, portable: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // The thread keeps the process alive only while a call waits on it (as a pending write on the main thread would).
      if (this.idle()) this.worker.ref();
      this.outbox.push(method, portable);
      this.outboxWaiting.push(resolve, reject, CODECS[method]);
      // At the end of this turn of the event loop: every call made in it goes in one message (one transaction there).
      if (this.outbox.length === 2) setImmediate(() => this.post());
    });
  }

  private post(): void {
    if (this.outbox.length === 0) return;
    const calls = this.outbox;
    const waiting = this.outboxWaiting;
    this.outbox = [];
    this.outboxWaiting = [];
    if (this.down) {
      // The thread is being started again: these wait for it (in their turn's batch), a bounded time.
      this.held.push({ calls, waiting, failAt: this.now() + this.waitMs });
      this.heldTimer ??= setTimeout(() => this.failOverdue(), this.waitMs);
      return;
    }
    this.postBatch(calls, waiting);
  }

  private postBatch(calls: WorkerCalls, waiting: unknown[]): void {
    const batch = this.nextId++;
    try {
      this.worker.postMessage({ type: 'calls', batch, calls } satisfies ToWorker);
      this.waiting.set(batch, waiting);
    } catch (err) {
      // An argument that cannot be cloned (a function, a class with private state): those calls fail, as a bug would.
      for (let i = 0; i < waiting.length; i += 3) {
        (waiting[i + 1] as Waiting['reject'])(new Error(`${calls[(2 * i) / 3] as string}: its arguments cannot cross to the store's thread (${(err as Error).message})`));
      }
      if (this.idle()) this.worker.unref();
    }
  }

  /** Held calls whose wait is over fail with E_STORE_UNAVAILABLE; the timer follows the next one still waiting. */
  private failOverdue(): void {
    this.heldTimer = undefined;
    const now = this.now();
    while (this.held.length > 0 && this.held[0]!.failAt <= now) rejectAll(this.held.shift()!.waiting, this.down ?? this.unavailable('its thread is being started again'));
    if (this.held.length > 0) this.heldTimer = setTimeout(() => this.failOverdue(), Math.max(1, this.held[0]!.failAt - now));
  }

  private control(message: ToWorker): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    if (this.down) return Promise.reject(this.down);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.worker.ref();
      this.pendingControl.set(`${message.type}:${id}`, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  /** A thread on the file, its events bound to it (those of a thread that has been replaced are not this store's business). */
  private startThread(): Worker {
    const w = new Worker(workerUrl(), { workerData: this.workerData });
    let ended = false;
    const end = (cause: string): void => {
      if (ended) return;
      ended = true;
      if (w === this.worker) this.onThreadEnd(cause);
    };
    w.on('message', (m: ToMain) => {
      if (w !== this.worker || ended) return;
      if (m.type === 'openFailed' && this.everReady) {
        // A thread started again that cannot open the file (it was moved, the disk failed): try again later.
        end(`it could not open the file: ${m.error.message}`);
        return;
      }
      this.onMessage(m);
    });
    w.on('error', (err) => end(`its thread failed: ${err.message}`));
    w.on('exit', (code) => end(`its thread ended (exit code ${code})`));
    return w;
  }

  /**
   * The thread ended, not through close(). Before it ever answered, the store could not be opened: it stays unavailable
   * (the gateway does not start). After, the calls sent to it fail with E_STORE_UNAVAILABLE (a write among them may or
   * may not have committed: their callers retry, with their idempotency keys), and a new thread is started after the
   * backoff; calls made meanwhile wait for it, a bounded time.
   */
  private onThreadEnd(cause: string): void {
    if (this.closing || !this.everReady || !this.backoff) {
      const e = this.unavailable(cause);
      this.markOpenFailed(e);
      this.fail(e);
      return;
    }
    const now = this.now();
    const firstDeath = !this.down;
    if (firstDeath) this.diedAt = now;
    const delayMs = this.backoff.died(now);
    this.restartAt = now + delayMs;
    this.down = this.unavailable(`its thread ended (${cause}); it is being started again`);
    this.health = { writable: false, detail: this.down.message };
    // What was sent to the thread: answered by no one now, perhaps committed (a batch's commit may have been its last act).
    const sent = this.unavailable(`its thread ended (${cause}) before answering; a write among these calls may or may not have committed`, 'unknown');
    const rejects: Waiting['reject'][] = [];
    for (const batch of this.waiting.values()) for (let w = 0; w < batch.length; w += 3) rejects.push(batch[w + 1] as Waiting['reject']);
    for (const c of this.pendingControl.values()) rejects.push(c.reject);
    this.waiting.clear();
    this.pendingControl.clear();
    for (const reject of rejects) reject(sent);
    this.say('error', { path: this.path, cause, failedCalls: rejects.length, restartInMs: delayMs, restarts: this.restarts }, firstDeath ? 'the SQLite journal thread died; calls sent to it fail with E_STORE_UNAVAILABLE; starting it again' : 'the SQLite journal thread died again before answering; starting it again after a longer wait');
    // This timer keeps the process alive until the new thread starts (the gateway is not done); close() clears it.
    this.restartTimer = setTimeout(() => this.restart(), delayMs);
    if (!firstDeath) {
      // Held calls that cannot be answered before their wait is over fail now.
      const keep = this.held.filter((h) => h.failAt > this.restartAt);
      for (const h of this.held) if (h.failAt <= this.restartAt) rejectAll(h.waiting, this.down);
      this.held = keep;
    }
  }

  private restart(): void {
    this.restartTimer = undefined;
    if (this.closing || this.gone) return;
    this.restarts++;
    this.worker = this.startThread();
  }

  /** The new thread answered: the calls held for it go, in their order, and health is the store's own again. */
  private backUp(): void {
    const downMs = Math.round(this.now() - this.diedAt);
    this.down = undefined;
    this.health = { writable: true, detail: null };
    // The store's own health comes with the first answers (the new thread sends it with its first batch).
    this.answeredAt = 0;
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    const held = this.held;
    this.held = [];
    for (const h of held) this.postBatch(h.calls, h.waiting);
    this.say('info', { path: this.path, downMs, restarts: this.restarts, heldCalls: held.reduce((n, h) => n + h.waiting.length / 3, 0) }, 'the SQLite journal thread is running again; the store takes calls');
  }

  private say(level: 'error' | 'info', obj: object, msg: string): void {
    if (this.logger) this.logger[level](obj, msg);
    else this.unsaid.push([level, obj, msg]);
  }

  private onMessage(m: ToMain): void {
    switch (m.type) {
      case 'ready':
        this.osThreadId = m.osThreadId ?? undefined;
        this.backoff?.up(this.now());
        if (this.everReady) this.backUp();
        this.everReady = true;
        this.markOpened();
        if (this.idle()) this.worker.unref();
        return;
      case 'openFailed': {
        const e = rebuildError(m.error);
        this.markOpenFailed(e);
        this.fail(e);
        return;
      }
      case 'results':
        this.onResults(m);
        if (this.idle()) this.worker.unref();
        return;
      case 'statements': {
        const w = this.pendingControl.get(`statements:${m.id}`);
        this.pendingControl.delete(`statements:${m.id}`);
        w?.resolve(m.snapshot);
        if (this.idle()) this.worker.unref();
        return;
      }
      case 'closed': {
        const w = this.pendingControl.get(`close:${m.id}`);
        this.pendingControl.delete(`close:${m.id}`);
        if (m.error) w?.reject(rebuildError(m.error));
        else w?.resolve({ snapshot: m.snapshot });
        return;
      }
      case 'keyCreated':
        this.key?.onCreate?.(m.file, m.keyId);
        return;
    }
  }

  /** No call waits on the worker (queued, posted or a control message): it need not keep the process alive. */
  private idle(): boolean {
    return this.outbox.length === 0 && this.waiting.size === 0 && this.pendingControl.size === 0;
  }

  /** A batch's answers to its callers, in the calls' order: each failed call's error, each other's value decoded. */
  private onResults(m: WorkerResults): void {
    if (m.health) this.health = m.health;
    this.answeredAt = performance.now();
    const waiting = this.waiting.get(m.batch);
    if (!waiting) return;
    this.waiting.delete(m.batch);
    // Failures are rare: only then a map of them by position.
    let failed: Map<number, PortableError> | undefined;
    if (m.errors) {
      failed = new Map();
      for (let k = 0; k < m.errors.length; k += 2) failed.set(m.errors[k] as number, m.errors[k + 1] as PortableError);
    }
    const values = m.values;
    for (let i = 0, w = 0; w < waiting.length; i++, w += 3) {
      const reject = waiting[w + 1] as Waiting['reject'];
      const error = failed?.get(i);
      if (error) {
        reject(rebuildError(error));
        continue;
      }
      const codec = waiting[w + 2] as AnswerCodec<unknown> | undefined;
      if (!codec) {
        (waiting[w] as Waiting['resolve'])(values[i]);
        continue;
      }
      let value: unknown;
      try {
        value = codec.decode(values[i]);
      } catch (err) {
        reject(err);
        continue;
      }
      (waiting[w] as Waiting['resolve'])(value);
    }
  }

  /** The worker is gone: every call waiting, and every later one, fails with `e`. */
  private fail(e: Error): void {
    // Closed on purpose is not unhealthy; a thread that died, or a file that could not be opened, is.
    if (!this.closing && !this.gone) this.health = { writable: false, detail: e.message };
    this.gone ??= e;
    const rejects: Waiting['reject'][] = [];
    for (const batch of [...this.waiting.values(), ...this.held.map((h) => h.waiting), this.outboxWaiting]) {
      for (let w = 0; w < batch.length; w += 3) rejects.push(batch[w + 1] as Waiting['reject']);
    }
    for (const c of this.pendingControl.values()) rejects.push(c.reject);
    this.waiting.clear();
    this.pendingControl.clear();
    this.held = [];
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    this.outbox = [];
    this.outboxWaiting = [];
    for (const reject of rejects) reject(e);
  }

  /** `committed: 'unknown'`: the calls were sent to a thread that died before answering (see idempotent-write.ts). */
  private unavailable(cause: string, committed?: 'unknown'): MeterlineError {
    const name = `the SQLite file ${this.path}`;
    return new MeterlineError('E_STORE_UNAVAILABLE', `${name} cannot take writes: ${cause}; retry in ${retryAfterSec('E_STORE_UNAVAILABLE')} s`, { store: name, cause, ...(committed ? { committed } : {}) });
  }

  private copyCounts(snapshot: StatementSnapshot): void {
    const c = this.counter;
    if (!c) return;
    c.clear();
    for (const s of snapshot.byStatement) {
      const cell = c.cell(s.statement);
      cell.n += s.count;
      cell.us += s.us;
    }
    c.roundTrips = snapshot.roundTrips;
  }
}

for (const method of FORWARDED_METHODS) {
  Object.defineProperty(SqliteWorkerStore.prototype, method, {
    value(this: SqliteWorkerStore, ...args: unknown[]) {
      return this.call(method, args);
    },
    writable: true,
    configurable: true,
  });
}

function isSubmitContext(a: unknown): a is SubmitContext {
  return a !== null && typeof a === 'object' && typeof (a as { newOrderId?: unknown }).newOrderId === 'function';
}

/**
 * The context without its function. The ids are made here, with the caller's generator, before the call: one per
 * order request (submitOrders), two per payment (a reconnect and a limit removal, recordPayments). What the worker needs
 * beyond them (a plan's orders, an account's many meters) it makes with the gateway's own generator at `ctx.now`.
 */
function portableContext(ctx: SubmitContext, method: string, args: unknown[]): PortableSubmitContext {
  const requests = Array.isArray(args[0]) ? args[0].length : 0;
  const count = method === 'submitOrders' ? requests : method === 'recordPayments' ? 2 * requests : 0;
  const orderIds: string[] = [];
  for (let i = 0; i < count; i++) orderIds.push(ctx.newOrderId());
  return { portableSubmitContext: true, now: ctx.now, reconnectLimitHours: ctx.reconnectLimitHours, policy: ctx.policy, orderIds };
}

/** Fails every caller of a batch (flat: resolve, reject, codec per call). */
function rejectAll(waiting: unknown[], e: Error): void {
  for (let w = 0; w < waiting.length; w += 3) (waiting[w + 1] as Waiting['reject'])(e);
}
