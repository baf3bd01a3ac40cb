import { MeterlineError, type ErrorCode } from '../errors.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { PortableAuditKeySource } from './audit-key-source.js';
import type { StatementCounter } from './statement-counter.js';
import type { StoreWriteHealth } from './store-availability.js';
import type { AttemptReport, DueOrder, GatewayStore, MeterView, SubmitOutcome } from './store.js';
import type { AttemptJudgement } from '../domain/attempt-decision.js';
import type { SwitchOrder } from '../domain/switch-order.js';
import { DEFAULT_FLAGS } from '../domain/policy/meter-facts.js';

/** The messages between SqliteWorkerStore (main thread) and sqlite-store-worker.ts: plain data only (structured clone). */

export interface WorkerOptions {
  path: string;
  /** Absent: the store's default (audit.key beside the file). */
  auditKey: PortableAuditKeySource | null;
  countStatements: boolean;
  /** Run migrate() before saying ready: a thread started again for a store that had been migrated (its calls need it). */
  migrate: boolean;
}

/** A SubmitContext without its function: the order ids made on the main thread, in the order they are to be used. */
export interface PortableSubmitContext {
  portableSubmitContext: true;
  now: number;
  reconnectLimitHours: number;
  policy: PolicyConfig;
  orderIds: string[];
}

/**
 * A batch of calls as it crosses: flat, method then arguments, per call (no wrapper object per call: issue 19). The
 * answers come back in the same positions.
 */
export type WorkerCalls = unknown[];

/** An error as it crosses: what rebuilding it on the main thread needs (a MeterlineError keeps its code, status, details). */
export interface PortableError {
  name: string;
  message: string;
  code?: string;
  details?: unknown;
  stack?: string;
  meterline: boolean;
}

/**
 * A batch's answers: `values[i]` is call i's (encoded by its method's codec, if it has one); `errors` lists the calls
 * that failed as position, error, position, error (null when none did). `health` is the store's write health, there
 * only when it differs from the one last sent.
 */
export interface WorkerResults {
  type: 'results';
  batch: number;
  values: unknown[];
  errors: (number | PortableError)[] | null;
  health?: StoreWriteHealth;
}

export type StatementSnapshot = ReturnType<StatementCounter['snapshot']>;

export type ToWorker =
  | { type: 'calls'; batch: number; calls: WorkerCalls }
  | { type: 'statements'; id: number; reset: boolean }
  | { type: 'close'; id: number };

export type ToMain =
  | { type: 'ready'; /** The worker's thread id as the OS knows it (/proc/<pid>/task/<tid>), for per-thread CPU figures; null off Linux. */ osThreadId: number | null }
  | { type: 'openFailed'; error: PortableError }
  | WorkerResults
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

// ---- compact answers (issue 19) ---------------------------------------------------------------------------------------
// The hottest answers cross as arrays of their values rather than objects: structured clone writes (and the other
// side reads and looks up) every key of every object, 30 per order. Each side knows the keys; the main thread rebuilds
// the very same object (same keys, same order, same values).

/** A method's answer as it crosses: encoded on the worker, decoded on the main thread. */
export interface AnswerCodec<T> {
  encode(value: T): unknown;
  decode(encoded: unknown): T;
}

/**
 * An order's values, in orderFromRow's key order (store-rows.ts), so a rebuilt order serialises as the store's does
 * (the worker store's tests compare the answers as JSON with SqliteStore's).
 */
function encodeOrder(o: SwitchOrder): unknown[] {
  return [
    o.id, o.meterId, o.action, o.limitW, o.reason, o.note, o.requestedBy, o.state, o.stateReason, o.priority, o.urgent,
    o.link, o.createdAt, o.updatedAt, o.notBefore, o.deadline, o.paymentAt, o.attempts, o.nextAttemptAt, o.supersededBy,
    o.completedAt, o.resultRelay, o.planId, o.secondNoticeAt, o.capDay, o.escalatedAt, o.origin, o.reference,
    o.approvedBy, o.approvedAt,
  ];
}

/** How many distinct words `word` keeps (links are the most numerous: one per bus or broker). */
const WORDS_KEPT = 4096;
const words = new Map<string, string>();

/**
 * A string of few values (an action, a state, a reason, a link) as one shared copy. Structured clone makes a new
 * string of every value that crosses, so each order held on this side (in the due buffer, on the wire) carried its
 * own copies of the same few words (issue 19: what survives a scavenge is what costs). Other values pass as they are.
 */
function word<T>(v: T): T {
  if (typeof v !== 'string') return v;
  const kept = words.get(v);
  if (kept !== undefined) return kept as T;
  if (words.size < WORDS_KEPT) words.set(v, v);
  return v;
}

/** The order again, as one literal (one hidden class for every order the worker sends), its few-valued words shared. */
function decodeOrder(v: unknown): SwitchOrder {
  const a = v as never[];
  return {
    id: a[0]!, meterId: a[1]!, action: word(a[2]!), limitW: a[3]!, reason: word(a[4]!), note: a[5]!, requestedBy: word(a[6]!), state: word(a[7]!),
    stateReason: a[8]!, priority: a[9]!, urgent: a[10]!, link: word(a[11]!), createdAt: a[12]!, updatedAt: a[13]!, notBefore: a[14]!,
    deadline: a[15]!, paymentAt: a[16]!, attempts: a[17]!, nextAttemptAt: a[18]!, supersededBy: a[19]!, completedAt: a[20]!,
    resultRelay: word(a[21]!), planId: a[22]!, secondNoticeAt: a[23]!, capDay: a[24]!, escalatedAt: a[25]!, origin: word(a[26]!),
    reference: a[27]!, approvedBy: a[28]!, approvedAt: a[29]!,
  };
}

const orderCodec: AnswerCodec<SwitchOrder> = { encode: encodeOrder, decode: decodeOrder };

const ordersCodec: AnswerCodec<SwitchOrder[]> = {
  encode: (orders) => orders.map(encodeOrder),
  decode: (v) => (v as unknown[]).map(decodeOrder),
};

/** An order or none (undefined crosses as null). */
const maybeOrderCodec: AnswerCodec<SwitchOrder | undefined> = {
  encode: (o) => (o === undefined ? null : encodeOrder(o)),
  decode: (v) => (v === null ? undefined : decodeOrder(v)),
};

/** Admissions flat: kind, then the order, per request. */
const submitCodec: AnswerCodec<SubmitOutcome[]> = {
  encode(outcomes) {
    const flat: unknown[] = [];
    for (const o of outcomes) flat.push(o.kind, encodeOrder(o.order));
    return flat;
  },
  decode(v) {
    const f = v as unknown[];
    const out: SubmitOutcome[] = [];
    for (let j = 0; j < f.length; j += 2) out.push({ kind: f[j] as SubmitOutcome['kind'], order: decodeOrder(f[j + 1]) });
    return out;
  },
};

/** Due orders flat: eight values per order (six strings, the four of few values shared: `word`; the priority, the deadline or null). */
const dueCodec: AnswerCodec<DueOrder[]> = {
  encode(rows) {
    const flat: (string | number | null)[] = [];
    for (const r of rows) flat.push(r.id, r.meterId, r.link, r.action, r.reason, r.state, r.priority, r.deadline);
    return flat;
  },
  decode(v) {
    const f = v as never[];
    const rows: DueOrder[] = [];
    for (let j = 0; j < f.length; j += 8) {
      rows.push({ id: f[j]!, meterId: f[j + 1]!, link: word(f[j + 2]!), action: word(f[j + 3]!), reason: word(f[j + 4]!), state: word(f[j + 5]!), priority: f[j + 6]!, deadline: f[j + 7]! });
    }
    return rows;
  },
};

/**
 * An object's values in the order of `keys`, when it has exactly those own keys in that order (as the store's row
 * mapping builds it); otherwise undefined (the object then crosses as it is).
 */
function valuesInOrder(o: object, keys: readonly string[]): unknown[] | undefined {
  const values: unknown[] = [];
  let i = 0;
  for (const k in o) {
    if (k !== keys[i]) return undefined;
    values.push((o as Record<string, unknown>)[k]);
    i++;
  }
  return i === keys.length ? values : undefined;
}

/** Rebuilds what valuesInOrder took apart: the same keys, in the same order. */
function fromValues<T>(values: readonly unknown[], keys: readonly string[]): T {
  if (values.length !== keys.length) throw new Error('the store\'s answer crossed malformed (a value list of the wrong length)');
  const o: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) o[keys[i]!] = values[i];
  return o as T;
}

/** meterFromRow's `observed`, key by key. */
const OBSERVED_KEYS = ['relay', 'at', 'source', 'voltageV', 'energyWh'] as const;
/** parseFlags's keys (DEFAULT_FLAGS, then nothing else for a meter whose stored flags are the known ones). */
const FLAG_KEYS: readonly string[] = Object.keys(DEFAULT_FLAGS);
const DEFAULT_FLAG_VALUES: readonly unknown[] = FLAG_KEYS.map((k) => (DEFAULT_FLAGS as unknown as Record<string, unknown>)[k]);

/**
 * A meter's flags: 0 when they are the defaults (nearly every meter: one value instead of eight keys and values), their
 * values in DEFAULT_FLAGS's key order when they have exactly its keys, else the object as it is.
 */
function encodeFlags(flags: MeterView['flags']): unknown {
  const values = valuesInOrder(flags, FLAG_KEYS);
  if (values === undefined) return flags;
  for (let i = 0; i < values.length; i++) if (values[i] !== DEFAULT_FLAG_VALUES[i]) return values;
  return 0;
}

function decodeFlags(v: unknown): MeterView['flags'] {
  if (v === 0) return { ...DEFAULT_FLAGS };
  if (Array.isArray(v)) return fromValues(v, FLAG_KEYS);
  if (v !== null && typeof v === 'object') return v as MeterView['flags'];
  throw new Error('the store\'s answer crossed malformed (a meter\'s flags)');
}

function encodeObserved(o: MeterView['observed']): unknown {
  if (o === null) return null;
  return valuesInOrder(o, OBSERVED_KEYS) ?? o;
}

function decodeObserved(v: unknown): MeterView['observed'] {
  if (v === null) return null;
  if (Array.isArray(v)) return fromValues(v, OBSERVED_KEYS);
  if (typeof v === 'object') return v as MeterView['observed'];
  throw new Error('the store\'s answer crossed malformed (a meter\'s observed state)');
}

/**
 * A meter: its top-level values in meterFromRow's order (profile, link and region shared: `word`); its observed state
 * as five values and its flags as 0 when they are the defaults (encodeFlags), each rebuilt with the same keys in the
 * same order (issue 19: one getMeter per order); null: none.
 */
const meterCodec: AnswerCodec<MeterView | undefined> = {
  encode: (m) =>
    m === undefined ? null : [m.meterId, m.profileId, m.link, m.region, m.address, m.accountId, m.createdAt, m.updatedAt, encodeObserved(m.observed), m.desiredRelay, m.desiredOrderId, encodeFlags(m.flags)],
  decode(v) {
    if (v === null) return undefined;
    const a = v as never[];
    return { meterId: a[0]!, profileId: word(a[1]!), link: word(a[2]!), region: word(a[3]!), address: a[4]!, accountId: a[5]!, createdAt: a[6]!, updatedAt: a[7]!, observed: decodeObserved(a[8]), desiredRelay: a[9]!, desiredOrderId: a[10]!, flags: decodeFlags(a[11]) };
  },
};

/**
 * A meter's energy readings (the consumption check's, one call per reading with an energy register: up to 500 rows)
 * as one Float64Array of at, energyWh per reading: a typed array crosses as its bytes, not as an object with two keys
 * per reading. Every value is a number here (SQLite reads INTEGER and REAL columns as numbers, and a float64 holds
 * each exactly, NaN and -0 included); should one not be, the list crosses as it is.
 */
const energyReadingsCodec: AnswerCodec<{ at: number; energyWh: number }[]> = {
  encode(readings) {
    const flat = new Float64Array(2 * readings.length);
    for (let i = 0; i < readings.length; i++) {
      const r = readings[i]!;
      if (typeof r.at !== 'number' || typeof r.energyWh !== 'number') return readings;
      flat[2 * i] = r.at;
      flat[2 * i + 1] = r.energyWh;
    }
    return flat;
  },
  decode(v) {
    if (Array.isArray(v)) return v as { at: number; energyWh: number }[];
    if (!(v instanceof Float64Array) || v.length % 2 !== 0) throw new Error('energyReadings: the answer crossed malformed (not pairs of numbers)');
    const readings: { at: number; energyWh: number }[] = [];
    for (let j = 0; j < v.length; j += 2) readings.push({ at: v[j]!, energyWh: v[j + 1]! });
    return readings;
  },
};

type Answer<M extends keyof GatewayStore> = GatewayStore[M] extends (...args: never[]) => Promise<infer R> ? R : never;

/** The methods whose answers cross compact: those of every order's path through the control loop. */
export const ANSWER_CODECS: { readonly [M in keyof GatewayStore]?: AnswerCodec<Answer<M>> } = {
  submitOrders: submitCodec,
  getOrder: maybeOrderCodec,
  openOrdersForMeter: ordersCodec,
  beginAttempts: ordersCodec,
  completeAttempt: orderCodec,
  releaseAttempt: orderCodec,
  dueOrders: dueCodec,
  getMeter: meterCodec,
  energyReadings: energyReadingsCodec,
};

// ---- compact arguments ------------------------------------------------------------------------------------------------

/** A method's arguments as they cross: encoded on the main thread, decoded on the worker. */
export interface ArgsCodec<A extends unknown[]> {
  encode(args: A): unknown[];
  decode(encoded: unknown[]): A;
}

/**
 * An attempt's report (one per attempt): its values in a row, the judgement's escalation policy as four values and of
 * the meter's flags the three the verdict reads (escalation.ts), rather than every key of every object.
 */
const reportCodec: ArgsCodec<[AttemptReport]> = {
  encode([r]) {
    const j = r.judgement;
    const f = j.flags;
    const e = j.escalation;
    return [
      r.orderId, r.attempt, r.leaseOwner, r.endedAt, r.latencyMs, r.commandEvidence, r.readEvidence, r.observedRelay, r.detail, r.observation,
      j.rules, j.facts, j.now, j.random,
      f ? [f.medicalEquipment, f.vulnerable, f.priorityRegister] : null,
      e ? [e.fieldLeadMs, e.dueMarginMs, e.slowRetryMs, e.escalateDisconnects] : null,
    ];
  },
  decode(v) {
    const a = v as never[];
    const judgement: AttemptJudgement = { rules: a[10]!, facts: a[11]!, now: a[12]!, random: a[13]! };
    const f = a[14] as unknown as [boolean, boolean, boolean] | null;
    if (f) judgement.flags = { medicalEquipment: f[0], vulnerable: f[1], priorityRegister: f[2] };
    const e = a[15] as unknown as [number, number, number, boolean] | null;
    if (e) judgement.escalation = { fieldLeadMs: e[0], dueMarginMs: e[1], slowRetryMs: e[2], escalateDisconnects: e[3] };
    return [{ orderId: a[0]!, attempt: a[1]!, leaseOwner: a[2]!, endedAt: a[3]!, latencyMs: a[4]!, commandEvidence: a[5]!, readEvidence: a[6]!, observedRelay: a[7]!, detail: a[8]!, observation: a[9]!, judgement }];
  },
};

type Args<M extends keyof GatewayStore> = GatewayStore[M] extends (...args: infer A) => Promise<unknown> ? A : never;

/** The methods whose arguments cross compact. */
export const ARGS_CODECS: { readonly [M in keyof GatewayStore]?: ArgsCodec<Args<M>> } = {
  completeAttempt: reportCodec,
};
