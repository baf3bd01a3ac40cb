import type { RelayState } from '../src/domain/relay.js';
import type { FirmwareProfile } from '../src/domain/firmware-profile.js';

/**
 * The protocol-independent simulated meter. It owns the relay, the supply voltage, the energy register
 * and every fault a real meter (or its link) shows in the field: lost commands, silence, late and garbled
 * answers, refusals, a stuck relay, a meter that claims success without switching. The MQTT, Modbus and
 * DLMS front-ends only translate bytes to `handle()` calls and decisions back to bytes, so every
 * protocol simulator misbehaves in the same, testable way.
 *
 * The model is cheap enough for tens of thousands of meters in one process: no timers unless a fault
 * needs one (late replies are delayed by the front-end; only `autoPressAfterMs` schedules a timer), and
 * the energy register is computed lazily from the clock.
 */

/** `limit`: set (watts) or remove (null) the demand limit (DOMAIN.md rule 10), from `MeterCommand.limitW`. */
export type MeterOp = 'disconnect' | 'reconnect' | 'read' | 'limit';

/** What the front-end decoded from the wire. */
export interface MeterCommand {
  cid: string;
  orderId?: string;
  /** Expiry (ms since epoch): a command that arrives after it is dropped without action or reply. */
  exp?: number;
  /** For `limit`: the demand limit to set in watts, or null to remove it; a limit without it is refused. */
  limitW?: number | null;
}

/** What became of one received command. */
export type CommandFate = 'executed' | 'nacked' | 'expired' | 'offline' | 'dropped';

export interface ReceivedCommand {
  at: number;
  op: MeterOp;
  cid: string;
  orderId?: string;
  fate: CommandFate;
}

/** The meter's answer to one command; the front-end sends it `replyDelayMs` from now. */
export interface MeterReply {
  result: 'ok' | 'nack';
  /** The relay state the reply claims (the truth, unless the meter lies). */
  relay: RelayState;
  reason?: string;
  /** Why a close was refused, in the words the front-end maps to its protocol: voltage on the load side (rule 14). */
  refusal?: 'load_side_voltage';
  voltageV: number;
  /** Voltage on the load (customer) side of the relay. */
  loadSideVoltageV: number;
  /** The demand limit in force (W), null when none. */
  loadLimitW: number | null;
  energyWh: number;
  /** When the meter took the reading (ms since epoch). */
  ts: number;
  replyDelayMs: number;
  /** When true the front-end sends `garbage` instead of an encoded reply. */
  garbled: boolean;
  garbage?: Uint8Array;
}

export interface MeterFaults {
  /** The next n relay commands (not reads) are lost: no action, no reply. */
  dropCommands: number;
  /** The meter answers nothing and does nothing until this time (ms since epoch). */
  offlineUntil: number;
  /** Replies are sent this long after the command; the action itself happens at once. */
  lateReplyMs: number;
  /** The relay does not move; replies truthfully ('ok' with the unchanged relay). */
  stuckRelay: boolean;
  /** The relay does not move, but command replies claim the asked state; reads tell the truth. */
  lieAboutSuccess: boolean;
  /** The next n replies are garbage bytes. */
  garbleReplies: number;
  /** The next n relay commands are refused with a reason. */
  nackCommands: number;
  /** For 'arms' meters: the simulated customer presses the button this long after the relay was armed. */
  autoPressAfterMs?: number;
  /** Relay closed but no voltage (network-side fault). */
  supplyFault: boolean;
  /**
   * Voltage on the load side while the relay is open (a bypass, a generator backfeed, tampering). A meter that
   * checks its load side (`checksLoadSide`) refuses to close or arm then, with `refusal: 'load_side_voltage'`.
   */
  backfeed: boolean;
}

export type ChangeCause = 'button' | 'trip';
export type ChangeListener = (meter: SimulatedMeter, previous: RelayState, cause: ChangeCause) => void;

/** Schedules `fn` after `ms`; returns a cancel function. Injectable so unit tests drive time by hand. */
export type Scheduler = (fn: () => void, ms: number) => () => void;

export interface SimulatedMeterOptions {
  id: string;
  remoteReconnect: FirmwareProfile['relay']['remoteReconnect'];
  now: () => number;
  initialRelay?: RelayState;
  /** Constant load while the relay is closed and the supply is up (W). Default 1000. */
  loadW?: number;
  initialEnergyWh?: number;
  nominalVoltageV?: number;
  /** Peak deviation of the reported voltage from nominal (V). Default 2. */
  voltageNoiseV?: number;
  faults?: Partial<MeterFaults>;
  schedule?: Scheduler;
  /** The meter itself checks the load side before closing and refuses with voltage there (rule 14). Default false. */
  checksLoadSide?: boolean;
  /**
   * Keep the received commands in `received` (default true: tests inspect it), the latest COMMAND_LOG_LIMIT of them per
   * meter, so a long-running fleet (the demo's in-process simulator) does not grow without end. A fleet nobody inspects
   * (the simulator CLI) turns it off.
   */
  keepCommandLog?: boolean;
}

/** How many received commands a simulated meter keeps for inspection (the oldest go first). */
export const COMMAND_LOG_LIMIT = 1_000;

export function noFaults(): MeterFaults {
  return {
    dropCommands: 0,
    offlineUntil: 0,
    lateReplyMs: 0,
    stuckRelay: false,
    lieAboutSuccess: false,
    garbleReplies: 0,
    nackCommands: 0,
    autoPressAfterMs: undefined,
    supplyFault: false,
    backfeed: false,
  };
}

const realScheduler: Scheduler = (fn, ms) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
};

/** Bytes that are neither JSON nor valid UTF-8: line noise as a meter modem produces it. */
function garbageBytes(): Uint8Array {
  const n = 6 + Math.floor(Math.random() * 10);
  const out = new Uint8Array(n);
  out[0] = 0xff;
  out[1] = 0xfe;
  for (let i = 2; i < n; i++) out[i] = Math.floor(Math.random() * 256);
  return out;
}

export class SimulatedMeter {
  readonly id: string;
  readonly remoteReconnect: 'closes' | 'arms';
  /** The latest commands that reached the meter (at most COMMAND_LOG_LIMIT), in arrival order, whatever became of each (empty with `keepCommandLog: false`). */
  readonly received: ReceivedCommand[] = [];
  readonly counters = { received: 0, executed: 0, replies: 0, expired: 0, offline: 0, dropped: 0, nacked: 0, garbled: 0 };
  /** The last reply the meter produced (garbage bytes included), for inspection. */
  lastReply: MeterReply | undefined;
  /** Current faults. Change them through `setFaults()` or the helper methods so the energy register stays exact. */
  readonly faults: MeterFaults;
  /** Whether the meter refuses to close with voltage on the load side. */
  readonly checksLoadSide: boolean;

  private readonly now: () => number;
  private readonly keepCommandLog: boolean;
  private readonly schedule: Scheduler;
  private readonly loadW: number;
  private readonly nominalVoltageV: number;
  private readonly voltageNoiseV: number;
  private relayState: RelayState;
  private limitW: number | null = null;
  /** Energy register at `energyMarkAt`; energy since then is computed from the state. */
  private energyMarkWh: number;
  private energyMarkAt: number;
  private listeners: ChangeListener[] | undefined;
  private cancelAutoPress: (() => void) | undefined;

  constructor(options: SimulatedMeterOptions) {
    this.id = options.id;
    this.remoteReconnect = options.remoteReconnect;
    this.now = options.now;
    this.schedule = options.schedule ?? realScheduler;
    this.loadW = options.loadW ?? 1000;
    this.nominalVoltageV = options.nominalVoltageV ?? 230;
    this.voltageNoiseV = options.voltageNoiseV ?? 2;
    this.relayState = options.initialRelay ?? 'connected';
    this.energyMarkWh = options.initialEnergyWh ?? 0;
    this.energyMarkAt = this.now();
    this.faults = { ...noFaults(), ...options.faults };
    this.checksLoadSide = options.checksLoadSide ?? false;
    this.keepCommandLog = options.keepCommandLog ?? true;
  }

  get relay(): RelayState {
    return this.relayState;
  }

  /** Supply voltage at the meter (supply side, so present whatever the relay state), 0 on a supply fault. */
  get voltageV(): number {
    if (this.faults.supplyFault) return 0;
    const noise = (Math.random() * 2 - 1) * this.voltageNoiseV;
    return Math.round((this.nominalVoltageV + noise) * 10) / 10;
  }

  /**
   * Voltage on the load side of the relay: the supply's while it is closed; while it is open, only a backfeed's
   * (a generator or a bypass feeding the customer's wiring), else 0.
   */
  get loadSideVoltageV(): number {
    if (this.relayState === 'connected') return this.voltageV;
    return this.faults.backfeed ? Math.round((this.nominalVoltageV - 5 + Math.random()) * 10) / 10 : 0;
  }

  /** The demand limit in force (W), null when none. */
  get loadLimitW(): number | null {
    return this.limitW;
  }

  /** Set the demand limit without a command (test and scenario set-up). */
  setLoadLimit(limitW: number | null): void {
    this.settleEnergy();
    this.limitW = limitW;
  }

  /** Cumulative energy import (Wh, whole units as a register shows them). */
  get energyWh(): number {
    return Math.floor(this.exactEnergyWh(this.now()));
  }

  /** Register a listener for relay changes the meter makes on its own (button press, local trip). */
  onChange(listener: ChangeListener): () => void {
    (this.listeners ??= []).push(listener);
    return () => {
      this.listeners = this.listeners?.filter((l) => l !== listener);
    };
  }

  setFaults(faults: Partial<MeterFaults>): void {
    this.settleEnergy();
    Object.assign(this.faults, faults);
  }

  clearFaults(): void {
    this.setFaults(noFaults());
  }

  dropCommands(n: number): void {
    this.faults.dropCommands = n;
  }

  offlineUntil(t: number): void {
    this.faults.offlineUntil = t;
  }

  garbleReplies(n: number): void {
    this.faults.garbleReplies = n;
  }

  nackCommands(n: number): void {
    this.faults.nackCommands = n;
  }

  setSupplyFault(on: boolean): void {
    this.setFaults({ supplyFault: on });
  }

  /** Put the relay in a state without any event (test and scenario set-up). */
  setRelay(state: RelayState): void {
    this.moveRelay(state);
  }

  /** The customer presses the button: an armed relay closes. Returns whether the relay moved. */
  pressButton(): boolean {
    if (this.relayState !== 'armed') return false;
    this.moveRelay('connected');
    this.emit('armed', 'button');
    return true;
  }

  /** A local trip (overload, tamper): the relay opens on its own. Returns whether the relay moved. */
  trip(): boolean {
    if (this.relayState === 'disconnected') return false;
    const previous = this.relayState;
    this.moveRelay('disconnected');
    this.emit(previous, 'trip');
    return true;
  }

  /**
   * Decide what the meter does with one command arriving at `now`: act on the relay (at once) and return
   * the reply to send, or undefined when nothing is sent back.
   */
  handle(op: MeterOp, now: number, cmd: MeterCommand): MeterReply | undefined {
    const entry: ReceivedCommand = { at: now, op, cid: cmd.cid, fate: 'executed' };
    if (cmd.orderId !== undefined) entry.orderId = cmd.orderId;
    if (this.keepCommandLog) {
      this.received.push(entry);
      if (this.received.length > COMMAND_LOG_LIMIT) this.received.splice(0, this.received.length - COMMAND_LOG_LIMIT);
    }
    this.counters.received++;
    const f = this.faults;

    if (now < f.offlineUntil) return this.silent(entry, 'offline');
    if (cmd.exp !== undefined && cmd.exp < now) return this.silent(entry, 'expired');

    if (op === 'read') return this.reply(now, 'ok', this.relayState);
    // A limit command that does not say the limit (the MQTT contract requires `limitW`, null to remove) is refused:
    // taking it as "no limit" would lift a customer's limit on a malformed command, which no real meter should do.
    if (op === 'limit' && cmd.limitW === undefined) {
      entry.fate = 'nacked';
      this.counters.nacked++;
      return this.reply(now, 'nack', this.relayState, 'limit command without limitW');
    }

    if (f.dropCommands > 0) {
      f.dropCommands--;
      return this.silent(entry, 'dropped');
    }
    if (f.nackCommands > 0) {
      f.nackCommands--;
      entry.fate = 'nacked';
      this.counters.nacked++;
      return this.reply(now, 'nack', this.relayState, 'command refused by meter (simulated)');
    }
    if (op === 'limit') {
      const limitW = cmd.limitW ?? null;
      this.counters.executed++;
      if (!f.lieAboutSuccess && !f.stuckRelay) this.setLoadLimit(limitW);
      return this.reply(now, 'ok', this.relayState, undefined, f.lieAboutSuccess ? limitW : undefined);
    }
    if (op === 'reconnect' && this.relayState !== 'connected' && this.checksLoadSide && f.backfeed) {
      entry.fate = 'nacked';
      this.counters.nacked++;
      const r = this.reply(now, 'nack', this.relayState, 'close refused: voltage on the load side');
      r.refusal = 'load_side_voltage';
      return r;
    }
    this.counters.executed++;
    const asked: RelayState =
      op === 'disconnect' ? 'disconnected' : this.remoteReconnect === 'arms' ? this.reconnectTarget() : 'connected';
    if (f.lieAboutSuccess) return this.reply(now, 'ok', asked);
    if (f.stuckRelay) return this.reply(now, 'ok', this.relayState);
    this.moveRelay(asked);
    return this.reply(now, 'ok', this.relayState);
  }

  /**
   * A link-level contact before any command is known (a DLMS/HDLC SNRM): whether the meter answers at `now`.
   * An offline meter does not, and the contact counts in `counters.offline` as a command would.
   */
  acceptsContact(now: number): boolean {
    if (now < this.faults.offlineUntil) {
      this.counters.offline++;
      return false;
    }
    return true;
  }

  /** Cancel the meter's timers (auto-press). */
  dispose(): void {
    this.cancelAutoPress?.();
    this.cancelAutoPress = undefined;
  }

  /** What a remote reconnect does on an 'arms' meter: arm an open relay, leave a closed one closed. */
  private reconnectTarget(): RelayState {
    return this.relayState === 'connected' ? 'connected' : 'armed';
  }

  private silent(entry: ReceivedCommand, fate: 'offline' | 'expired' | 'dropped'): undefined {
    entry.fate = fate;
    this.counters[fate]++;
    return undefined;
  }

  private reply(now: number, result: 'ok' | 'nack', relay: RelayState, reason?: string, claimedLimitW?: number | null): MeterReply {
    this.counters.replies++;
    const r: MeterReply = {
      result,
      relay,
      voltageV: this.voltageV,
      loadSideVoltageV: this.loadSideVoltageV,
      loadLimitW: claimedLimitW !== undefined ? claimedLimitW : this.limitW,
      energyWh: Math.floor(this.exactEnergyWh(now)),
      ts: now,
      replyDelayMs: this.faults.lateReplyMs,
      garbled: false,
    };
    if (reason !== undefined) r.reason = reason;
    if (this.faults.garbleReplies > 0) {
      this.faults.garbleReplies--;
      this.counters.garbled++;
      r.garbled = true;
      r.garbage = garbageBytes();
    }
    this.lastReply = r;
    return r;
  }

  private moveRelay(state: RelayState): void {
    if (state === this.relayState) return;
    this.settleEnergy();
    this.relayState = state;
    this.cancelAutoPress?.();
    this.cancelAutoPress = undefined;
    const pressAfter = this.faults.autoPressAfterMs;
    if (state === 'armed' && pressAfter !== undefined) {
      this.cancelAutoPress = this.schedule(() => {
        this.cancelAutoPress = undefined;
        this.pressButton();
      }, pressAfter);
    }
  }

  private emit(previous: RelayState, cause: ChangeCause): void {
    if (!this.listeners) return;
    for (const l of this.listeners) l(this, previous, cause);
  }

  private exactEnergyWh(at: number): number {
    const flowing = this.relayState === 'connected' && !this.faults.supplyFault;
    const dt = Math.max(0, at - this.energyMarkAt);
    // A limiter holds the demand at its threshold: the customer's load is served up to it.
    const w = this.limitW === null ? this.loadW : Math.min(this.loadW, this.limitW);
    return this.energyMarkWh + (flowing ? (w * dt) / 3_600_000 : 0);
  }

  private settleEnergy(): void {
    const t = this.now();
    this.energyMarkWh = this.exactEnergyWh(t);
    this.energyMarkAt = Math.max(t, this.energyMarkAt);
  }
}
