import { z } from 'zod';

/**
 * The Modbus part of a firmware profile: the register map (relay command, relay state, voltage, energy),
 * value encodings and unit-id defaults. PLACEHOLDER until the Modbus driver lands (issue 3).
 */
export const ModbusRegisterMapSchema = z.object({}).strict();
export type ModbusRegisterMap = z.infer<typeof ModbusRegisterMapSchema>;
