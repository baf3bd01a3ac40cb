import { decodeDataAt, decodeLength, encodeData, encodeLength, data, type DlmsData } from './axdr.js';
import { decodeDateTime, encodeDateTime } from './cosem/clock.js';
import { DISCONNECT_CONTROL_CLASS_ID, DisconnectControlAttribute, readControlState, type ControlState } from './cosem/disconnect-control.js';
import { formatObis, OBIS, parseObis, sameLogicalName, type LogicalName } from './cosem/obis.js';

/**
 * Unsolicited xDLMS services a meter pushes (IEC 62056-5-3 §9.3.10, Green Book 8 §9.4.6.8):
 *
 *   Data-Notification ::= [15] SEQUENCE { long-invoke-id-and-priority Unsigned32, date-time OCTET STRING,
 *                                         notification-body Data }
 *   Event-Notification-Request ::= [194] SEQUENCE { time OCTET STRING OPTIONAL,
 *                                         cosem-attribute-descriptor, attribute-value Data }
 *
 * and what Meterline reads from them: the disconnect control's control_state.
 *
 * The push setup Meterline expects (configure the meter's push setup object, class 40, this way): its
 * push_object_list is (1) the logical device name, 0-0:42.0.0.255 attribute 2, then (2) the disconnect
 * control's logical name, 0-0:96.3.10.255 attribute 1, then (3) its control_state, attribute 3. The
 * notification-body is then the structure { octet-string device name, octet-string(6) 00 00 60 03 0A FF,
 * enum control_state }. The body is read as "an octet-string of the disconnect control's logical name
 * followed by an enum", wherever it sits in the structure, so a list with more objects is fine; a leading
 * octet-string that is not a logical name (not 6 bytes) is taken as the device name. An Event-Notification
 * whose descriptor is class 70 / 0-0:96.3.10.255 / attribute 3 carries the control_state directly.
 */

export const PUSH_TAG = {
  dataNotification: 0x0f,
  eventNotificationRequest: 0xc2,
  /** glo-event-notification-request: the Event-Notification ciphered with the global key, no system title in it. */
  gloEventNotificationRequest: 0xca,
  /** general-glo-ciphering: any APDU ciphered with the global key, the sender's system title in front. */
  generalGloCiphering: 0xdb,
} as const;

export const LOGICAL_DEVICE_NAME: LogicalName = parseObis('0-0:42.0.0.255');

export type Notification =
  | { kind: 'data-notification'; longInvokeId: number; at?: number; body: DlmsData }
  | { kind: 'event-notification'; at?: number; classId: number; logicalName: Uint8Array; attribute: number; value: DlmsData };

/** What a notification says about the disconnector. */
export interface PushedDisconnectState {
  controlState: ControlState;
  /** The meter's logical device name, when the body carries one. */
  logicalDeviceName?: Uint8Array;
  /** The meter's time stamp (ms since epoch), when it sent one that reads. */
  at?: number;
}

/** A Data-Notification as the simulator sends it (and a real meter with the push setup above). */
export function encodeDataNotification(o: { longInvokeId: number; at?: number; body: DlmsData }): Uint8Array {
  const head = new Uint8Array(5);
  head[0] = PUSH_TAG.dataNotification;
  new DataView(head.buffer).setUint32(1, o.longInvokeId >>> 0);
  const time = o.at === undefined ? new Uint8Array(0) : encodeDateTime(o.at);
  return Uint8Array.from([...head, ...encodeLength(time.length), ...time, ...encodeData(o.body)]);
}

/** The notification body of the documented push setup. */
export function disconnectPushBody(logicalDeviceName: Uint8Array, controlState: ControlState): DlmsData {
  return data.structure(data.octetString(logicalDeviceName), data.octetString(Uint8Array.from(OBIS.disconnectControl)), data.enum(controlState));
}

/** An Event-Notification-Request carrying control_state (class 70 attribute 3). */
export function encodeControlStateEvent(controlState: ControlState, at?: number): Uint8Array {
  const time = at === undefined ? [0x00] : [0x01, ...encodeLength(12), ...encodeDateTime(at)];
  return Uint8Array.from([PUSH_TAG.eventNotificationRequest, ...time, 0x00, DISCONNECT_CONTROL_CLASS_ID, ...OBIS.disconnectControl, DisconnectControlAttribute.controlState, ...encodeData(data.enum(controlState))]);
}

const timeOf = (bytes: Uint8Array): number | undefined => {
  if (bytes.length !== 12) return undefined;
  const t = decodeDateTime(bytes);
  return typeof t === 'number' ? t : undefined;
};

/** Decode an unciphered notification APDU; a string says why it is not one. */
export function decodeNotification(apdu: Uint8Array): Notification | string {
  try {
    if (apdu[0] === PUSH_TAG.dataNotification) {
      if (apdu.length < 6) return 'Data-Notification too short';
      const longInvokeId = new DataView(apdu.buffer, apdu.byteOffset + 1, 4).getUint32(0);
      const len = decodeLength(apdu, 5);
      const time = apdu.subarray(len.next, len.next + len.value);
      if (time.length !== len.value) return 'Data-Notification date-time runs past the end';
      const body = decodeDataAt(apdu, len.next + len.value);
      if (body.next !== apdu.length) return `Data-Notification has ${apdu.length - body.next} bytes after the body`;
      const at = timeOf(time);
      return { kind: 'data-notification', longInvokeId, ...(at !== undefined ? { at } : {}), body: body.value };
    }
    if (apdu[0] === PUSH_TAG.eventNotificationRequest) {
      let at: number | undefined;
      let i = 1;
      if (apdu[i] === 0x01) {
        const len = decodeLength(apdu, i + 1);
        at = timeOf(apdu.subarray(len.next, len.next + len.value));
        i = len.next + len.value;
      } else if (apdu[i] === 0x00) i++;
      else return 'Event-Notification-Request: bad time presence flag';
      if (apdu.length < i + 9) return 'Event-Notification-Request too short';
      const classId = (apdu[i]! << 8) | apdu[i + 1]!;
      const logicalName = apdu.slice(i + 2, i + 8);
      const attribute = apdu[i + 8]!;
      const value = decodeDataAt(apdu, i + 9);
      if (value.next !== apdu.length) return `Event-Notification-Request has ${apdu.length - value.next} bytes after the value`;
      return { kind: 'event-notification', ...(at !== undefined ? { at } : {}), classId, logicalName, attribute, value: value.value };
    }
    return `tag 0x${(apdu[0] ?? 0).toString(16).padStart(2, '0')} is not a Data-Notification or Event-Notification-Request`;
  } catch (e) {
    return `notification does not decode: ${(e as Error).message}`;
  }
}

/** The control_state (and device name, time) a notification reports, or a string saying why there is none. */
export function disconnectStateOf(n: Notification, disconnectControl: LogicalName = OBIS.disconnectControl): PushedDisconnectState | string {
  const at = n.at !== undefined ? { at: n.at } : {};
  if (n.kind === 'event-notification') {
    if (n.classId !== DISCONNECT_CONTROL_CLASS_ID || !sameLogicalName(n.logicalName, disconnectControl) || n.attribute !== DisconnectControlAttribute.controlState) {
      return `event for class ${n.classId} ${n.logicalName.length === 6 ? formatObis(n.logicalName) : '?'} attribute ${n.attribute}, not the disconnect control's control_state`;
    }
    const s = readControlState(n.value);
    return typeof s === 'string' ? s : { controlState: s, ...at };
  }
  const items = n.body.type === 'structure' || n.body.type === 'array' ? n.body.items : [n.body];
  let logicalDeviceName: Uint8Array | undefined;
  const first = items[0];
  if (first?.type === 'octet-string' && first.value.length !== 6) logicalDeviceName = first.value;
  if (first?.type === 'visible-string') logicalDeviceName = Buffer.from(first.value, 'latin1');
  for (let i = 0; i + 1 < items.length; i++) {
    const ln = items[i]!;
    if (ln.type !== 'octet-string' || !sameLogicalName(ln.value, disconnectControl)) continue;
    const s = readControlState(items[i + 1]!);
    if (typeof s === 'string') return s;
    return { controlState: s, ...(logicalDeviceName ? { logicalDeviceName } : {}), ...at };
  }
  return `notification body has no ${formatObis(disconnectControl)} followed by a control_state`;
}
