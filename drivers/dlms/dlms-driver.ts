import { pino, type Logger } from 'pino';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import type { CommandAck, MeterAddress, MeterDriver, RelayReading, RequestOptions, WireFailure, WireResult } from '../driver.js';
import type { DlmsData } from './axdr.js';
import { BusLock } from './bus-lock.js';
import { CosemClient } from './cosem-client.js';
import { hdlcApduChannel } from './apdu-channel.js';
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
import { parseObis, type LogicalName } from './cosem/obis.js';
import { readScalerUnit, REGISTER_CLASS_ID, RegisterAttribute, scaledValue, Unit } from './cosem/register.js';
import type { DlmsLinksConfig, DlmsPortConfig } from './dlms-config.js';
import { HdlcClient } from './hdlc-client.js';
import { formatServerAddress, parseServerAddress, type ServerAddress } from './hdlc-address.js';
import { resolvePassword } from './password.js';
import { SerialLine } from './serial-line.js';
import { DlmsWireFailure } from './wire-failure.js';
import { CipheringChannel, CounterTooLow } from './security/ciphering-channel.js';
import type { MeterKeyring, MeterKeys } from './security/keyring.js';
import { DEFAULT_CLIENT_SYSTEM_TITLE } from './dlms-config.js';

/**
 * The DLMS/COSEM meter driver over HDLC serial links. Each `readRelay` and `operateRelay` is one complete
 * conversation with one meter: SNRM/UA, AARQ/AARE, the reads or the ACTION and its read-back, RLRQ/RLRE,
 * DISC/UA. Conversations on one port run one at a time (half-duplex bus, meters told apart by HDLC
 * server address); the port lock is always released, whatever the meter does. The result is returned as
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
}

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
}

interface Port {
  name: string;
  config: DlmsPortConfig;
  line: SerialLine;
  lock: BusLock;
}

interface ObjectNames {
  disconnectControl: LogicalName;
  activeEnergyImport: LogicalName;
  voltage: LogicalName;
  clock: LogicalName;
}

/** The body of a conversation: what it asks the associated meter, and the value it makes of the answers. */
type Dialogue<T> = (cosem: CosemClient, names: ObjectNames, log: Logger) => Promise<{ value: T; evidence: Record<string, unknown> }>;

/** COSEM class 1 "Data" (Blue Book §4.3.1): attribute 2 value. */
const DATA_CLASS_ID = 1;
const DATA_VALUE_ATTRIBUTE = 2;

const attr = (classId: number, logicalName: LogicalName, attribute: number, name: string): CosemAttribute => ({ classId, logicalName, attribute, name });

export class DlmsDriver implements MeterDriver {
  readonly protocol = 'dlms' as const;
  readonly counters: DlmsDriverCounters = { conversations: 0, ok: 0, timeouts: 0, nacks: 0, garbled: 0, linkErrors: 0, frameRepeats: 0, badFrames: 0, authFailures: 0, counterResyncs: 0 };

  private readonly ports = new Map<string, Port>();
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
        disconnectControl: parseObis(o.disconnectControl),
        activeEnergyImport: parseObis(o.activeEnergyImport),
        voltage: parseObis(o.voltage),
        clock: parseObis(o.clock),
      });
    }
    for (const [name, config] of Object.entries(options.links.ports)) {
      const line = new SerialLine({ path: config.path, baudRate: config.baudRate, ...(config.parity ? { parity: config.parity } : {}), reopenMs: options.reopenMs ?? 250, logger: this.log.child({ link: name }) });
      this.ports.set(name, { name, config, line, lock: new BusLock() });
    }
  }

  async start(): Promise<void> {
    this.stopped = false;
    await Promise.all([...this.ports.values()].map((p) => p.line.open()));
    for (const p of this.ports.values()) if (!p.line.isOpen) this.log.warn({ link: p.name, path: p.config.path }, 'serial port not available yet; requests get link_error until it is back');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.ports.values()].map((p) => p.line.close()));
  }

  isLinkUp(link: string): boolean {
    return !this.stopped && this.ports.get(link)?.line.isOpen === true;
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
      await cosem.action(method, METHOD_PARAMETER);
      // What the meter shows right after: its claim (armed when the mode makes ready_for_reconnection the end state).
      const state = readControlState(await cosem.get(dc(DisconnectControlAttribute.controlState, 'control_state')));
      if (typeof state === 'string') throw new DlmsWireFailure('garbled', state, cosem.answers.at(-1));
      const claimedRelay = relayFromControlState(state);
      if (claimedRelay !== expected) log.warn({ controlMode: mode, expected, claimedRelay }, 'control_state after the ACTION is not the expected end state');
      const remoteReconnect = remoteReconnectOutcome(mode as ControlMode) === 'armed' ? ('arms' as const) : ('closes' as const);
      return { value: { claimedRelay, remoteReconnect }, evidence: { action: method.name, result: 'success', controlMode: mode, expected, claimedRelay, controlState: state } };
    });
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

  private async converse<T>(meter: MeterAddress, options: RequestOptions, op: 'read' | SwitchAction, dialogue: Dialogue<T>): Promise<WireResult<T>> {
    const started = Date.now();
    const deadline = started + options.timeoutMs;
    const log = this.log.child({ meterId: meter.meterId, link: meter.link, op, correlationId: options.correlationId, ...(options.orderId !== undefined ? { orderId: options.orderId } : {}), ...(options.attempt !== undefined ? { attempt: options.attempt } : {}) });
    const fail = (outcome: WireFailure, detail: string, evidence?: string): WireResult<T> => {
      this.count(outcome);
      log.warn({ outcome, detail }, 'dlms request failed');
      return { outcome, detail, ...(evidence !== undefined ? { evidence } : {}), latencyMs: Date.now() - started };
    };
    if (meter.profile.protocol !== 'dlms') return fail('link_error', `meter ${meter.meterId}: profile ${meter.profile.id} is ${meter.profile.protocol}, not dlms`);
    const profile = meter.profile;
    const port = this.ports.get(meter.link);
    if (!port) return fail('link_error', `no serial port configured for link ${meter.link} (DLMS links config "ports")`);
    let server: ServerAddress;
    try {
      server = parseServerAddress(meter.address, profile.dlms.serverLogicalAddress);
    } catch (e) {
      return fail('link_error', (e as Error).message);
    }
    if (!this.isLinkUp(meter.link)) return fail('link_error', `serial port ${port.config.path} (link ${meter.link}) is not open`);
    const names = this.names.get(profile.id);
    if (!names || !this.passwords.has(profile.id)) return fail('link_error', `firmware profile ${profile.id} was not given to the DLMS driver`);
    const d = profile.dlms;
    let keys: MeterKeys | undefined;
    if (d.security === 'hls-gmac' || d.ciphering !== 'none') {
      // Keys first: a meter without keys costs no wire traffic.
      keys = await this.keyring?.keysFor(meter.meterId);
      if (!keys || !this.keyring) return fail('auth_failed', `no keys imported for meter ${meter.meterId}: its profile ${profile.id} uses ${d.security} with ciphering ${d.ciphering}; import the meter's key file`);
    }
    const where = formatServerAddress(server);

    return new Promise<WireResult<T>>((resolve) => {
      void port.lock.run(async () => {
        if (Date.now() >= deadline) return resolve(fail('timeout', `the bus ${meter.link} stayed busy past the deadline`));
        if (!port.line.isOpen || this.stopped) return resolve(fail('link_error', `serial port ${port.config.path} (link ${meter.link}) is not open`));
        this.counters.conversations++;
        let resynced = false;
        for (;;) {
          const tooLow = await this.conversation({ port, server, where, profile, names, keys, deadline, timeoutMs: options.timeoutMs, log, meterId: meter.meterId, started }, dialogue, resolve, fail);
          if (!tooLow) return;
          if (resynced || !keys) return resolve(fail('auth_failed', `${tooLow.detail}, even after resynchronising from its frame counter`, tooLow.evidence));
          resynced = true;
          log.warn({ expected: tooLow.expected, keySetId: keys.keySetId }, 'meter says the invocation counter is too low: resynchronising through the public client');
          try {
            await this.resyncCounter(port, server, where, profile, keys, meter.meterId, deadline, options.timeoutMs, log);
          } catch (e) {
            const f = e instanceof DlmsWireFailure ? e : new DlmsWireFailure('garbled', `unexpected error: ${(e as Error).message}`);
            return resolve(fail(f.outcome, `resynchronising the invocation counter of meter ${meter.meterId}: ${f.detail}`, f.evidence));
          }
        }
      });
    });
  }

  /**
   * One HDLC connection and association: resolves the request as soon as the answer is in (then releases and
   * disconnects), or returns the CounterTooLow refusal (nothing executed) for the caller to resynchronise.
   */
  private async conversation<T>(
    c: { port: Port; server: ServerAddress; where: string; profile: DlmsFirmwareProfile; names: ObjectNames; keys: MeterKeys | undefined; deadline: number; timeoutMs: number; log: Logger; meterId: string; started: number },
    dialogue: Dialogue<T>,
    resolve: (r: WireResult<T>) => void,
    fail: (outcome: WireFailure, detail: string, evidence?: string) => WireResult<T>,
  ): Promise<CounterTooLow | undefined> {
    const d = c.profile.dlms;
    const hdlc = this.hdlcClient(c.port, c.server, d.clientSap, c.profile, c.deadline, c.timeoutMs, c.log);
    const plain = hdlcApduChannel(hdlc, c.where);
    const secure = c.keys
      ? new CipheringChannel(plain, { meterId: c.meterId, where: c.where, keys: c.keys, keyring: this.keyring!, clientSystemTitle: this.clientSystemTitle, mechanism: d.security, policy: d.ciphering, dedicatedKey: d.dedicatedKey })
      : undefined;
    const cosem = new CosemClient(secure ?? plain, c.where);
    let connected = false;
    const settle = (r: WireResult<T>) => {
      this.counters.frameRepeats += hdlc.counters.repeats;
      this.counters.badFrames += hdlc.counters.badFrames;
      resolve(r);
    };
    try {
      await hdlc.connect();
      connected = true;
      const password = this.passwords.get(c.profile.id);
      await cosem.associate({ mechanism: d.security, ...(password ? { password } : {}), maxPduSize: d.maxPduSize, ...(secure ? { secure } : {}) });
      const { value, evidence } = await dialogue(cosem, c.names, c.log);
      this.counters.ok++;
      const latencyMs = Date.now() - c.started;
      c.log.debug({ latencyMs, ...evidence }, 'dlms request answered');
      settle({ outcome: 'ok', value, evidence: JSON.stringify({ server: c.where, ...evidence, ...(c.keys ? { keySetId: c.keys.keySetId, ciphering: d.ciphering } : {}), apdus: secure ? secure.wire : cosem.answers }), latencyMs });
      // Finish the conversation cleanly, on a budget of its own, before the bus is free again.
      hdlc.deadline = Date.now() + d.hdlc.responseTimeoutMs * 2;
      await cosem.release().catch((e: unknown) => c.log.debug({ err: (e as Error).message }, 'release not confirmed'));
      return undefined;
    } catch (e) {
      if (e instanceof CounterTooLow) return e;
      if (!(e instanceof DlmsWireFailure)) {
        c.log.error({ err: e }, 'dlms conversation crashed');
        settle(fail('garbled', `unexpected error: ${(e as Error).message}`, hdlc.evidence()));
      } else settle(fail(e.outcome, e.detail, e.evidence ?? hdlc.evidence()));
      return undefined;
    } finally {
      if (connected) await hdlc.disconnect(Math.min(d.hdlc.responseTimeoutMs, 100));
      hdlc.close();
      if (c.port.config.interFrameMs) await new Promise((r) => setTimeout(r, c.port.config.interFrameMs));
    }
  }

  private hdlcClient(port: Port, server: ServerAddress, clientSap: number, profile: DlmsFirmwareProfile, deadline: number, timeoutMs: number, log: Logger): HdlcClient {
    const d = profile.dlms;
    return new HdlcClient({
      line: port.line,
      server,
      clientSap,
      proposal: { maxInfoTx: d.hdlc.maxInfoTx, maxInfoRx: d.hdlc.maxInfoRx, windowTx: d.hdlc.windowTx, windowRx: d.hdlc.windowRx },
      responseTimeoutMs: Math.min(d.hdlc.responseTimeoutMs, Math.max(10, Math.floor(timeoutMs / (port.config.frameRetries + 2)))),
      frameRetries: port.config.frameRetries,
      deadline,
      log,
    });
  }

  /**
   * "Counter too low": a new HDLC connection as the public client (lowest security), GET the frame counter
   * (class 1 Data, attribute 2), and raise the keyring past it (the Green Book invocation counter rules).
   */
  private async resyncCounter(port: Port, server: ServerAddress, where: string, profile: DlmsFirmwareProfile, keys: MeterKeys, meterId: string, deadline: number, timeoutMs: number, log: Logger): Promise<void> {
    const d = profile.dlms;
    const hdlc = this.hdlcClient(port, server, d.publicClientSap, profile, deadline, timeoutMs, log);
    const cosem = new CosemClient(hdlcApduChannel(hdlc, where), where);
    let connected = false;
    try {
      await hdlc.connect();
      connected = true;
      await cosem.associate({ mechanism: 'lowest', maxPduSize: d.maxPduSize });
      const value = await cosem.get(attr(DATA_CLASS_ID, parseObis(d.frameCounterObis), DATA_VALUE_ATTRIBUTE, 'frame_counter.value'));
      if (value.type !== 'double-long-unsigned' && value.type !== 'long64-unsigned' && value.type !== 'double-long') throw new DlmsWireFailure('garbled', `frame counter ${d.frameCounterObis} is ${value.type}, not a 32-bit counter`, cosem.answers.at(-1));
      const seen = Number(value.value);
      await this.keyring!.raiseInvocationCounter(meterId, keys.keySetId, seen + 1);
      this.counters.counterResyncs++;
      log.info({ frameCounter: seen, keySetId: keys.keySetId }, 'invocation counter resynchronised from the meter frame counter');
      hdlc.deadline = Date.now() + d.hdlc.responseTimeoutMs * 2;
      await cosem.release().catch(() => undefined);
    } finally {
      if (connected) await hdlc.disconnect(Math.min(d.hdlc.responseTimeoutMs, 100));
      hdlc.close();
    }
  }

  private count(outcome: WireFailure): void {
    if (outcome === 'auth_failed') this.counters.authFailures++;
    else if (outcome === 'timeout') this.counters.timeouts++;
    else if (outcome === 'nack') this.counters.nacks++;
    else if (outcome === 'garbled') this.counters.garbled++;
    else this.counters.linkErrors++;
  }
}
