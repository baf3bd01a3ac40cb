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
  /**
   * Voltage on the load side of the relay (customer side), where the meter measures it (DOMAIN.md rule 14).
   * Voltage there while the relay is open means a bypass, a generator backfeed or tampering.
   */
  loadSideVoltageV?: number;
  /**
   * The demand limit in force, in watts, where the profile has a load limiter (DOMAIN.md rule 10): null when no
   * limit is set, undefined when the profile has no limiter or the meter did not say.
   */
  loadLimitW?: number | null;
  /** When the meter took the reading (ms since epoch), or when the gateway received it. */
  at: number;
}

/**
 * How a request failed. `auth_failed`: the meter refused the gateway's credentials (a wrong password, key or
 * authentication tag); the same request cannot succeed by repeating it, so it is never retried blindly.
 * `load_side_voltage`: the meter refused to close its relay because there is voltage on the load side (or the
 * gateway found voltage there before sending close); closing is dangerous, so it is never retried blindly and the
 * reconnect goes to the field (DOMAIN.md rule 14).
 */
export type WireFailure = 'timeout' | 'nack' | 'garbled' | 'link_error' | 'auth_failed' | 'load_side_voltage';

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

/** A load-limit command reply: what the meter claimed. Only the read-back (`RelayReading.loadLimitW`) is proof. */
export interface LimitAck {
  claimedLimitW?: number | null;
}

/** The kinds of link a driver keeps (GET /v1/links). */
export type LinkKind = 'mqtt' | 'modbus-rtu' | 'modbus-tcp' | 'dlms-hdlc' | 'dlms-tcp';

/** One link's counters since the gateway started (monotonic; on /metrics as counters with a `link` label). */
export interface LinkCounters {
  /** Frames whose CRC / FCS did not check. */
  crcErrors: number;
  /** Answers that arrived but could not be decoded. */
  garbled: number;
  /** Frames sent again on the same request (corruption, lost frame). */
  frameRetries: number;
  /** Requests that got no answer in time. */
  timeouts: number;
  /** Protocol exceptions the devices answered, by code (Modbus exception code in hex "0x02", DLMS result name). */
  exceptions: Record<string, number>;
  /** Replies whose correlation id matched no request in flight (MQTT). */
  unknownCorrelationIds: number;
  /** Times the port / socket was opened again after it failed. */
  reopens: number;
  /** Times the connection (broker, TCP) was re-established after it dropped. */
  reconnects: number;
}

/** One link's health as the driver sees it now. */
export interface LinkHealth {
  /** The link's configured name (a meter's `link`). */
  link: string;
  kind: LinkKind;
  state: 'up' | 'down';
  /** When it entered that state (ms since epoch). */
  since: number;
  /** The last error the link met, in words, with when; null if none yet. */
  lastError: { at: number; message: string } | null;
  counters: LinkCounters;
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
  /**
   * Whether requests for `link` wait for a free slot on the driver's connection (its in-flight window is full). The
   * control loop leases no more of the link's orders until they have gone out: an order waits as a due order (small,
   * in priority order, its lease not yet running) rather than leased in the driver's first-come queue, where an urgent
   * reconnect would queue behind every order leased before it. Optional: a driver without a window of its own.
   */
  hasBacklog?(link: string): boolean;
  /** Read the relay state (and voltage / energy where available). */
  readRelay(meter: MeterAddress, options: RequestOptions): Promise<WireResult<RelayReading>>;
  /** Send one disconnect or reconnect command and wait for the meter's acknowledgement. */
  operateRelay(meter: MeterAddress, action: SwitchAction, options: RequestOptions): Promise<WireResult<CommandAck>>;
  /**
   * Set (watts) or remove (null) the meter's demand limit (DOMAIN.md rule 10); only for profiles with a load
   * limiter. The control loop verifies by reading back `loadLimitW` with `readRelay`.
   */
  setLoadLimit?(meter: MeterAddress, limitW: number | null, options: RequestOptions): Promise<WireResult<LimitAck>>;
  /** Every link this driver keeps, with its state and counters (GET /v1/links, /metrics, /healthz). */
  linkHealth?(): LinkHealth[];
  /** Unsolicited status reports (MQTT status topic, DLMS event push); optional. */
  onStatusReport?(listener: (meterId: string, reading: RelayReading, evidence: string) => void): void;
}
