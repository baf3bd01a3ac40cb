import { EXCEPTION_NAMES, ExceptionCode } from './modbus-codes.js';

/**
 * What an exception response (MB AP §7) means for the control loop. Every exception is a refusal ('nack'):
 * the request reached the device and it did not act. The detail tells the operator what to do:
 * - illegal function / illegal data address: the firmware profile does not fit the device (wrong register map
 *   or model), so retrying will not help — "profile error: …";
 * - server device busy: the device is alive but cannot act now — retry later;
 * - anything else: named, with its code.
 */
export interface ExceptionVerdict {
  outcome: 'nack';
  detail: string;
}

export function exceptionName(code: number): string {
  return EXCEPTION_NAMES[code] ?? 'unknown exception';
}

/** A byte as 0x-prefixed hex, as exception details print it. */
export const hex2 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

export function exceptionVerdict(code: number, functionCode: number, address?: number): ExceptionVerdict {
  const where = address === undefined ? '' : ` at address ${address}`;
  switch (code) {
    case ExceptionCode.ILLEGAL_FUNCTION:
      return { outcome: 'nack', detail: `profile error: device does not support function ${hex2(functionCode)} (exception ${hex2(code)} illegal function); check the meter's firmware profile` };
    case ExceptionCode.ILLEGAL_DATA_ADDRESS:
      return { outcome: 'nack', detail: `profile error: device has no such register${where} for function ${hex2(functionCode)} (exception ${hex2(code)} illegal data address); check the meter's firmware profile` };
    case ExceptionCode.SERVER_DEVICE_BUSY:
      return { outcome: 'nack', detail: 'device busy, retry later' };
    default:
      return { outcome: 'nack', detail: `device answered exception ${hex2(code)} (${exceptionName(code)}) to function ${hex2(functionCode)}` };
  }
}
