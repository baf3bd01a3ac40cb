/**
 * Relay vocabulary shared by the domain, the drivers and the simulators.
 * `armed` is the DLMS "ready_for_reconnection" state: the relay will close when the customer presses the button.
 */
export const RELAY_STATES = ['connected', 'disconnected', 'armed'] as const;
export type RelayState = (typeof RELAY_STATES)[number];

export const SWITCH_ACTIONS = ['disconnect', 'reconnect'] as const;
export type SwitchAction = (typeof SWITCH_ACTIONS)[number];

/**
 * What an order asks of a meter: a relay command, or `limit`, which sets (or removes) the meter's demand limit
 * (DOMAIN.md rule 10). Relay commands stay `SwitchAction`: only they move the relay.
 */
export const ORDER_ACTIONS = ['disconnect', 'reconnect', 'limit'] as const;
export type OrderAction = (typeof ORDER_ACTIONS)[number];
export const isRelayAction = (a: OrderAction): a is SwitchAction => a !== 'limit';

/** What one try on the wire ended as (DESIGN.md §2, "Attempt"). */
export const ATTEMPT_OUTCOMES = [
  'ok', // command acknowledged and the read-back matched
  'timeout', // no answer within the profile's timeout
  'nack', // the meter refused the command
  'garbled', // an answer arrived but could not be decoded
  'verify_mismatch', // the read-back did not show the asked state
  'link_error', // the link (broker, port) was unavailable
  'auth_failed', // the meter refused the gateway's password, key or authentication tag; not retried
  'load_side_voltage', // close refused: voltage on the load side (bypass, backfeed, tampering); not retried, to the field
  'interrupted', // the gateway stopped while the attempt was on the wire; resolved by a read on restart
] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];
