import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MeterAddress, MeterDriver, RequestOptions, WireResult } from '../../drivers/driver.js';
import type { KeyTransferResult, MeterKeys } from '../../drivers/dlms/index.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import { MeterlineError } from '../errors.js';
import type { GatewayStore } from '../store/store.js';
import type { StoreKeyring } from './store-keyring.js';

/**
 * Renewing one meter's DLMS keys (issue 15 item 3; Green Book key transport, Blue Book class 64 global_key_transfer).
 * New random GUEK and GAK (node:crypto) are staged as the meter's pending key set (sealed) before anything goes on the
 * wire; the driver transfers them wrapped under the meter's KEK and proves them by a fresh association; then:
 *  - proved: the pending set is confirmed (current), the old one retired → state 'current';
 *  - the meter refused the transfer (a nack, the link down, auth refused with the current keys), or it is known to
 *    still hold the current keys: the pending set is dropped (retired), the old one stays current → E_KEY_RENEWAL_FAILED;
 *  - the meter took the keys (or the answer was lost) but the proof failed: both sets are kept → state 'pending'. The
 *    driver then never locks the meter out: when the current keys are refused it tries the pending ones once and
 *    confirms them on success (dlms-driver.ts); a later renewal first settles the pending set (below).
 * Key bytes never leave this module except sealed into the store or wrapped on the wire: results, errors, logs and the
 * audit entry carry key set ids only.
 */

/** What the renewal needs of the DLMS driver. */
export interface KeyRenewalDriver {
  transferKeys(meter: MeterAddress, newKeys: MeterKeys, options: RequestOptions): Promise<KeyTransferResult>;
  proveKeys(meter: MeterAddress, keys: MeterKeys, options: RequestOptions): Promise<WireResult<{ keySetId: string }>>;
}

export interface KeyRenewalDeps {
  store: Pick<GatewayStore, 'getMeter' | 'appendAudit'>;
  keyring: Pick<StoreKeyring, 'enabled' | 'keysFor' | 'pendingKeysFor' | 'stagePendingKeys' | 'confirmPendingKeys' | 'dropPendingKeys'>;
  drivers: ReadonlyMap<string, MeterDriver>;
  profiles: ReadonlyMap<string, FirmwareProfile>;
  now: () => number;
  logger: Logger;
}

export interface KeyRenewalResult {
  meterId: string;
  /** The renewed key set: 'current' once proved; 'pending' when the meter took it but the proof did not come back. */
  keySetId: string;
  state: 'current' | 'pending';
  previousKeySetId: string;
  /** A pending set left by an earlier renewal that this one settled first. */
  settled?: { keySetId: string; result: 'confirmed' | 'dropped' };
  /** Why the state is 'pending' (a wire outcome and its detail, never key bytes). */
  detail?: string;
}

const isDriver = (d: MeterDriver | undefined): d is MeterDriver & KeyRenewalDriver => typeof (d as Partial<KeyRenewalDriver> | undefined)?.transferKeys === 'function';

/** Meters whose keys this process is renewing: a second renewal would stage over the first one's pending set. */
const renewing = new Set<string>();

export async function renewMeterKeys(deps: KeyRenewalDeps, meterId: string, actor: string): Promise<KeyRenewalResult> {
  if (renewing.has(meterId)) throw new MeterlineError('E_KEY_RENEWAL_IN_PROGRESS', `meter ${meterId}: a renewal of its keys is already running; try again when it has answered`, { meterId });
  renewing.add(meterId);
  try {
    return await renewOnce(deps, meterId, actor);
  } finally {
    renewing.delete(meterId);
  }
}

async function renewOnce(deps: KeyRenewalDeps, meterId: string, actor: string): Promise<KeyRenewalResult> {
  const { keyring, store, logger } = deps;
  const meter = await store.getMeter(meterId);
  if (!meter) throw new MeterlineError('E_METER_NOT_FOUND', `no meter ${meterId}`, { meterId });
  if (!keyring.enabled) throw new MeterlineError('E_NO_MASTER_KEY', `meter ${meterId}: no key master is configured, so its keys cannot be renewed`);
  const profile = deps.profiles.get(meter.profileId);
  const driver = profile ? deps.drivers.get(profile.protocol) : undefined;
  if (!profile || profile.protocol !== 'dlms' || profile.dlms.security !== 'hls-gmac') {
    throw new MeterlineError('E_KEY_RENEWAL_UNSUPPORTED', `meter ${meterId}: its profile ${meter.profileId} does not use HLS-GMAC with per-meter keys`, { meterId, profileId: meter.profileId });
  }
  if (!isDriver(driver)) throw new MeterlineError('E_KEY_RENEWAL_UNSUPPORTED', `meter ${meterId}: no DLMS link is configured on this gateway`, { meterId });
  let current = await keyring.keysFor(meterId);
  if (!current) throw new MeterlineError('E_KEY_RENEWAL_UNSUPPORTED', `meter ${meterId}: no keys imported for it; import its key file first`, { meterId });
  const address: MeterAddress = { meterId, profile, link: meter.link, address: meter.address ?? null };
  const options = (step: string): RequestOptions => ({ timeoutMs: profile.timeouts.commandMs, correlationId: `keys:${meterId}:${step}:${deps.now()}` });
  const log = logger.child({ meterId, op: 'key-renewal' });

  // 1. A pending set from an earlier renewal is settled first: staging a new one would retire it, and it may be
  //    the keys the meter holds.
  let settled: KeyRenewalResult['settled'];
  const leftOver = await keyring.pendingKeysFor(meterId);
  if (leftOver) {
    const withCurrent = await driver.proveKeys(address, current, options('settle-current'));
    if (withCurrent.outcome === 'ok') {
      await keyring.dropPendingKeys(meterId, leftOver.keySetId, actor);
      settled = { keySetId: leftOver.keySetId, result: 'dropped' };
    } else {
      const withPending = await driver.proveKeys(address, leftOver, options('settle-pending'));
      if (withPending.outcome !== 'ok') {
        throw new MeterlineError('E_KEY_RENEWAL_UNSETTLED', `meter ${meterId}: neither its current key set ${current.keySetId} (${withCurrent.outcome}) nor its pending one ${leftOver.keySetId} (${withPending.outcome}) associates; nothing was changed`, { meterId, keySetId: current.keySetId, pendingKeySetId: leftOver.keySetId });
      }
      await keyring.confirmPendingKeys(meterId, leftOver.keySetId);
      settled = { keySetId: leftOver.keySetId, result: 'confirmed' };
      current = (await keyring.keysFor(meterId))!;
    }
    log.info({ settled }, 'an earlier renewal was settled first');
  }
  if (!current.masterKey) throw new MeterlineError('E_KEY_RENEWAL_UNSUPPORTED', `meter ${meterId}: its key set ${current.keySetId} has no master key (KEK) to wrap new keys with; import its key file with the KEK column`, { meterId, keySetId: current.keySetId });

  // 2. Stage new random keys (same KEK and system title), sealed, before anything goes on the wire.
  const material = { encryptionKey: randomBytes(16), authenticationKey: randomBytes(16), masterKey: current.masterKey, ...(current.serverSystemTitle ? { serverSystemTitle: current.serverSystemTitle } : {}) };
  const keySetId = await keyring.stagePendingKeys(meterId, material, actor);
  const next: MeterKeys = { keySetId, ...material };
  const audit = async (outcome: string, extra: Record<string, unknown> = {}) =>
    store.appendAudit({ at: deps.now(), actor, action: 'meter_keys.renew', target: meterId, details: { outcome, fromKeySetId: current.keySetId, toKeySetId: keySetId, ...extra } });

  // 3. Transfer, then prove.
  const r = await driver.transferKeys(address, next, options('transfer'));
  material.encryptionKey.fill(0);
  material.authenticationKey.fill(0);
  if (r.transfer.outcome !== 'ok') {
    const f = r.transfer;
    // A timeout or garbled answer may hide an ACTION the meter carried out: drop the new keys only if the old ones still work.
    const refused = f.outcome === 'nack' || f.outcome === 'auth_failed' || f.outcome === 'link_error' || (await driver.proveKeys(address, current, options('check-current'))).outcome === 'ok';
    if (refused) {
      await keyring.dropPendingKeys(meterId, keySetId, actor);
      await audit('refused', { wire: f.outcome });
      log.warn({ outcome: f.outcome, keySetId: current.keySetId }, 'key renewal refused: the meter keeps its current keys');
      throw new MeterlineError('E_KEY_RENEWAL_FAILED', `meter ${meterId} did not take the new keys (${f.outcome}: ${f.detail}); it keeps its key set ${current.keySetId}`, { meterId, keySetId: current.keySetId, outcome: f.outcome });
    }
    await audit('pending', { wire: f.outcome });
    return { meterId, keySetId, state: 'pending', previousKeySetId: current.keySetId, ...(settled ? { settled } : {}), detail: `the transfer's answer did not come back (${f.outcome}) and the current keys no longer associate: the next association tries the pending keys` };
  }
  if (r.proof?.outcome === 'ok') {
    await keyring.confirmPendingKeys(meterId, keySetId);
    await audit('confirmed');
    log.info({ keySetId, retiredKeySetId: current.keySetId }, 'meter keys renewed and proved');
    return { meterId, keySetId, state: 'current', previousKeySetId: current.keySetId, ...(settled ? { settled } : {}) };
  }
  const p = r.proof!;
  await audit('pending', { wire: p.outcome });
  log.warn({ outcome: p.outcome, keySetId }, 'the meter took the new keys but the association with them failed: both key sets kept');
  return { meterId, keySetId, state: 'pending', previousKeySetId: current.keySetId, ...(settled ? { settled } : {}), detail: `the meter took the keys but the association with them failed (${p.outcome}: ${p.detail}); the next association tries the current keys, then the pending ones` };
}
