import type { Logger } from 'pino';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { ModbusLinksConfigInput } from './modbus-config.js';
import { ModbusDriver } from './modbus-driver.js';

/**
 * The Modbus driver's public face. `links` is validated with `ModbusLinksConfigSchema` (a bad value throws
 * a ZodError naming the field); profiles of other protocols are ignored.
 *
 * @example
 * const driver = createModbusDriver({
 *   links: { rtu: { 'bus-1': { path: '/dev/ttyUSB0', baudRate: 9600, parity: 'none' } }, tcp: {} },
 *   profiles: [...profiles.values()],
 *   logger,
 * });
 * await driver.start();
 */
export function createModbusDriver(options: { links: ModbusLinksConfigInput; profiles: readonly FirmwareProfile[]; logger?: Logger }): ModbusDriver {
  return new ModbusDriver(options);
}

export { ModbusDriver, parseUnitId, type ModbusDriverOptions, type ModbusLinkStatus } from './modbus-driver.js';
export {
  ModbusLinksConfigSchema,
  ModbusRtuLinkSchema,
  ModbusTcpLinkSchema,
  type ModbusLinksConfig,
  type ModbusLinksConfigInput,
  type ModbusRtuLinkConfig,
  type ModbusTcpLinkConfig,
} from './modbus-config.js';
export type { ModbusLinkCounters } from './modbus-link.js';
