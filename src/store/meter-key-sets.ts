import { MeterlineError } from '../errors.js';
import { num, numOrNull, type Row } from './store-rows.js';
import { sql, type Script } from './store-scripts.js';
import { MAX_INVOCATION_COUNTER, type KeySetPutOutcome, type KeySetState, type MeterKeySetRecord, type NewMeterKeySet, type StoredMeterKeySet } from './store.js';

/**
 * Per-meter DLMS key sets and invocation counters (issue 15 items 3 and 4), written once for both stores
 * (store-scripts.ts). Key material arrives sealed (src/keys/key-envelope.ts) and is only ever copied as such; the
 * audit names meters and key set ids, nothing else. Counters are reserved ahead in blocks by one upsert whose
 * RETURNING gives the new end: atomic on PostgreSQL across instances (the row is locked by the update) and under
 * SQLite's single writer.
 */

const recordFromRow = (r: Row): MeterKeySetRecord => ({
  meterId: r.meter_id as string,
  keySetId: r.key_set_id as string,
  state: r.state as KeySetState,
  createdBy: r.created_by as string,
  createdAt: num(r.created_at),
  confirmedAt: numOrNull(r.confirmed_at),
  retiredAt: numOrNull(r.retired_at),
});

const storedFromRow = (r: Row): StoredMeterKeySet => ({
  ...recordFromRow(r),
  sealed: { masterKeyId: r.master_key_id as string, wrappedDataKey: r.wrapped_data_key as string, sealedKeys: r.sealed_keys as string },
});

function* keySet(meterId: string, keySetId: string): Script<StoredMeterKeySet | undefined> {
  const [row] = yield sql('SELECT * FROM meter_key_sets WHERE meter_id = ? AND key_set_id = ?', meterId, keySetId);
  return row ? storedFromRow(row) : undefined;
}

function* insertKeySet(set: NewMeterKeySet, state: 'current' | 'pending', actor: string, now: number): Script<void> {
  yield sql(
    `INSERT INTO meter_key_sets (meter_id, key_set_id, state, master_key_id, wrapped_data_key, sealed_keys, created_by, created_at, confirmed_at, retired_at, system_title)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`,
    set.meterId,
    set.keySetId,
    state,
    set.sealed.masterKeyId,
    set.sealed.wrappedDataKey,
    set.sealed.sealedKeys,
    actor,
    now,
    state === 'current' ? now : null,
    set.systemTitle ? set.systemTitle.toLowerCase() : null,
  );
}

/** Retire the meter's sets in these states (not `except`); the ids retired. */
function* retire(meterId: string, states: readonly ('current' | 'pending')[], now: number, except?: string): Script<string[]> {
  const ids: string[] = [];
  for (const state of states) {
    const rows = yield sql('SELECT key_set_id FROM meter_key_sets WHERE meter_id = ? AND state = ?', meterId, state);
    for (const r of rows) {
      const id = r.key_set_id as string;
      if (id === except) continue;
      yield sql(`UPDATE meter_key_sets SET state = 'retired', retired_at = ? WHERE meter_id = ? AND key_set_id = ?`, now, meterId, id);
      ids.push(id);
    }
  }
  return ids;
}

/** GatewayStore.putMeterKeySets. */
export function* putMeterKeySets(sets: readonly NewMeterKeySet[], options: { replace: boolean }, actor: string, now: number): Script<KeySetPutOutcome[]> {
  const seen = new Set<string>();
  for (const s of sets) {
    if (seen.has(s.meterId)) throw new MeterlineError('E_KEY_FILE_INVALID', `meter ${s.meterId} appears twice in the import; give one key set per meter`, { meterId: s.meterId });
    seen.add(s.meterId);
  }
  const outcomes: KeySetPutOutcome[] = [];
  for (const set of sets) {
    yield { lock: `meterline:meter-keys:${set.meterId}` };
    const existing = yield* keySet(set.meterId, set.keySetId);
    const [currentRow] = yield sql(`SELECT key_set_id FROM meter_key_sets WHERE meter_id = ? AND state = 'current'`, set.meterId);
    const current = currentRow?.key_set_id as string | undefined;
    if (existing && existing.state !== 'retired') {
      outcomes.push({ meterId: set.meterId, keySetId: set.keySetId, result: 'unchanged', replaced: [] });
      continue;
    }
    if ((existing || current !== undefined) && !options.replace) {
      throw new MeterlineError(
        'E_KEY_SET_CONFLICT',
        existing
          ? `meter ${set.meterId}: these keys are its retired key set ${set.keySetId}${current ? ` (it now uses ${current})` : ''}; nothing was imported. Import with replace to use them again`
          : `meter ${set.meterId} already has other keys (key set ${current}); nothing was imported. Keys change through a renewal, or import with replace when the file is the one to trust`,
        { meterId: set.meterId, keySetId: set.keySetId, currentKeySetId: current ?? null },
      );
    }
    const replaced = yield* retire(set.meterId, ['current', 'pending'], now, set.keySetId);
    if (existing) {
      yield sql(`UPDATE meter_key_sets SET state = 'current', confirmed_at = ?, retired_at = NULL WHERE meter_id = ? AND key_set_id = ?`, now, set.meterId, set.keySetId);
    } else {
      yield* insertKeySet(set, 'current', actor, now);
    }
    const result = replaced.length > 0 || existing ? 'replaced' : 'created';
    outcomes.push({ meterId: set.meterId, keySetId: set.keySetId, result, replaced });
    yield { audit: { at: now, actor, action: 'meter_keys.import', target: set.meterId, details: { after: { keySetId: set.keySetId, state: 'current' }, ...(replaced.length > 0 ? { retired: replaced } : {}) } } };
  }
  return outcomes;
}

/** GatewayStore.meterKeySets. */
export function* meterKeySets(meterId: string): Script<StoredMeterKeySet[]> {
  const rows = yield sql(
    `SELECT * FROM meter_key_sets WHERE meter_id = ? ORDER BY CASE state WHEN 'current' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, created_at DESC, key_set_id`,
    meterId,
  );
  return rows.map(storedFromRow);
}

/** GatewayStore.meterKeySetBySystemTitle (current before pending; two meters with one title: the one keyed first). */
export function* meterKeySetBySystemTitle(systemTitle: string): Script<{ meterId: string; keySetId: string } | undefined> {
  const [row] = yield sql(
    `SELECT meter_id, key_set_id FROM meter_key_sets WHERE system_title = ? AND state IN ('current', 'pending')
     ORDER BY CASE state WHEN 'current' THEN 0 ELSE 1 END, created_at, meter_id LIMIT 1`,
    systemTitle.toLowerCase(),
  );
  return row ? { meterId: row.meter_id as string, keySetId: row.key_set_id as string } : undefined;
}

/** GatewayStore.meterKeySetsWithoutSystemTitle. */
export function* meterKeySetsWithoutSystemTitle(limit: number): Script<StoredMeterKeySet[]> {
  const rows = yield sql(`SELECT * FROM meter_key_sets WHERE system_title IS NULL AND state IN ('current', 'pending') ORDER BY meter_id, key_set_id LIMIT ?`, limit);
  return rows.map(storedFromRow);
}

/** GatewayStore.recordMeterKeySetSystemTitle. */
export function* recordMeterKeySetSystemTitle(meterId: string, keySetId: string, systemTitle: string): Script<void> {
  if (!/^[0-9a-fA-F]{16}$/.test(systemTitle)) throw new RangeError(`meter ${meterId}, key set ${keySetId}: a system title is 16 hex digits`);
  yield sql('UPDATE meter_key_sets SET system_title = ? WHERE meter_id = ? AND key_set_id = ? AND system_title IS NULL', systemTitle.toLowerCase(), meterId, keySetId);
}

/** GatewayStore.stageMeterKeySet. */
export function* stageMeterKeySet(set: NewMeterKeySet, actor: string, now: number): Script<MeterKeySetRecord> {
  yield { lock: `meterline:meter-keys:${set.meterId}` };
  const existing = yield* keySet(set.meterId, set.keySetId);
  if (existing) {
    if (existing.state === 'pending') return existing;
    throw new MeterlineError('E_KEY_SET_CONFLICT', `meter ${set.meterId}: key set ${set.keySetId} is already ${existing.state}; a renewal stages new keys`, { meterId: set.meterId, keySetId: set.keySetId });
  }
  const retired = yield* retire(set.meterId, ['pending'], now);
  yield* insertKeySet(set, 'pending', actor, now);
  yield { audit: { at: now, actor, action: 'meter_keys.stage', target: set.meterId, details: { after: { keySetId: set.keySetId, state: 'pending' }, ...(retired.length > 0 ? { retired } : {}) } } };
  return (yield* keySet(set.meterId, set.keySetId))!;
}

const notFound = (meterId: string, keySetId: string): MeterlineError =>
  new MeterlineError('E_KEY_SET_NOT_FOUND', `meter ${meterId} has no key set ${keySetId}`, { meterId, keySetId });

/** GatewayStore.confirmMeterKeySet (confirming the current set again changes nothing). */
export function* confirmMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Script<MeterKeySetRecord> {
  yield { lock: `meterline:meter-keys:${meterId}` };
  const set = yield* keySet(meterId, keySetId);
  if (!set) throw notFound(meterId, keySetId);
  if (set.state === 'current') return set;
  if (set.state !== 'pending') throw new MeterlineError('E_KEY_SET_CONFLICT', `meter ${meterId}: key set ${keySetId} is retired; only a pending key set is confirmed`, { meterId, keySetId });
  const retired = yield* retire(meterId, ['current'], now);
  yield sql(`UPDATE meter_key_sets SET state = 'current', confirmed_at = ? WHERE meter_id = ? AND key_set_id = ?`, now, meterId, keySetId);
  yield { audit: { at: now, actor, action: 'meter_keys.confirm', target: meterId, details: { after: { keySetId, state: 'current' }, retired } } };
  return (yield* keySet(meterId, keySetId))!;
}

/** GatewayStore.retireMeterKeySet (retiring a retired set changes nothing). */
export function* retireMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Script<MeterKeySetRecord> {
  yield { lock: `meterline:meter-keys:${meterId}` };
  const set = yield* keySet(meterId, keySetId);
  if (!set) throw notFound(meterId, keySetId);
  if (set.state === 'retired') return set;
  yield sql(`UPDATE meter_key_sets SET state = 'retired', retired_at = ? WHERE meter_id = ? AND key_set_id = ?`, now, meterId, keySetId);
  yield { audit: { at: now, actor, action: 'meter_keys.retire', target: meterId, details: { before: { keySetId, state: set.state }, after: { keySetId, state: 'retired' } } } };
  return (yield* keySet(meterId, keySetId))!;
}

const FIRST_COUNTER = 1;

function checkCounterArgs(meterId: string, keySetId: string, n: number, what: string, min: number): void {
  if (!Number.isSafeInteger(n) || n < min || n > MAX_INVOCATION_COUNTER + 1) {
    throw new RangeError(`invocation counters of meter ${meterId}, key set ${keySetId}: ${what} must be an integer from ${min} to 2^32 (got ${n})`);
  }
}

/** GatewayStore.reserveInvocationCounters. */
export function* reserveInvocationCounters(meterId: string, keySetId: string, block: number): Script<number> {
  checkCounterArgs(meterId, keySetId, block, 'the block', 1);
  const [row] = yield sql(
    `INSERT INTO invocation_counters (meter_id, key_set_id, reserved_until) VALUES (?, ?, ?)
     ON CONFLICT (meter_id, key_set_id) DO UPDATE SET reserved_until = invocation_counters.reserved_until + ?
     RETURNING reserved_until`,
    meterId,
    keySetId,
    FIRST_COUNTER + block,
    block,
  );
  const until = num(row!.reserved_until);
  // Thrown inside the transaction: the reservation is rolled back with it.
  if (until - 1 > MAX_INVOCATION_COUNTER) {
    throw new MeterlineError('E_INVOCATION_COUNTER_EXHAUSTED', `meter ${meterId}, key set ${keySetId}: the invocation counter would pass 2^32 - 1; renew the meter's keys (a new key set starts its counters again)`, {
      meterId,
      keySetId,
    });
  }
  return until - block;
}

/** GatewayStore.raiseInvocationCounter. */
export function* raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Script<void> {
  checkCounterArgs(meterId, keySetId, atLeast, 'the counter', 0);
  yield sql(
    `INSERT INTO invocation_counters (meter_id, key_set_id, reserved_until) VALUES (?, ?, ?)
     ON CONFLICT (meter_id, key_set_id) DO UPDATE SET reserved_until =
       CASE WHEN excluded.reserved_until > invocation_counters.reserved_until THEN excluded.reserved_until ELSE invocation_counters.reserved_until END`,
    meterId,
    keySetId,
    Math.max(atLeast, FIRST_COUNTER),
  );
}
