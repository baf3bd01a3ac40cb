/**
 * Function and exception codes, named as in the Modbus Application Protocol Specification V1.1b3.
 * Only the public function codes this gateway and its simulators use are listed.
 */

/** Public function codes (MB AP §5.1, §6). */
export const FunctionCode = {
  READ_COILS: 0x01, // §6.1
  READ_DISCRETE_INPUTS: 0x02, // §6.2
  READ_HOLDING_REGISTERS: 0x03, // §6.3
  READ_INPUT_REGISTERS: 0x04, // §6.4
  WRITE_SINGLE_COIL: 0x05, // §6.5
  WRITE_SINGLE_REGISTER: 0x06, // §6.6
  WRITE_MULTIPLE_COILS: 0x0f, // §6.11
  WRITE_MULTIPLE_REGISTERS: 0x10, // §6.12
} as const;
export type FunctionCodeValue = (typeof FunctionCode)[keyof typeof FunctionCode];

/** An exception response carries the request's function code with the high bit set (MB AP §7). */
export const EXCEPTION_FLAG = 0x80;

/** Exception codes (MB AP §7, table "MODBUS Exception Codes"). */
export const ExceptionCode = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  SERVER_DEVICE_FAILURE: 0x04,
  ACKNOWLEDGE: 0x05,
  SERVER_DEVICE_BUSY: 0x06,
  MEMORY_PARITY_ERROR: 0x08,
  GATEWAY_PATH_UNAVAILABLE: 0x0a,
  GATEWAY_TARGET_FAILED_TO_RESPOND: 0x0b,
} as const;
export type ExceptionCodeValue = (typeof ExceptionCode)[keyof typeof ExceptionCode];

export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  [ExceptionCode.ILLEGAL_FUNCTION]: 'illegal function',
  [ExceptionCode.ILLEGAL_DATA_ADDRESS]: 'illegal data address',
  [ExceptionCode.ILLEGAL_DATA_VALUE]: 'illegal data value',
  [ExceptionCode.SERVER_DEVICE_FAILURE]: 'server device failure',
  [ExceptionCode.ACKNOWLEDGE]: 'acknowledge',
  [ExceptionCode.SERVER_DEVICE_BUSY]: 'server device busy',
  [ExceptionCode.MEMORY_PARITY_ERROR]: 'memory parity error',
  [ExceptionCode.GATEWAY_PATH_UNAVAILABLE]: 'gateway path unavailable',
  [ExceptionCode.GATEWAY_TARGET_FAILED_TO_RESPOND]: 'gateway target device failed to respond',
};

/** Coil values on the wire for Write Single Coil (MB AP §6.5): ON is 0xFF00, OFF 0x0000; nothing else is valid. */
export const COIL_ON = 0xff00;
export const COIL_OFF = 0x0000;

/** Largest quantities one read may ask for (MB AP §6.1–§6.4). */
export const MAX_READ_BITS = 2000;
export const MAX_READ_REGISTERS = 125;

/** Serial unit ids: 1–247 address one device, 0 is broadcast (no reply), 248–255 reserved (Serial Line V1.02 §2.2). */
export const MIN_UNIT_ID = 1;
export const MAX_UNIT_ID = 247;
