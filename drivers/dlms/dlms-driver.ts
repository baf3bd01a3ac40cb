import { pino, type Logger } from 'pino';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { LoadSideRefusalResult } from '../../src/domain/profiles/dlms-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import type { CommandAck, LimitAck, LinkHealth, MeterAddress, MeterDriver, RelayReading, RequestOptions, WireFailure, WireResult } from '../driver.js';
import { countException } from '../link-health.js';
import { data, type DlmsData } from './axdr.js';
import { CosemClient } from './cosem-client.js';
import { CLOCK_CLASS_ID, ClockAttribute, decodeDateTime } from './cosem/clock.js';
import {
  DISCONNECT_CONTROL_CLASS_ID,
  DisconnectControlAttribute,
  DisconnectControlMethod,
  METHOD_PARAMETER,
  readControlMode,
  readControlState,
  relayFromControlState,
  remoteReconnectOutcome,
  type ControlMode,
} from './cosem/disconnect-control.js';
import type { CosemAttribute, CosemMethod } from './cosem/attribute.js';
import { decodeThreshold, encodeThreshold, LIMITER_ATTRIBUTE_NAMES, LIMITER_CLASS_ID, LimiterAttribute, thresholdEncoding, type ThresholdEncoding } from './cosem/limiter.js';
import { parseObis, type LogicalName } from './cosem/obis.js';
import { globalKeyTransferMethod, globalKeyTransferParameter } from './cosem/security-setup.js';
import { readScalerUnit, REGISTER_CLASS_ID, RegisterAttribute, scaledValue, Unit } from './cosem/register.js';
import type { DlmsLinksConfig } from './dlms-config.js';
import { createDlmsLinks, type DlmsLink, type MeterLocation, type SessionCounters } from './dlms-links.js';
import { DlmsPushListener, PUSH_DROP_REASONS, type PushListenerOptions, type PushDropReason } from './push-listener.js';
import { resolvePassword } from './password.js';
import { DlmsWireFailure } from './wire-failure.js';
import { AccessResult, describeResult, resultName } from './xdlms-apdu.js';
import { CipheringChannel, CounterTooLow } from './security/ciphering-channel.js';
import type { MeterKeyring, MeterKeys } from './security/keyring.js';
import { DEFAULT_CLIENT_SYSTEM_TITLE } from './dlms-config.js';

/** Where each key a profile may name (`dlms.keys`) is in a key set. */
const KEY_FIELD = {
  GUEK: { field: 'encryptionKey', what: 'global unicast encryption key' },
  GAK: { field: 'authenticationKey', what: 'global authentication key' },
  KEK: { field: 'masterKey', what: 'master key' },
} as const satisfies Record<string, { field: keyof MeterKeys; what: string }>;

/** The Action-Result codes (IEC 62056-5-3 §9.3.x) behind the names a profile's `loadSideRefusalResults` uses. */
const ACTION_RESULT_CODE = {
  'hardware-fault': AccessResult.hardwareFault,
  'temporary-failure': AccessResult.temporaryFailure,
  'read-write-denied': AccessResult.readWriteDenied,
  'object-unavailable': AccessResult.objectUnavailable,
  'other-reason': AccessResult.otherReason,
} as const satisfies Record<LoadSideRefusalResult, number>;

/**
 * The DLMS/COSEM meter driver over HDLC serial links, HDLC over TCP, and the TCP wrapper (the link kind is
 * chosen per link: dlms-links.ts). Each `readRelay`, `operateRelay` and `setLoadLimit` is one complete conversation
 * with one meter: SNRM/UA (HDLC), AARQ/AARE, the reads, or the ACTION or SET and its read-back, RLRQ/RLRE, DISC/UA (HDLC).
 * Conversations on one HDLC bus run one at a time (half-duplex, meters told apart by HDLC server address);
 * a wrapper link runs up to its connection limit at once. What a link holds is always released. The result is returned as
 * soon as the answer is in; release and disconnect then finish on the bus before the next conversation.
 *
 * The driver reports what the wire said: the ACTION result and the control_state the meter shows right
 * after it (a claim); the control loop decides with its own read-back.
 *
 * Profiles with 'hls-gmac' security or ciphering take the meter's keys from the MeterKeyring before any wire
 * traffic (none imported: `auth_failed`); every ciphered APDU gets a fresh invocation counter from it. A meter
 * that says our counter is too low is resynchronised once per conversation: its frame counter is read
 * through the public client, the keyring raised past it, and the conversation run again.
 */

export interface DlmsDriverOptions {
  links: DlmsLinksConfig;
  profiles: readonly DlmsFirmwareProfile[];
  logger?: Logger;
  env?: Readonly<Record<string, string | undefined>>;
  /** Delay between attempts to reopen a port that is gone. Default 250 ms. */
  reopenMs?: number;
  /** Where HLS/ciphering profiles get each meter's keys and invocation counters. */
  keyring?: MeterKeyring;
  /** How pushed notifications are deciphered and mapped to meters (used when `links.push` is set). */
  push?: DlmsPushHooks;
}

/** What the gateway gives the push listener: who a sender is, and how to decipher (see push-listener.ts). */
export type DlmsPushHooks = Pick<PushListenerOptions, 'meterFor' | 'decipher' | 'systemTitleFor'>;

export interface DlmsDriverCounters {
  conversations: number;
  ok: number;
  timeouts: number;
  nacks: number;
  garbled: number;
  linkErrors: number;
  frameRepeats: number;
  badFrames: number;
  /** Conversations the meter refused for the gateway's credentials (password, key, authentication tag). */
  authFailures: number;
  /** Invocation counters resynchronised from a meter's frame counter ("counter too low"). */
  counterResyncs: number;
  /** Pushed notifications delivered as status reports. */
  pushDelivered: number;
  /** Pushed frames and connections dropped, by reason. */
  pushDropped: Record<PushDropReason, number>;
}

/** What a key renewal did on the wire: the transfer, and (when the meter took it) the association with the new keys. */
export interface KeyTransferResult {
  transfer: WireResult<{ keySetId: string }>;
  proof?: WireResult<{ keySetId: string }>;
}

interface ObjectNames {
  securitySetup: LogicalName;
  disconnectControl: LogicalName;
  activeEnergyImport: LogicalName;
  voltage: LogicalName;
  clock: LogicalName;
  /** The load limiter (class 71), where the profile has one. */
  limiter?: LimiterSetup;
  /** The load-side voltage register, where the profile names one (DOMAIN.md rule 14). */
  loadSideVoltage?: LogicalName;
}

/** A profile's limiter as the driver uses it (`dlms.limiter`). */
interface LimiterSetup {
  logicalName: LogicalName;
  encoding: ThresholdEncoding;
  minOverThresholdDurationS?: number;
}

/** What `converse` may be given besides the dialogue. */
interface ConverseExtras {
  /** Associate with these keys instead of the keyring's current ones (key renewal's proof). */
  keysOverride?: MeterKeys;
  /** Why the request cannot go on the wire for this profile (checked before any traffic), or undefined. */
  refusal?: (profile: DlmsFirmwareProfile) => string | undefined;
}

/** The body of a conversation: what it asks the associated meter, and the value it makes of the answers. */
type Dialogue<T> = (cosem: CosemClient, names: ObjectNames, log: Logger) => Promise<{ value: T; evidence: Record<string, unknown> }>;

/** COSEM class 1 "Data" (Blue Book §4.3.1): attribute 2 value. */
const DATA_CLASS_ID = 1;
const DATA_VALUE_ATTRIBUTE = 2;

const attr = (classId: number, logicalName: LogicalName, attribute: number, name: string): CosemAttribute => ({ classId, logicalName, attribute, name });

export class DlmsDriver implements MeterDriver {
  readonly protocol = 'dlms' as const;
  readonly counters: DlmsDriverCounters = { conversations: 0, ok: 0, timeouts: 0, nacks: 0, garbled: 0, linkErrors: 0, frameRepeats: 0, badFrames: 0, authFailures: 0, counterResyncs: 0, pushDelivered: 0, pushDropped: Object.fromEntries(PUSH_DROP_REASONS.map((r) => [r, 0])) as Record<PushDropReason, number> };

  private readonly links: Map<string, DlmsLink>;
  private readonly push: DlmsPushListener | undefined;
  private readonly statusListeners: Array<(meterId: string, reading: RelayReading, evidence: string) => void> = [];
  private readonly passwords = new Map<string, Uint8Array | undefined>();
  private readonly names = new Map<string, ObjectNames>();
  private readonly log: Logger;
  private readonly keyring: MeterKeyring | undefined;
  private readonly clientSystemTitle: Buffer;
  private stopped = false;

  constructor(options: DlmsDriverOptions) {
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ driver: 'dlms' });
    const env = options.env ?? process.env;
    this.keyring = options.keyring;
    this.clientSystemTitle = Buffer.from(options.links.clientSystemTitle ?? DEFAULT_CLIENT_SYSTEM_TITLE, 'hex');
    for (const profile of options.profiles) {
      this.passwords.set(profile.id, resolvePassword(profile, options.links.passwords, env));
      const o = profile.dlms.obis;
      this.names.set(profile.id, {
        securitySetup: parseObis(profile.dlms.securitySetupObis ?? '0-0:43.0.0.255'),
        disconnectControl: parseObis(o.disconnectControl),
        activeEnergyImport: parseObis(o.activeEnergyImport),
        voltage: parseObis(o.voltage),
        clock: parseObis(o.clock),
        ...(profile.dlms.limiter ? { limiter: limiterSetup(profile.dlms.limiter) } : {}),
        ...(o.loadSideVoltage !== undefined ? { loadSideVoltage: parseObis(o.loadSideVoltage) } : {}),
      });
    }
    this.links = createDlmsLinks(options.links, options.reopenMs ?? 250, this.log);
    if (options.links.push) {
      this.push = new DlmsPushListener({
        config: options.links.push,
        ...options.push,
        logger: this.log,
        onState: (meterId, reading, evidence) => {
          this.counters.pushDelivered++;
          for (const l of this.statusListeners) l(meterId, reading, evidence);
        },
      });
      this.counters.pushDropped = this.push.counters.dropped;
    }
  }

  async start(): Promise<void> {
    this.stopped = false;
    await Promise.all([...this.links.values()].map((l) => l.start()));
    await this.push?.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.push?.stop();
    await Promise.all([...this.links.values()].map((l) => l.stop()));
  }

  /** Disconnector states meters push (evidence says `"source":"push"`); needs `links.push`. */
  onStatusReport(listener: (meterId: string, reading: RelayReading, evidence: string) => void): void {
    this.statusListeners.push(listener);
  }

  /** The port the push listener is bound to (the actual one when configured as 0); undefined without one. */
  get pushPort(): number | undefined {
    return this.push?.port;
  }

  isLinkUp(link: string): boolean {
    return !this.stopped && this.links.get(link)?.isUp() === true;
  }

  /**
   * Each serial port (`dlms-hdlc`) and TCP link (`dlms-tcp`): bad HCS/FCS as CRC errors, garbled answers and frames,
   * frame repeats, timeouts, the meters' refusals by result name, wrapper frames for no one waiting as unknown
   * correlation ids, reopens of the port and reconnects of the standing connection.
   */
  linkHealth(): LinkHealth[] {
    return [...this.links.values()].map((l) => l.health());
  }

  readRelay(meter: MeterAddress, options: RequestOptions): Promise<WireResult<RelayReading>> {
    return this.converse(meter, options, 'read', async (cosem, n) => {
      const dc = (a: number, name: string) => attr(DISCONNECT_CONTROL_CLASS_ID, n.disconnectControl, a, name);
      const state = readControlState(await cosem.get(dc(DisconnectControlAttribute.controlState, 'control_state')));
      if (typeof state === 'string') throw new DlmsWireFailure('garbled', state, cosem.answers.at(-1));
      const reading: RelayReading = { relay: relayFromControlState(state), at: Date.now() };
      const evidence: Record<string, unknown> = { relay: reading.relay, controlState: state };
      const voltage = await this.readRegister(cosem, n.voltage, 'voltage', Unit.V);
      if (voltage !== undefined) reading.voltageV = evidence.voltageV = voltage;
      const energy = await this.readRegister(cosem, n.activeEnergyImport, 'active_energy_import', Unit.Wh);
      if (energy !== undefined) reading.energyWh = evidence.energyWh = energy;
      if (n.limiter) {
        const limit = await this.readLimit(cosem, n.limiter);
        if (limit !== undefined) reading.loadLimitW = evidence.loadLimitW = limit;
      }
      if (n.loadSideVoltage) {
        const loadSide = await this.readRegister(cosem, n.loadSideVoltage, 'load_side_voltage', Unit.V);
        if (loadSide !== undefined) reading.loadSideVoltageV = evidence.loadSideVoltageV = loadSide;
      }
      const clock = await this.optional(cosem.get(attr(CLOCK_CLASS_ID, n.clock, ClockAttribute.time, 'clock.time')));
      if (clock?.type === 'octet-string') {
        const t = decodeDateTime(clock.value);
        if (typeof t === 'number') evidence.meterClock = new Date(t).toISOString();
      }
      return { value: reading, evidence };
    });
  }

  operateRelay(meter: MeterAddress, action: SwitchAction, options: RequestOptions): Promise<WireResult<CommandAck>> {
    return this.converse(meter, options, action, async (cosem, n, log) => {
      const dc = (a: number, name: string) => attr(DISCONNECT_CONTROL_CLASS_ID, n.disconnectControl, a, name);
      // The meter's own control mode says what remote_reconnect does; read once per association.
      const mode = readControlMode(await cosem.get(dc(DisconnectControlAttribute.controlMode, 'control_mode')));
      if (typeof mode === 'string') throw new DlmsWireFailure('garbled', mode, cosem.answers.at(-1));
      const profile = meter.profile as DlmsFirmwareProfile;
      if (mode !== profile.dlms.controlMode) log.warn({ controlMode: mode, profileControlMode: profile.dlms.controlMode, profile: profile.id }, 'meter control mode differs from its firmware profile');
      if (mode === 0) throw new DlmsWireFailure('nack', `meter is in control mode 0: its disconnect control cannot be operated (always connected)`, cosem.answers.at(-1));
      const expected: RelayState = action === 'disconnect' ? 'disconnected' : (remoteReconnectOutcome(mode as ControlMode) ?? 'connected');
      const method: CosemMethod =
        action === 'disconnect'
          ? { classId: DISCONNECT_CONTROL_CLASS_ID, logicalName: n.disconnectControl, method: DisconnectControlMethod.remoteDisconnect, name: 'remote_disconnect' }
          : { classId: DISCONNECT_CONTROL_CLASS_ID, logicalName: n.disconnectControl, method: DisconnectControlMethod.remoteReconnect, name: 'remote_reconnect' };
      try {
        await cosem.action(method, METHOD_PARAMETER);
      } catch (e) {
        throw action === 'reconnect' ? await this.loadSideRefusal(cosem, n, profile, e) : e;
      }
      // What the meter shows right after: its claim (armed when the mode makes ready_for_reconnection the end state).
      const state = readControlState(await cosem.get(dc(DisconnectControlAttribute.controlState, 'control_state')));
      if (typeof state === 'string') throw new DlmsWireFailure('garbled', state, cosem.answers.at(-1));
      const claimedRelay = relayFromControlState(state);
      if (claimedRelay !== expected) log.warn({ controlMode: mode, expected, claimedRelay }, 'control_state after the ACTION is not the expected end state');
      const remoteReconnect = remoteReconnectOutcome(mode as ControlMode) === 'armed' ? ('arms' as const) : ('closes' as const);
      return { value: { claimedRelay, remoteReconnect }, evidence: { action: method.name, result: 'success', controlMode: mode, expected, claimedRelay, controlState: state } };
    });
  }

  /**
   * Set (watts) or remove (null) the demand limit (DOMAIN.md rule 10): in one association, SET the limiter's
   * threshold_normal (class 71 attribute 4; with min_over_threshold_duration first where the profile says), then GET
   * threshold_active (attribute 3) as the meter's claim. A refused SET is `nack` naming the data-access-result. A
   * limit the threshold cannot hold is refused before any traffic. The control loop verifies with `readRelay`.
   */
  setLoadLimit(meter: MeterAddress, limitW: number | null, options: RequestOptions): Promise<WireResult<LimitAck>> {
    const profileLimiter = meter.profile.protocol === 'dlms' ? meter.profile.dlms.limiter : undefined;
    const limiter = profileLimiter ? limiterSetup(profileLimiter) : undefined;
    const threshold = limiter ? encodeThreshold(limiter.encoding, limitW) : undefined;
    const refusal = (profile: DlmsFirmwareProfile): string | undefined =>
      threshold === undefined ? `meter ${meter.meterId}: its profile ${profile.id} has no load limiter (dlms.limiter)` : typeof threshold === 'string' ? `meter ${meter.meterId}: ${threshold}` : undefined;
    return this.converse(
      meter,
      options,
      'limit',
      async (cosem, _names, log) => {
        // Only reached with a limiter and a threshold it holds: the refusal stops anything else before any traffic.
        const setup = limiter!;
        const written = threshold as DlmsData & { value: number };
        const lim = (a: number) => attr(LIMITER_CLASS_ID, setup.logicalName, a, LIMITER_ATTRIBUTE_NAMES[a]!);
        const duration = limitW !== null ? setup.minOverThresholdDurationS : undefined;
        if (duration !== undefined) await cosem.set(lim(LimiterAttribute.minOverThresholdDuration), data.doubleLongUnsigned(duration));
        await cosem.set(lim(LimiterAttribute.thresholdNormal), written);
        // What the meter shows right after: its claim. An active emergency profile keeps threshold_emergency in force.
        const claimed = await this.readLimit(cosem, setup);
        if (claimed !== limitW) log.warn({ limitW, claimedLimitW: claimed }, 'threshold_active after the SET is not the limit written');
        return {
          value: claimed === undefined ? {} : { claimedLimitW: claimed },
          evidence: { set: 'threshold_normal', limitW, raw: written.value, ...(duration !== undefined ? { minOverThresholdDurationS: duration } : {}), result: 'success', ...(claimed !== undefined ? { claimedLimitW: claimed } : {}) },
        };
      },
      { refusal },
    );
  }

  /** threshold_active in watts (null = no limit), or undefined when the meter does not answer it (object-undefined, denied). */
  private async readLimit(cosem: CosemClient, limiter: LimiterSetup): Promise<number | null | undefined> {
    const d = await this.optional(cosem.get(attr(LIMITER_CLASS_ID, limiter.logicalName, LimiterAttribute.thresholdActive, 'threshold_active')));
    if (!d) return undefined;
    const limit = decodeThreshold(limiter.encoding, d);
    if (typeof limit === 'string') throw new DlmsWireFailure('garbled', `limiter threshold_active: ${limit}`, cosem.answers.at(-1));
    return limit;
  }

  /**
   * A refused remote_reconnect in the driver's words: an Action-Result the profile names for a live load side
   * (DOMAIN.md rule 14) is `load_side_voltage`, never retried; any other refusal stays as it was. Where the profile
   * names the load-side register too, it is read in the same association: the refusal counts as the load side's only
   * when the register shows it live (or cannot be read), so an ordinary refusal with the same result stays a `nack`.
   */
  private async loadSideRefusal(cosem: CosemClient, n: ObjectNames, profile: DlmsFirmwareProfile, e: unknown): Promise<unknown> {
    const named = profile.dlms.loadSideRefusalResults;
    if (!(e instanceof DlmsWireFailure) || e.result === undefined || !named?.some((r) => ACTION_RESULT_CODE[r] === e.result)) return e;
    const volts = n.loadSideVoltage ? await this.readRegister(cosem, n.loadSideVoltage, 'load_side_voltage', Unit.V).catch(() => undefined) : undefined;
    if (volts !== undefined && volts <= profile.relay.loadSideVoltageCheck.maxVoltageV) return e;
    return new DlmsWireFailure('load_side_voltage', `meter refused to close: ${volts !== undefined ? `${volts} V` : 'voltage'} on the load side (remote_reconnect answered ${describeResult(e.result)})`, e.evidence, e.result);
  }

  /** A register in its unit, or undefined when the meter does not have it (object-undefined and the like). */
  private async readRegister(cosem: CosemClient, ln: LogicalName, name: string, unit: number): Promise<number | undefined> {
    const su = await this.optional(cosem.get(attr(REGISTER_CLASS_ID, ln, RegisterAttribute.scalerUnit, `${name}.scaler_unit`)));
    if (!su) return undefined;
    const scaler = readScalerUnit(su);
    if (typeof scaler === 'string') throw new DlmsWireFailure('garbled', `${name}: ${scaler}`, cosem.answers.at(-1));
    const value = await cosem.get(attr(REGISTER_CLASS_ID, ln, RegisterAttribute.value, `${name}.value`));
    const v = scaledValue(value, scaler, unit);
    if (typeof v === 'string') throw new DlmsWireFailure('garbled', `${name}: ${v}`, cosem.answers.at(-1));
    return v;
  }

  /** An optional attribute: a `nack` (the meter has no such object, or denies it) leaves it out. */
  private async optional(p: Promise<DlmsData>): Promise<DlmsData | undefined> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof DlmsWireFailure && e.outcome === 'nack') return undefined;
      throw e;
    }
  }

  /**
   * Renew a meter's keys (Green Book key transport; Blue Book class 64 method 2): in an HLS association with its
   * current keys, global_key_transfer with the new GUEK and GAK wrapped (RFC 3394) with its master key (KEK); then a
   * fresh association with the NEW keys proves them. The keyring is not changed here: the caller stages the new
   * keys before and confirms them after (src/keys/key-renewal.ts). `transfer` failing means the meter did not take
   * the keys (refused or never answered: it may still have, when the answer was lost, so the caller keeps both);
   * `proof` failing means the meter accepted but the new keys did not associate.
   */
  async transferKeys(meter: MeterAddress, newKeys: MeterKeys, options: RequestOptions): Promise<KeyTransferResult> {
    const transfer = await this.converse(meter, options, 'key-transfer', async (cosem, n) => {
      const current = await this.keyring!.keysFor(meter.meterId);
      if (!current?.masterKey) throw new DlmsWireFailure('auth_failed', `meter ${meter.meterId}: its key set ${current?.keySetId ?? '(none)'} has no master key (KEK) to wrap new keys with; import its key file with the KEK column`);
      const method = globalKeyTransferMethod(n.securitySetup);
      await cosem.action(method, globalKeyTransferParameter(current.masterKey, newKeys));
      return { value: { keySetId: newKeys.keySetId }, evidence: { action: method.name, result: 'success', fromKeySetId: current.keySetId, toKeySetId: newKeys.keySetId } };
    });
    if (transfer.outcome !== 'ok') return { transfer };
    return { transfer, proof: await this.proveKeys(meter, newKeys, options) };
  }

  /** A fresh HLS association with these keys (not the keyring's current ones) and one ciphered GET: ok proves them. */
  proveKeys(meter: MeterAddress, keys: MeterKeys, options: RequestOptions): Promise<WireResult<{ keySetId: string }>> {
    return this.converse(
      meter,
      options,
      'key-proof',
      async (cosem, n) => {
        // The HLS passes 3/4 already proved both keys; a ciphered GET shows the encryption key works on service APDUs.
        await this.optional(cosem.get(attr(CLOCK_CLASS_ID, n.clock, ClockAttribute.time, 'clock.time')));
        return { value: { keySetId: keys.keySetId }, evidence: { proof: 'association', keySetId: keys.keySetId } };
      },
      { keysOverride: keys },
    );
  }

  private async converse<T>(meter: MeterAddress, options: RequestOptions, op: 'read' | SwitchAction | 'limit' | 'key-transfer' | 'key-proof', dialogue: Dialogue<T>, extras: ConverseExtras = {}): Promise<WireResult<T>> {
    const { keysOverride } = extras;
    const started = Date.now();
    const deadline = started + options.timeoutMs;
    const log = this.log.child({ meterId: meter.meterId, link: meter.link, op, correlationId: options.correlationId, ...(options.orderId !== undefined ? { orderId: options.orderId } : {}), ...(options.attempt !== undefined ? { attempt: options.attempt } : {}) });
    let onLink: DlmsLink | undefined;
    const fail = (outcome: WireFailure, detail: string, evidence?: string, result?: number): WireResult<T> => {
      this.count(outcome);
      if (onLink) countOnLink(onLink, outcome, detail, result);
      log.warn({ outcome, detail }, 'dlms request failed');
      return { outcome, detail, ...(evidence !== undefined ? { evidence } : {}), latencyMs: Date.now() - started };
    };
    if (op.startsWith('key-') && (meter.profile.protocol !== 'dlms' || meter.profile.dlms.security !== 'hls-gmac' || !this.keyring)) {
      return fail('nack', `meter ${meter.meterId}: its profile ${meter.profile.id} does not use HLS-GMAC with per-meter keys, so its keys cannot be renewed`);
    }
    if (meter.profile.protocol !== 'dlms') return fail('link_error', `meter ${meter.meterId}: profile ${meter.profile.id} is ${meter.profile.protocol}, not dlms`);
    const profile = meter.profile;
    const refused = extras.refusal?.(profile);
    if (refused !== undefined) return fail('nack', refused);
    const link = this.links.get(meter.link);
    if (!link) return fail('link_error', `no serial port or TCP link configured for link ${meter.link} (DLMS links config "ports" or "tcp")`);
    onLink = link;
    let at: MeterLocation;
    try {
      at = link.locate(meter.address, profile.dlms);
    } catch (e) {
      return fail('link_error', (e as Error).message);
    }
    if (!this.isLinkUp(meter.link)) return fail('link_error', `${link.description} (link ${meter.link}) is not open`);
    const names = this.names.get(profile.id);
    if (!names || !this.passwords.has(profile.id)) return fail('link_error', `firmware profile ${profile.id} was not given to the DLMS driver`);
    const d = profile.dlms;
    let keys: MeterKeys | undefined;
    if (d.security === 'hls-gmac' || d.ciphering !== 'none') {
      // Keys first: a meter without keys costs no wire traffic.
      keys = keysOverride ?? (await this.keyring?.keysFor(meter.meterId));
      if (!keys || !this.keyring) return fail('auth_failed', `no keys imported for meter ${meter.meterId}: its profile ${profile.id} uses ${d.security} with ciphering ${d.ciphering}; import the meter's key file`);
      // The profile names the keys its meters need (GUEK, GAK, KEK where renewal is wanted): a key set without one costs no traffic.
      const missing = (d.keys ?? []).find((name) => !keys![KEY_FIELD[name].field]?.length);
      if (missing) {
        return fail('auth_failed', `meter ${meter.meterId}: its profile ${profile.id} needs the key ${missing} (${KEY_FIELD[missing].what}), but its key set ${keys.keySetId} has none; import its key file with the ${missing} column`);
      }
    }
    const first = await this.withKeys({ link, at, profile, names, keys, deadline, timeoutMs: options.timeoutMs, log, meterId: meter.meterId, started }, dialogue, fail);
    if (first.outcome !== 'auth_failed' || !keys || keysOverride || !this.keyring?.pendingKeysFor) return first;
    // Never locked out by a renewal: a meter that took new keys whose proof never came (the answer lost, the link cut)
    // refuses the current ones; the staged (pending) keys are tried once, and on success they become current.
    const pending = await this.keyring.pendingKeysFor(meter.meterId);
    if (!pending || pending.keySetId === keys.keySetId || Date.now() >= deadline) return first;
    log.warn({ keySetId: keys.keySetId, pendingKeySetId: pending.keySetId }, 'meter refused its current keys: trying the keys staged by its last renewal');
    const second = await this.withKeys({ link, at, profile, names, keys: pending, deadline, timeoutMs: options.timeoutMs, log, meterId: meter.meterId, started }, dialogue, fail);
    if (second.outcome === 'ok' && this.keyring.confirmPendingKeys) {
      await this.keyring.confirmPendingKeys(meter.meterId, pending.keySetId);
      log.info({ keySetId: pending.keySetId, retiredKeySetId: keys.keySetId }, 'the pending keys associated: they are now the meter\'s keys');
    }
    return second;
  }

  /** One conversation with these keys, resynchronising the invocation counter once if the meter says it is too low. */
  private async withKeys<T>(
    c: { link: DlmsLink; at: MeterLocation; profile: DlmsFirmwareProfile; names: ObjectNames; keys: MeterKeys | undefined; deadline: number; timeoutMs: number; log: Logger; meterId: string; started: number },
    dialogue: Dialogue<T>,
    fail: (outcome: WireFailure, detail: string, evidence?: string, result?: number) => WireResult<T>,
  ): Promise<WireResult<T>> {
    const { keys, log } = c;
    const meter = { meterId: c.meterId };
    let resynced = false;
    for (;;) {
      const r = await this.conversation(c, dialogue, fail);
      if (!(r instanceof CounterTooLow)) return r;
      if (resynced || !keys) return fail('auth_failed', `${r.detail}, even after resynchronising from its frame counter`, r.evidence);
      resynced = true;
      log.warn({ expected: r.expected, keySetId: keys.keySetId }, 'meter says the invocation counter is too low: resynchronising through the public client');
      try {
        await this.resyncCounter(c, keys);
      } catch (e) {
        const f = e instanceof DlmsWireFailure ? e : new DlmsWireFailure('garbled', `unexpected error: ${(e as Error).message}`);
        return fail(f.outcome, `resynchronising the invocation counter of meter ${meter.meterId}: ${f.detail}`, f.evidence);
      }
    }
  }

  /**
   * One association on the link: resolves as soon as the answer is in (the link then releases and disconnects
   * before it is free again), or with the CounterTooLow refusal (nothing executed) for the caller to resynchronise.
   */
  private conversation<T>(
    c: { link: DlmsLink; at: MeterLocation; profile: DlmsFirmwareProfile; names: ObjectNames; keys: MeterKeys | undefined; deadline: number; timeoutMs: number; log: Logger; meterId: string; started: number },
    dialogue: Dialogue<T>,
    fail: (outcome: WireFailure, detail: string, evidence?: string, result?: number) => WireResult<T>,
  ): Promise<WireResult<T> | CounterTooLow> {
    const { link, profile, log } = c;
    const d = profile.dlms;
    let answered = false;
    return new Promise<WireResult<T> | CounterTooLow>((resolve) => {
      // The link runs the conversation holding what it needs exclusively (bus lock, connection slot).
      const conversation = link.converse(c.at, { profile: d, deadline: c.deadline, timeoutMs: c.timeoutMs, log }, async (t) => {
        if (this.stopped) throw new DlmsWireFailure('link_error', `${link.description} is not open`);
        this.counters.conversations++;
        const where = t.where;
        const secure = c.keys
          ? new CipheringChannel(t.channel, { meterId: c.meterId, where, keys: c.keys, keyring: this.keyring!, clientSystemTitle: this.clientSystemTitle, mechanism: d.security, policy: d.ciphering, dedicatedKey: d.dedicatedKey, cipheredApdu: d.cipheredApdu })
          : undefined;
        const cosem = new CosemClient(secure ?? t.channel, where);
        const settle = (r: WireResult<T> | CounterTooLow) => {
          const n = t.counters();
          this.counters.frameRepeats += n.repeats;
          this.counters.badFrames += n.badFrames;
          countFrames(link, n);
          answered = true;
          resolve(r);
        };
        try {
          await t.connect();
          const password = this.passwords.get(profile.id);
          await cosem.associate({ mechanism: d.security, ...(password ? { password } : {}), maxPduSize: d.maxPduSize, ...(secure ? { secure } : {}) });
          const { value, evidence } = await dialogue(cosem, c.names, log);
          this.counters.ok++;
          const latencyMs = Date.now() - c.started;
          log.debug({ latencyMs, ...evidence }, 'dlms request answered');
          settle({ outcome: 'ok', value, evidence: JSON.stringify({ server: where, ...evidence, ...(c.keys ? { keySetId: c.keys.keySetId, ciphering: d.ciphering } : {}), apdus: secure ? secure.wire : cosem.answers }), latencyMs });
          // Finish the conversation cleanly, on a budget of its own, before the link is free again.
          t.extendDeadline(d.hdlc.responseTimeoutMs * 2);
          await cosem.release().catch((e: unknown) => log.debug({ err: (e as Error).message }, 'release not confirmed'));
        } catch (e) {
          if (e instanceof CounterTooLow) settle(e);
          else if (!(e instanceof DlmsWireFailure)) {
            log.error({ err: e }, 'dlms conversation crashed');
            settle(fail('garbled', `unexpected error: ${(e as Error).message}`, t.evidence()));
          } else settle(fail(e.outcome, e.detail, e.evidence ?? t.evidence(), e.result));
        } finally {
          await t.disconnect();
        }
      });
      conversation.catch((e: unknown) => {
        // The conversation could not start: link down, busy past the deadline, meter unreachable.
        if (answered) return log.debug({ err: (e as Error).message }, 'link not released cleanly after the answer');
        if (e instanceof DlmsWireFailure) resolve(fail(e.outcome, e.detail, e.evidence, e.result));
        else resolve(fail('link_error', `link ${link.name}: ${(e as Error).message}`));
      });
    });
  }

  /**
   * "Counter too low": a new association as the public client (lowest security, the profile's public client SAP
   * or wPort), GET the frame counter (class 1 Data, attribute 2), and raise the keyring past it (the Green Book's
   * invocation counter rules).
   */
  private async resyncCounter(c: { link: DlmsLink; at: MeterLocation; profile: DlmsFirmwareProfile; deadline: number; timeoutMs: number; log: Logger; meterId: string }, keys: MeterKeys): Promise<void> {
    const d = c.profile.dlms;
    let failure: unknown;
    await c.link.converse(c.at, { profile: { ...d, clientSap: d.publicClientSap }, deadline: c.deadline, timeoutMs: c.timeoutMs, log: c.log }, async (t) => {
      const cosem = new CosemClient(t.channel, t.where);
      try {
        await t.connect();
        await cosem.associate({ mechanism: 'lowest', maxPduSize: d.maxPduSize });
        const value = await cosem.get(attr(DATA_CLASS_ID, parseObis(d.frameCounterObis), DATA_VALUE_ATTRIBUTE, 'frame_counter.value'));
        if (value.type !== 'double-long-unsigned' && value.type !== 'long64-unsigned' && value.type !== 'double-long') throw new DlmsWireFailure('garbled', `frame counter ${d.frameCounterObis} is ${value.type}, not a 32-bit counter`, cosem.answers.at(-1));
        const seen = Number(value.value);
        await this.keyring!.raiseInvocationCounter(c.meterId, keys.keySetId, seen + 1);
        this.counters.counterResyncs++;
        c.log.info({ frameCounter: seen, keySetId: keys.keySetId }, 'invocation counter resynchronised from the meter frame counter');
        t.extendDeadline(d.hdlc.responseTimeoutMs * 2);
        await cosem.release().catch(() => undefined);
      } catch (e) {
        failure = e;
      } finally {
        await t.disconnect();
      }
    });
    if (failure !== undefined) throw failure;
  }

  private count(outcome: WireFailure): void {
    if (outcome === 'auth_failed') this.counters.authFailures++;
    else if (outcome === 'timeout') this.counters.timeouts++;
    else if (outcome === 'nack' || outcome === 'load_side_voltage') this.counters.nacks++; // the meter refused
    else if (outcome === 'garbled') this.counters.garbled++;
    else this.counters.linkErrors++;
  }
}

function limiterSetup(l: NonNullable<DlmsFirmwareProfile['dlms']['limiter']>): LimiterSetup {
  return { logicalName: parseObis(l.logicalName), encoding: thresholdEncoding(l), ...(l.minOverThresholdDurationS !== undefined ? { minOverThresholdDurationS: l.minOverThresholdDurationS } : {}) };
}

/** A failed request on its link: timeouts and garbled answers counted, a refusal counted by its result name; a failure of the link itself (not a meter's refusal) is its last error. */
function countOnLink(link: DlmsLink, outcome: WireFailure, detail: string, result: number | undefined): void {
  if (outcome === 'timeout') link.traffic.timeouts++;
  else if (outcome === 'garbled') link.traffic.garbled++;
  if (result !== undefined) countException(link.traffic.exceptions, resultName(result));
  if (outcome === 'timeout' || outcome === 'garbled' || outcome === 'link_error') link.state.failed(detail);
}

/** What one conversation met below the APDUs, on its link's counters. */
function countFrames(link: DlmsLink, n: SessionCounters): void {
  link.traffic.frameRetries += n.repeats;
  link.traffic.crcErrors += n.fcsErrors;
  link.traffic.unknownCorrelationIds += n.strayFrames;
  link.traffic.garbled += n.badFrames - n.fcsErrors - n.strayFrames;
}
