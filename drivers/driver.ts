import type { FirmwareProfile } from '../src/domain/firmware-profile.js';
import type { RelayState, SwitchAction } from '../src/domain/relay.js';

/**
 * The one interface every protocol driver implements (MQTT, Modbus, DLMS). The control loop
 * talks only to this; a driver never decides whether an order is done: it reports what the wire said.
 */

/** Where and how to reach one meter. */
export interface MeterAddress {
  meterId: string;
  profile: FirmwareProfile;
  /** The link the meter hangs off (broker connection, concentrator, serial bus); concurrency is bounded per link. */
  link: string;
  /** Where the meter sits on the link: Modbus unit id ("17"), DLMS HDLC server address; null for MQTT. */
  address: string | null;
}

/** What the meter reported about its relay and supply. */
export interface RelayReading {
  relay: RelayState;
  /** Supply voltage at the meter, if the meter reports it. */
  voltageV?: number;
  /** Cumulative active energy import, if the meter reports it. */
  energyWh?: number;
  /** When the meter took the reading (ms since epoch), or when the gateway received it. */
  at: number;
}

/**
 * How a request failed. `auth_failed`: the meter refused the gateway's credentials (a wrong password, key or
 * authentication tag); the same request cannot succeed by repeating it, so it is never retried blindly.
 */
export type WireFailure = 'timeout' | 'nack' | 'garbled' | 'link_error' | 'auth_failed';

/** The result of one request on the wire. `evidence` is the raw answer (payload text or hex bytes). */
export type WireResult<T> =
  | { outcome: 'ok'; value: T; evidence: string; latencyMs: number }
  | { outcome: WireFailure; detail: string; evidence?: string; latencyMs: number };

export interface RequestOptions {
  timeoutMs: number;
  /** Carried on the wire where the protocol allows, so replies (and the meter's log) name the request. */
  correlationId: string;
  /** The order the request belongs to, where the protocol can carry it (for the meter's own log). */
  orderId?: string;
  /** The attempt number within the order, for the driver's log lines. */
  attempt?: number;
}

/** A command reply: what the meter claimed. A claim is not proof; the control loop reads the relay back. */
export interface CommandAck {
  claimedRelay?: RelayState;
  /**
   * What a remote reconnect does on this meter, as the meter itself reports it (a DLMS meter's control_mode),
   * where the protocol lets it say so. It decides over the firmware profile: a meter that arms is `armed`, not a
   * mismatch, whatever profile it was registered under.
   */
  remoteReconnect?: 'closes' | 'arms';
}

export interface MeterDriver {
  readonly protocol: FirmwareProfile['protocol'];
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Whether a request to a meter on `link` could go on the wire now (broker connected, port open). The
   * control loop leaves a down link's orders queued, without spending their attempts, until it is back.
   */
  isLinkUp(link: string): boolean;
  /** Read the relay state (and voltage / energy where available). */
  readRelay(meter: MeterAddress, options: RequestOptions): Promise<WireResult<RelayReading>>;
  /** Send one disconnect or reconnect command and wait for the meter's acknowledgement. */
  operateRelay(meter: MeterAddress, action: SwitchAction, options: RequestOptions): Promise<WireResult<CommandAck>>;
  /** Unsolicited status reports (MQTT status topic, DLMS event push); optional. */
  onStatusReport?(listener: (meterId: string, reading: RelayReading, evidence: string) => void): void;
}
