import type { CosemAttribute } from './attribute.js';
import { OBIS } from './obis.js';

/**
 * COSEM interface class "Clock", class id 8 (Blue Book §4.5.1), instance 0-0:1.0.0.255; attribute 2 time is
 * a date-time octet-string of 12 bytes (Blue Book §4.1.6.1): year (2, big-endian), month, day of month,
 * day of week (1 = Monday), hour, minute, second, hundredths, deviation (2, signed minutes: local time
 * minus UTC is −deviation; 0x8000 = not specified), clock_status. 0xFF / 0xFFFF mean "not specified".
 */

export const CLOCK_CLASS_ID = 8;
export const ClockAttribute = { logicalName: 1, time: 2, timeZone: 3, status: 4 } as const;
export const CLOCK_TIME: CosemAttribute = { classId: CLOCK_CLASS_ID, logicalName: OBIS.clock, attribute: ClockAttribute.time, name: 'clock.time' };

const DATE_TIME_LENGTH = 12;
const DEVIATION_NOT_SPECIFIED = -0x8000;

/** Encode an instant as a UTC date-time (deviation 0, status 0). */
export function encodeDateTime(ms: number): Uint8Array {
  const d = new Date(ms);
  const out = new Uint8Array(DATE_TIME_LENGTH);
  const year = d.getUTCFullYear();
  out[0] = year >> 8;
  out[1] = year & 0xff;
  out[2] = d.getUTCMonth() + 1;
  out[3] = d.getUTCDate();
  out[4] = ((d.getUTCDay() + 6) % 7) + 1;
  out[5] = d.getUTCHours();
  out[6] = d.getUTCMinutes();
  out[7] = d.getUTCSeconds();
  out[8] = Math.floor(d.getUTCMilliseconds() / 10);
  out[9] = 0;
  out[10] = 0;
  out[11] = 0;
  return out;
}

/** The instant a date-time names, or a message when it does not name one. */
export function decodeDateTime(bytes: Uint8Array): number | string {
  if (bytes.length !== DATE_TIME_LENGTH) return `date-time must be 12 bytes, got ${bytes.length}`;
  const year = (bytes[0]! << 8) | bytes[1]!;
  const [month, day, , hour, minute, second] = [bytes[2]!, bytes[3]!, bytes[4]!, bytes[5]!, bytes[6]!, bytes[7]!];
  const hundredths = bytes[8] === 0xff ? 0 : bytes[8]!;
  if (year === 0xffff || month > 12 || day > 31 || hour > 23 || minute > 59 || second > 59) return 'date-time has unspecified or out-of-range fields';
  let deviation = (bytes[9]! << 8) | bytes[10]!;
  if (deviation >= 0x8000) deviation -= 0x10000;
  if (deviation === DEVIATION_NOT_SPECIFIED) deviation = 0;
  // Blue Book: deviation is the offset of local time from UTC in minutes, UTC = local + deviation.
  return Date.UTC(year, month - 1, day, hour, minute, second, hundredths * 10) + deviation * 60_000;
}
