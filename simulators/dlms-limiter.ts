import { data, type DlmsData } from '../drivers/dlms/axdr.js';
import { decodeThreshold, actionItem, LIMITER_CLASS_ID, LimiterAttribute, valueDefinition, type ThresholdEncoding } from '../drivers/dlms/cosem/limiter.js';
import { OBIS, obisBytes, type LogicalName } from '../drivers/dlms/cosem/obis.js';
import { REGISTER_CLASS_ID, RegisterAttribute } from '../drivers/dlms/cosem/register.js';
import { AccessResult } from '../drivers/dlms/xdlms-apdu.js';
import { LIMITER_THRESHOLD_RANGES, type LimiterThresholdType } from '../src/domain/profiles/dlms-profile.js';
import type { MeterReply } from './meter-model.js';

/**
 * The class 71 Limiter of a simulated DLMS meter (Blue Book §4.5.9; layout in drivers/dlms/cosem/limiter.ts). The
 * limit itself lives in the meter model (`SimulatedMeter.loadLimitW`, set through `handle('limit')` so its faults
 * apply); this object gives it the COSEM face: thresholds in the monitored register's type and scaler, the
 * monitored value (instantaneous active power import, 1-0:1.7.0.255, class 3 attribute 2), the durations, no
 * emergency profile (so threshold_active is always threshold_normal), and actions that run the disconnect control
 * script table (0-0:10.0.106.255; selector 1 disconnects, 2 reconnects, as this meter numbers its scripts).
 *
 * The model already serves the load only up to the limit. The over-threshold action (the relay opening after
 * min_over_threshold_duration) is not simulated: the relay moves only on commands and faults.
 */

export interface SimLimiterOptions {
  /** Default 0-0:17.0.0.255. */
  logicalName?: LogicalName;
  /** The thresholds' type (the monitored register's). Default double-long-unsigned. */
  type?: LimiterThresholdType;
  /** The monitored register's scaler: watts = raw × 10^scaler. Default 0. */
  scaler?: number;
  /** The raw "no limit" value. Default the type's maximum, as real meters ship. */
  noLimitValue?: number;
}

/** What a GET of a limiter attribute answers: a fixed value, one from the model's reply for this association, or a refusal. */
export type LimiterGet = { value: DlmsData } | { live: (r: MeterReply) => DlmsData } | { refused: number };
/** What a SET does: answered at once with a result, or a new limit (null = none) for the meter model to decide on. */
export type LimiterSet = { result: number } | { limitW: number | null };

/** A date-time with every field "not specified" (Blue Book §4.1.6.1): no emergency activation time. */
const DATE_TIME_UNSPECIFIED = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x00, 0xff]);
const SCRIPT_DISCONNECT = 1;
const SCRIPT_RECONNECT = 2;

export class SimulatedLimiter {
  readonly logicalName: LogicalName;
  readonly encoding: ThresholdEncoding;
  /** Seconds over the threshold before the over-threshold action (attribute 6; writable). */
  minOverThresholdDurationS = 60;
  /** Seconds under the threshold before the under-threshold action (attribute 7). */
  readonly minUnderThresholdDurationS = 60;
  /** Fault: the management client's access rights make the limiter read-only; every SET is read-write-denied. */
  readOnly = false;

  constructor(o: SimLimiterOptions = {}) {
    this.logicalName = o.logicalName ?? OBIS.limiter;
    const type = o.type ?? 'double-long-unsigned';
    this.encoding = { type, scaler: o.scaler ?? 0, noLimitValue: o.noLimitValue ?? LIMITER_THRESHOLD_RANGES[type].max };
  }

  get(classId: number, attribute: number): LimiterGet {
    if (classId !== LIMITER_CLASS_ID) return { refused: AccessResult.objectClassInconsistent };
    switch (attribute) {
      case LimiterAttribute.logicalName:
        return { value: data.octetString(obisBytes(this.logicalName)) };
      case LimiterAttribute.monitoredValue:
        return { value: valueDefinition(REGISTER_CLASS_ID, OBIS.activePowerImport, RegisterAttribute.value) };
      case LimiterAttribute.thresholdActive:
      case LimiterAttribute.thresholdNormal:
        return { live: (r) => this.threshold(r.loadLimitW) };
      case LimiterAttribute.thresholdEmergency:
        return { value: this.threshold(null) };
      case LimiterAttribute.minOverThresholdDuration:
        return { value: data.doubleLongUnsigned(this.minOverThresholdDurationS) };
      case LimiterAttribute.minUnderThresholdDuration:
        return { value: data.doubleLongUnsigned(this.minUnderThresholdDurationS) };
      case LimiterAttribute.emergencyProfile:
        return { value: data.structure(data.longUnsigned(0), data.octetString(DATE_TIME_UNSPECIFIED), data.doubleLongUnsigned(0)) };
      case LimiterAttribute.emergencyProfileGroupIdList:
        return { value: data.array() };
      case LimiterAttribute.emergencyProfileActive:
        return { value: data.boolean(false) };
      case LimiterAttribute.actions:
        return { value: data.structure(actionItem(OBIS.disconnectScriptTable, SCRIPT_DISCONNECT), actionItem(OBIS.disconnectScriptTable, SCRIPT_RECONNECT)) };
      default:
        return { refused: AccessResult.objectUndefined };
    }
  }

  /** threshold_normal and min_over_threshold_duration are writable; the rest is read-write-denied. */
  set(classId: number, attribute: number, value: DlmsData): LimiterSet {
    if (classId !== LIMITER_CLASS_ID) return { result: AccessResult.objectClassInconsistent };
    if (this.readOnly) return { result: AccessResult.readWriteDenied };
    if (attribute === LimiterAttribute.minOverThresholdDuration) {
      if (value.type !== 'double-long-unsigned') return { result: AccessResult.typeUnmatched };
      this.minOverThresholdDurationS = value.value;
      return { result: AccessResult.success };
    }
    if (attribute !== LimiterAttribute.thresholdNormal) return { result: AccessResult.readWriteDenied };
    const limitW = decodeThreshold(this.encoding, value);
    if (typeof limitW === 'string') return { result: AccessResult.typeUnmatched };
    if (limitW !== null && limitW < 0) return { result: AccessResult.otherReason };
    return { limitW };
  }

  private threshold(limitW: number | null): DlmsData {
    const raw = limitW === null ? this.encoding.noLimitValue : Math.round(limitW / 10 ** this.encoding.scaler);
    return { type: this.encoding.type, value: raw };
  }
}
