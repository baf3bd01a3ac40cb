import { retryDelay } from './deadlines.js';
import type { FirmwareProfile } from './firmware-profile.js';
import type { AttemptOutcome, RelayState } from './relay.js';
import type { OrderState, SwitchOrder } from './switch-order.js';

/**
 * What one attempt proved and what the order does next. Success means verified: only a read-back that shows
 * the asked state ends an order well; a meter's reply alone never does. A meter that refuses the gateway's
 * credentials (`auth_failed`) ends the order at once: repeating the request with the same keys cannot succeed. A close
 * refused for voltage on the load side (`load_side_voltage`, DOMAIN.md rule 14) ends it at once too: closing onto a
 * bypass, a backfeed or tampering is dangerous, so no close is sent again and a person must look.
 */

export type CommandOutcome = 'ok' | 'timeout' | 'nack' | 'garbled' | 'link_error' | 'auth_failed' | 'load_side_voltage' | 'not_sent';

export interface AttemptFacts {
  /** How the command itself went (`not_sent` when the gateway restarted before it knew). */
  command: CommandOutcome;
  /** The relay state the read-back showed; undefined if the read got no usable answer. */
  readBack: RelayState | undefined;
  /** What a remote reconnect does, as the meter itself said in its reply (DLMS control_mode); decides over the profile. */
  meterRemoteReconnect?: 'closes' | 'arms';
  /**
   * The meter refused the gateway's credentials (on the command, or on the read-back): what it said, in the
   * driver's words (a diagnostic, never key bytes). Ends the order like an `auth_failed` command.
   */
  credentialsRefused?: string;
  /**
   * For a `limit` order: the demand limit the read-back showed (null: none in force); undefined when the read got no
   * usable answer or the reading did not carry a limit (a profile without limiter), which can never verify a limit.
   */
  readBackLimitW?: number | null;
  /** Voltage on the load side as the read-back (or the gateway's read before closing) showed it. */
  loadSideVoltageV?: number;
  /** The gateway's own check before closing found the load side live, so the close was never sent (`command` is `load_side_voltage`). */
  closeWithheld?: boolean;
}

export interface AttemptVerdict {
  outcome: AttemptOutcome;
  next: Extract<OrderState, 'done' | 'armed' | 'queued' | 'failed' | 'superseded'>;
  /** For `queued`: when the next attempt may start. */
  nextAttemptAt?: number;
  reason: string;
}

/** The order fields a verdict looks at; `limitW` only matters for a `limit` order. */
type JudgedOrder = Pick<SwitchOrder, 'action'> & Partial<Pick<SwitchOrder, 'limitW'>>;

const limitWords = (w: number | null | undefined): string => (w === undefined ? 'no limit reported' : w === null ? 'no limit in force' : `a limit of ${w} W in force`);

/**
 * Did the read-back show what the action asked for? `armed` counts only where the meter's reconnect only arms: as
 * the meter itself said (its control mode), else as its profile says. A limit is verified only by the limit the
 * reading shows (DOMAIN.md rule 10): the very value asked for, or none for a removal.
 */
export function verifiedState(
  order: JudgedOrder,
  profile: Pick<FirmwareProfile, 'relay'>,
  readBack: RelayState | undefined,
  meterRemoteReconnect?: 'closes' | 'arms',
  readBackLimitW?: number | null,
): 'done' | 'armed' | undefined {
  if (readBack === undefined) return undefined;
  if (order.action === 'limit') return readBackLimitW !== undefined && readBackLimitW === (order.limitW ?? null) ? 'done' : undefined;
  if (order.action === 'disconnect') return readBack === 'disconnected' ? 'done' : undefined;
  if (readBack === 'connected') return 'done';
  if (readBack === 'armed' && (meterRemoteReconnect ?? profile.relay.remoteReconnect) === 'arms') return 'armed';
  return undefined;
}

/**
 * Why the close counts as refused for voltage on the load side, in words for the order, or undefined: the meter (or
 * the driver for it) said so, the gateway withheld the close, or, where the profile demands the check, the read-back
 * shows the relay still open with more than the profile's threshold on the load side (a meter that refused silently).
 */
function loadSideRefusal(
  order: Pick<SwitchOrder, 'action'>,
  profile: Pick<FirmwareProfile, 'relay'>,
  facts: AttemptFacts,
): string | undefined {
  const check = profile.relay.loadSideVoltageCheck;
  const v = facts.loadSideVoltageV;
  let how: string;
  if (facts.command === 'load_side_voltage') how = facts.closeWithheld ? `the gateway's check before closing, above ${check.maxVoltageV} V; no close sent` : 'the meter refused to close';
  else if (order.action === 'reconnect' && check.checkedBy !== 'none' && facts.readBack !== undefined && facts.readBack !== 'connected' && v !== undefined && v > check.maxVoltageV) {
    how = `the read-back shows the relay still ${facts.readBack}`;
  } else return undefined;
  const volts = v === undefined ? 'voltage' : `${v} V`;
  return `close refused: ${volts} on the load side (${how}); a bypass, a generator backfeed or tampering: closing is dangerous, so no close is sent again and a crew is sent`;
}

export function judgeAttempt(
  order: JudgedOrder & Pick<SwitchOrder, 'attempts' | 'supersededBy'>,
  profile: Pick<FirmwareProfile, 'relay' | 'retry'>,
  facts: AttemptFacts,
  now: number,
  random: number,
): AttemptVerdict {
  const limit = order.action === 'limit';
  const verified = verifiedState(order, profile, facts.readBack, facts.meterRemoteReconnect, facts.readBackLimitW);
  if (verified) {
    let reason = `read-back shows the relay ${facts.readBack}`;
    if (limit) reason = `read-back shows ${limitWords(facts.readBackLimitW)}`;
    else if (verified === 'armed') reason = 'read-back shows the relay armed; the customer presses the button to close it';
    return { outcome: 'ok', next: verified, reason };
  }
  const refused = facts.command === 'auth_failed' || facts.credentialsRefused !== undefined;
  const loadSide = refused ? undefined : loadSideRefusal(order, profile, facts);
  let outcome: AttemptOutcome;
  if (refused) outcome = 'auth_failed';
  else if (loadSide !== undefined) outcome = 'load_side_voltage';
  else if (facts.command === 'not_sent') outcome = 'interrupted';
  else if (facts.command !== 'ok') outcome = facts.command;
  else if (facts.readBack === undefined) outcome = 'timeout';
  else outcome = 'verify_mismatch';
  let seen = facts.readBack === undefined ? 'the read-back got no answer' : `the read-back shows the relay ${facts.readBack}`;
  if (limit && facts.readBack !== undefined) seen = `the read-back shows ${limitWords(facts.readBackLimitW)}`;

  if (order.supersededBy !== null) {
    return { outcome, next: 'superseded', reason: `superseded by ${order.supersededBy} (${outcome}; ${seen})` };
  }
  if (refused) {
    // The same credentials would be refused again, and every refused association may count towards the meter's
    // lock-out of the client: no retry, whatever attempts are left.
    const said = facts.credentialsRefused ?? 'the association was refused';
    return { outcome, next: 'failed', reason: `the meter refused the gateway's credentials (${said}); retrying with the same keys cannot succeed` };
  }
  // Whatever attempts are left: the next close would meet the same live load side (escalateVerdict sends a crew).
  if (loadSide !== undefined) return { outcome, next: 'failed', reason: loadSide };
  if (order.attempts >= profile.retry.maxAttempts) {
    return { outcome, next: 'failed', reason: `${order.attempts} of ${profile.retry.maxAttempts} attempts used; last: ${outcome}, ${seen}` };
  }
  const delay = retryDelay(order.attempts, profile.retry.baseDelayMs, profile.retry.maxDelayMs, random);
  return { outcome, next: 'queued', nextAttemptAt: now + delay, reason: `retry in ${delay} ms after ${outcome}; ${seen}` };
}
