import { LIMITER_THRESHOLD_RANGES, noLimitValueOf, type DlmsLimiter, type LimiterThresholdType } from '../../../src/domain/profiles/dlms-profile.js';
import { data, type DlmsData } from '../axdr.js';
import { obisBytes, type LogicalName } from './obis.js';

/**
 * COSEM interface class "Limiter", class id 71, version 0 (IEC 62056-6-2 / DLMS UA 1000-1 Blue Book §4.5.9),
 * instance 0-0:17.0.0.255. It compares a monitored value (attribute 2) with threshold_active (3) and runs a script
 * (attribute 11: typically the disconnect control's script table, which opens the relay) when the value stays over
 * the threshold for min_over_threshold_duration (6), and another when it stays under for min_under_threshold_duration (7).
 * threshold_active is threshold_normal (4), or threshold_emergency (5) while an emergency profile (8, 9, 10) is active.
 *
 *   value_definition ::= structure { class_id: long-unsigned, logical_name: octet-string, attribute_index: integer }
 *   emergency_profile ::= structure { emergency_profile_id: long-unsigned, emergency_activation_time: octet-string
 *                                     (date-time), emergency_duration: double-long-unsigned (s) }
 *   emergency_profile_group_id_list ::= array long-unsigned
 *   actions ::= structure { action_over_threshold: action_item, action_under_threshold: action_item }
 *   action_item ::= structure { script_logical_name: octet-string, script_selector: long-unsigned }
 */

export const LIMITER_CLASS_ID = 71;

export const LimiterAttribute = {
  logicalName: 1,
  monitoredValue: 2,
  thresholdActive: 3,
  thresholdNormal: 4,
  thresholdEmergency: 5,
  /** double-long-unsigned, seconds. */
  minOverThresholdDuration: 6,
  /** double-long-unsigned, seconds. */
  minUnderThresholdDuration: 7,
  emergencyProfile: 8,
  emergencyProfileGroupIdList: 9,
  /** boolean. */
  emergencyProfileActive: 10,
  actions: 11,
} as const;

/** The standard's attribute names, for requests' evidence and log lines. */
export const LIMITER_ATTRIBUTE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(LimiterAttribute).map(([name, index]) => [index, name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]),
);

export function valueDefinition(classId: number, logicalName: LogicalName, attributeIndex: number): DlmsData {
  return data.structure(data.longUnsigned(classId), data.octetString(obisBytes(logicalName)), data.integer(attributeIndex));
}

export function actionItem(scriptLogicalName: LogicalName, scriptSelector: number): DlmsData {
  return data.structure(data.octetString(obisBytes(scriptLogicalName)), data.longUnsigned(scriptSelector));
}

/** How a limiter's thresholds are written: the type, the scaler to watts and the raw "no limit" value. */
export interface ThresholdEncoding {
  type: LimiterThresholdType;
  scaler: number;
  noLimitValue: number;
}

export function thresholdEncoding(l: DlmsLimiter): ThresholdEncoding {
  return { type: l.type, scaler: l.scaler, noLimitValue: noLimitValueOf(l) };
}

/** Binary noise from 10^-n rounded away, as for registers (register.ts scaledValue). */
const exact = (x: number): number => Number(x.toPrecision(12));

/**
 * The threshold to write for a limit in watts (null = no limit), or a message saying why the limit cannot be one:
 * not a whole number of the register's units, out of the type's range, or equal to the raw "no limit" value.
 */
export function encodeThreshold(e: ThresholdEncoding, limitW: number | null): DlmsData | string {
  if (limitW === null) return { type: e.type, value: e.noLimitValue };
  if (!Number.isFinite(limitW) || limitW < 0) return `a limit must be a number of watts, 0 or more; got ${limitW}`;
  const raw = exact(limitW / 10 ** e.scaler);
  if (!Number.isInteger(raw)) return `${limitW} W is not a whole number of the limiter's units (10^${e.scaler} W)`;
  const range = LIMITER_THRESHOLD_RANGES[e.type];
  if (raw < range.min || raw > range.max) return `${limitW} W does not fit the limiter's threshold type ${e.type} (scaler ${e.scaler})`;
  if (raw === e.noLimitValue) return `${limitW} W is the value that means "no limit" on this limiter (raw ${e.noLimitValue}); remove the limit instead`;
  return { type: e.type, value: raw };
}

/** The limit in watts a threshold holds (null for the "no limit" value), or a message saying why it is not one. */
export function decodeThreshold(e: ThresholdEncoding, d: DlmsData): number | null | string {
  if (d.type !== e.type || !('value' in d) || typeof d.value !== 'number') return `threshold must be ${e.type} as the profile says, got ${d.type}`;
  if (d.value === e.noLimitValue) return null;
  return exact(d.value * 10 ** e.scaler);
}
