import type { RelayReading, WireResult } from '../../drivers/driver.js';
import type { AttemptFacts } from '../domain/attempt-verdict.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { OrderAction } from '../domain/relay.js';

/**
 * The gateway's own load-side check before a close (DOMAIN.md rule 14; profile `relay.loadSideVoltageCheck` with
 * `checkedBy: "gateway"`): on the read taken just before, decide whether the close may go on the wire. Voltage on
 * the load side of an open relay means a bypass, a generator backfeed or tampering; the close is then withheld and
 * the attempt ends `load_side_voltage`. A read that failed, or that lacks the load-side voltage the profile promises,
 * withholds it too (as that failure, retried like any): the gateway never closes blind. Pure.
 */
export type PreCloseCheck = { send: true } | { send: false; facts: AttemptFacts; problem: string };

/** Whether this attempt must read the load side first: a reconnect on a profile whose gateway checks. */
export function needsPreCloseRead(action: OrderAction, profile: Pick<FirmwareProfile, 'relay'>): boolean {
  return action === 'reconnect' && profile.relay.loadSideVoltageCheck.checkedBy === 'gateway';
}

export function preCloseCheck(profile: Pick<FirmwareProfile, 'id' | 'relay'>, read: WireResult<RelayReading>): PreCloseCheck {
  if (read.outcome !== 'ok') {
    return { send: false, facts: { command: read.outcome, readBack: undefined }, problem: `not sent: the load-side read before closing failed (${read.outcome}: ${read.detail})` };
  }
  const { relay, loadSideVoltageV } = read.value;
  // A closed relay's load side carries the supply: nothing to check, and the close changes nothing.
  if (relay === 'connected') return { send: true };
  if (loadSideVoltageV === undefined) {
    const problem = `not sent: profile ${profile.id} has the gateway check the load side before closing, but the meter's reading has no load-side voltage (check the profile's load-side voltage point or register)`;
    return { send: false, facts: { command: 'garbled', readBack: relay }, problem };
  }
  const { maxVoltageV } = profile.relay.loadSideVoltageCheck;
  if (loadSideVoltageV <= maxVoltageV) return { send: true };
  return {
    send: false,
    facts: { command: 'load_side_voltage', closeWithheld: true, readBack: relay, loadSideVoltageV },
    problem: `not sent: ${loadSideVoltageV} V on the load side of the open relay, above the profile's ${maxVoltageV} V`,
  };
}
