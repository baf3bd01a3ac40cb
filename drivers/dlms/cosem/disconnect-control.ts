import type { RelayState } from '../../../src/domain/relay.js';
import type { CosemAttribute, CosemMethod } from './attribute.js';
import { OBIS } from './obis.js';
import { data, type DlmsData } from '../axdr.js';

/**
 * COSEM interface class "Disconnect control", class id 70, version 0 (DLMS UA 1000-1 Blue Book §4.5.8),
 * instance 0-0:96.3.10.255. It owns the supply relay and its state machine:
 *
 *   connected ──b/c (remote/manual disconnect)──► disconnected
 *   disconnected ──a (remote_reconnect, modes 2, 4)──► connected
 *   disconnected ──d (remote_reconnect, modes 1, 3, 5, 6)──► ready_for_reconnection
 *   ready_for_reconnection ──e (manual reconnect: the customer's button) / h (local)──► connected
 */

export const DISCONNECT_CONTROL_CLASS_ID = 70;

export const DisconnectControlAttribute = {
  logicalName: 1,
  /** boolean: the physical supply state, TRUE = connected. */
  outputState: 2,
  /** enum ControlState. */
  controlState: 3,
  /** enum ControlMode 0..6. */
  controlMode: 4,
} as const;

export const DisconnectControlMethod = {
  /** remote_disconnect (data ::= integer(0)): transition b. */
  remoteDisconnect: 1,
  /** remote_reconnect (data ::= integer(0)): transition a or d, as the control mode says. */
  remoteReconnect: 2,
} as const;

export enum ControlState {
  Disconnected = 0,
  Connected = 1,
  ReadyForReconnection = 2,
}

/** Control modes 0..6 (Blue Book §4.5.8, attribute control_mode). */
export type ControlMode = 0 | 1 | 2 | 3 | 4 | 5 | 6;
export const CONTROL_MODES: readonly ControlMode[] = [0, 1, 2, 3, 4, 5, 6];

const attr = (attribute: number, name: string): CosemAttribute => ({ classId: DISCONNECT_CONTROL_CLASS_ID, logicalName: OBIS.disconnectControl, attribute, name });
const method = (m: number, name: string): CosemMethod => ({ classId: DISCONNECT_CONTROL_CLASS_ID, logicalName: OBIS.disconnectControl, method: m, name });

export const DISCONNECT_CONTROL = {
  outputState: attr(DisconnectControlAttribute.outputState, 'output_state'),
  controlState: attr(DisconnectControlAttribute.controlState, 'control_state'),
  controlMode: attr(DisconnectControlAttribute.controlMode, 'control_mode'),
  remoteDisconnect: method(DisconnectControlMethod.remoteDisconnect, 'remote_disconnect'),
  remoteReconnect: method(DisconnectControlMethod.remoteReconnect, 'remote_reconnect'),
} as const;

/** The method parameter both methods take: integer(0). */
export const METHOD_PARAMETER: DlmsData = data.integer(0);

/**
 * What remote_reconnect does from `disconnected` in a control mode: `connected` (transition a), `armed`
 * (transition d, ready_for_reconnection), or undefined in mode 0 where the object cannot be disconnected at all.
 */
export function remoteReconnectOutcome(mode: ControlMode): 'connected' | 'armed' | undefined {
  if (mode === 2 || mode === 4) return 'connected';
  if (mode === 0) return undefined;
  return 'armed';
}

/** The gateway's relay vocabulary for a control_state. */
export function relayFromControlState(state: ControlState): RelayState {
  switch (state) {
    case ControlState.Disconnected:
      return 'disconnected';
    case ControlState.Connected:
      return 'connected';
    case ControlState.ReadyForReconnection:
      return 'armed';
  }
}

export function controlStateFromRelay(relay: RelayState): ControlState {
  return relay === 'connected' ? ControlState.Connected : relay === 'disconnected' ? ControlState.Disconnected : ControlState.ReadyForReconnection;
}

/** Typed accessors: a decoded attribute value, or a message saying why it is not one. */
export function readControlState(d: DlmsData): ControlState | string {
  if (d.type !== 'enum') return `control_state must be an enum, got ${d.type}`;
  if (d.value > ControlState.ReadyForReconnection) return `control_state ${d.value} is not 0, 1 or 2`;
  return d.value as ControlState;
}

export function readControlMode(d: DlmsData): ControlMode | string {
  if (d.type !== 'enum') return `control_mode must be an enum, got ${d.type}`;
  if (d.value > 6) return `control_mode ${d.value} is not 0..6`;
  return d.value as ControlMode;
}

export function readOutputState(d: DlmsData): boolean | string {
  return d.type === 'boolean' ? d.value : `output_state must be a boolean, got ${d.type}`;
}
