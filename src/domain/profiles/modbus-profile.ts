import { z } from 'zod';

/**
 * The Modbus part of a firmware profile: where a meter model keeps its relay command, relay state, supply
 * voltage and energy register, and how those values are encoded. Addresses are PDU addresses (0-based, as
 * they go on the wire: Modbus Application Protocol V1.1b3 §4.4), not the "40001"-style numbers of data sheets.
 * Registers are big-endian within a word (§4.2); the order of the words of a 32-bit value is the vendor's
 * choice, hence `wordOrder`.
 */

/** A PDU address, 0x0000–0xFFFF (MB AP §4.4). */
const pduAddress = z.number().int().min(0).max(0xffff);
/** One 16-bit register value. */
const registerValue = z.number().int().min(0).max(0xffff);
/** Which coil value means "relay closed": `on` (0xFF00, MB AP §6.5) or `off`. */
const closedWhen = z.enum(['on', 'off']).default('on');

/** How the gateway commands the relay. */
export const ModbusRelayCommandSchema = z.discriminatedUnion('kind', [
  z
    .object({
      /** Write Single Coil (0x05): the coil value `closedWhen` closes the relay, the other opens it. */
      kind: z.literal('coil'),
      address: pduAddress,
      closedWhen,
    })
    .strict(),
  z
    .object({
      /** Write Single Register (0x06) of a command value. */
      kind: z.literal('holdingRegister'),
      address: pduAddress,
      /** The command values this firmware understands. */
      values: z.object({ disconnect: registerValue, reconnect: registerValue }).strict(),
    })
    .strict(),
]);

/** Where the gateway reads the relay state back. */
export const ModbusRelayStateSchema = z.discriminatedUnion('kind', [
  z.object({ /** Read Coils (0x01). */ kind: z.literal('coil'), address: pduAddress, closedWhen }).strict(),
  z
    .object({ /** Read Discrete Inputs (0x02), e.g. the breaker's auxiliary contact. */ kind: z.literal('discreteInput'), address: pduAddress, closedWhen })
    .strict(),
  z
    .object({
      /** Read Holding Registers (0x03) or Input Registers (0x04): a status word with one value per relay state. */
      kind: z.enum(['holdingRegister', 'inputRegister']),
      address: pduAddress,
      values: z
        .object({
          connected: registerValue,
          disconnected: registerValue,
          /** "Ready for reconnection": only for meters whose remote reconnect arms the relay. */
          armed: registerValue.optional(),
        })
        .strict()
        .refine((v) => new Set([v.connected, v.disconnected, v.armed].filter((x) => x !== undefined)).size === (v.armed === undefined ? 2 : 3), {
          message: 'relay state values must be distinct',
        }),
    })
    .strict(),
]);

/** A numeric value held in one or two registers. */
export const ModbusNumericPointSchema = z
  .object({
    table: z.enum(['holdingRegister', 'inputRegister']),
    /** Address of the first register. */
    address: pduAddress,
    /** 16-bit types take one register, 32-bit types two (MB AP §4.2: each register big-endian). */
    type: z.enum(['uint16', 'int16', 'uint32', 'int32', 'float32']),
    /** For 32-bit types: `highFirst` (the high word at `address`, most common) or `lowFirst` ("word swapped"). */
    wordOrder: z.enum(['highFirst', 'lowFirst']).default('highFirst'),
    /** Engineering value = raw value × scale (e.g. 0.1 for a register in tenths of a volt). */
    scale: z.number().positive().default(1),
  })
  .strict();

export const ModbusRegisterMapSchema = z
  .object({
    relayCommand: ModbusRelayCommandSchema,
    relayState: ModbusRelayStateSchema,
    /** Supply voltage in V after scaling; absent when the model does not measure it. */
    voltageV: ModbusNumericPointSchema.optional(),
    /** Cumulative active energy import in Wh after scaling. */
    energyWh: ModbusNumericPointSchema.optional(),
    /**
     * Registers of the same table this close together are read in one request (fewer transactions on a slow
     * bus; the gap is read and ignored). 0 reads only adjacent registers together.
     */
    mergeGap: z.number().int().min(0).max(32).default(4),
  })
  .strict();

export type ModbusRegisterMap = z.infer<typeof ModbusRegisterMapSchema>;
export type ModbusRelayCommand = z.infer<typeof ModbusRelayCommandSchema>;
export type ModbusRelayStatePoint = z.infer<typeof ModbusRelayStateSchema>;
export type ModbusNumericPoint = z.infer<typeof ModbusNumericPointSchema>;
export type ModbusRegisterTable = 'coil' | 'discreteInput' | 'holdingRegister' | 'inputRegister';

/** Registers a numeric point occupies. */
export function pointWidth(point: Pick<ModbusNumericPoint, 'type'>): 1 | 2 {
  return point.type === 'uint16' || point.type === 'int16' ? 1 : 2;
}
