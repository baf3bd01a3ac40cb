import { z } from 'zod';

/**
 * The Modbus part of a firmware profile: where a device keeps its relay command, relay state, measurements and
 * demand limiter, and how those values are encoded. Addresses are PDU addresses (0-based, as they go on the wire:
 * Modbus Application Protocol V1.1b3 §4.4), not the "40001"-style numbers of data sheets. Registers are big-endian
 * within a word (§4.2); the order of the words of a wider value, and a device that swaps the bytes of each word,
 * are the vendor's choice, hence `wordOrder` and `byteOrder`.
 *
 * The schema checks each part alone; `ModbusRegisterMapSchema` then rejects maps that cannot work as a whole
 * (overlapping points, a value wider than its field, a write whose quantity does not fit), naming the field.
 */

/** A PDU address, 0x0000–0xFFFF (MB AP §4.4). */
const pduAddress = z.number().int().min(0).max(0xffff);
/** One 16-bit register value. */
const registerValue = z.number().int().min(0).max(0xffff);
/** Which coil value means "relay closed": `on` (0xFF00, MB AP §6.5) or `off`. */
const closedWhen = z.enum(['on', 'off']).default('on');
/** One encoding of a state, or several (a breaker whose "open" and "tripped" both mean the relay is open). */
const encodings = z.union([registerValue, z.array(registerValue).min(1).max(16)]);

/** Largest quantities one write may carry (MB AP §6.11: 0x07B0 coils, §6.12: 0x7B registers). */
const MAX_WRITE_COILS = 1968;
const MAX_WRITE_REGISTERS = 123;
/** Longest wait a profile may ask for between two steps of a command (ms). */
const MAX_STEP_DELAY_MS = 60_000;

/** A write's values, the same for both actions (an unlock code) or one list per action. */
const stepValues = z.union([
  z.array(z.number().int()).min(1),
  z.object({ disconnect: z.array(z.number().int()).min(1), reconnect: z.array(z.number().int()).min(1) }).strict(),
]);

/** One write of a command sequence. */
export const ModbusWriteStepSchema = z
  .object({
    /**
     * 5 Write Single Coil (values: one 0 or 1), 6 Write Single Register (one word), 15 Write Multiple Coils (0/1 per
     * coil), 16 Write Multiple Registers (one word per register) (MB AP §6.5, §6.6, §6.11, §6.12).
     */
    function: z.union([z.literal(5), z.literal(6), z.literal(15), z.literal(16)]),
    address: pduAddress,
    /** For 15 and 16: the quantity the data sheet gives; it must equal the number of values. */
    quantity: z.number().int().min(1).optional(),
    values: stepValues,
    /** Wait after this step before the next one (ms), e.g. between select and operate. */
    delayMs: z.number().int().optional(),
  })
  .strict();

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
  z
    .object({
      /**
       * Writes sent in order, each waiting for its answer (and its `delayMs`): a command block written with FC16,
       * control bits with FC15, or an unlock / select write followed by the operate write. An exception at any
       * step ends the command.
       */
      kind: z.literal('sequence'),
      steps: z.array(ModbusWriteStepSchema).min(1).max(8),
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
      /**
       * Several coils (0x01) or discrete inputs (0x02) read together, e.g. two auxiliary contacts: the input at
       * `address + i` is bit i of the value the states' encodings are compared with.
       */
      kind: z.enum(['coils', 'discreteInputs']),
      address: pduAddress,
      count: z.number().int().min(1).max(16),
      values: z.object({ connected: encodings, disconnected: encodings, armed: encodings.optional() }).strict(),
    })
    .strict(),
  z
    .object({
      /**
       * Read Holding Registers (0x03) or Input Registers (0x04): a status word, or a bit field of one:
       * (word AND mask) >> shift is compared with each state's encodings.
       */
      kind: z.enum(['holdingRegister', 'inputRegister']),
      address: pduAddress,
      mask: z.number().int().min(0).max(0xffff).default(0xffff),
      shift: z.number().int().min(0).default(0),
      values: z
        .object({
          connected: encodings,
          disconnected: encodings,
          /** "Ready for reconnection": only for meters whose remote reconnect arms the relay. */
          armed: encodings.optional(),
        })
        .strict(),
    })
    .strict(),
]);

/** A numeric value held in one to four registers. */
export const ModbusNumericPointSchema = z
  .object({
    table: z.enum(['holdingRegister', 'inputRegister']),
    /** Address of the first register. */
    address: pduAddress,
    /** 16-bit types take one register, 32-bit types two, 64-bit types four (MB AP §4.2: each register big-endian). */
    type: z.enum(['uint16', 'int16', 'uint32', 'int32', 'float32', 'uint64', 'int64', 'float64']),
    /** For wider types: `highFirst` (the most significant word at `address`, most common) or `lowFirst` (words reversed). */
    wordOrder: z.enum(['highFirst', 'lowFirst']).default('highFirst'),
    /** Within each register: `bigEndian` as the standard says, or `swapped` (low byte first, some gateways and PLCs). */
    byteOrder: z.enum(['bigEndian', 'swapped']).default('bigEndian'),
    /** Engineering value = raw value × scale + offset (e.g. scale 0.1 for a register in tenths of a volt). */
    scale: z.number().positive().default(1),
    offset: z.number().default(0),
  })
  .strict();

/** A demand limiter (DOMAIN.md rule 10): a writable holding register holding the limit in W after scaling. */
export const ModbusLoadLimitSchema = z
  .object({
    ...ModbusNumericPointSchema.shape,
    table: z.literal('holdingRegister'),
    /** The raw register value that means "no limit" (often 0 or 0xFFFF); removing a limit writes it. */
    noLimit: z.number().int().min(0),
    /** How the limit is written: 6 Write Single Register (16-bit types only) or 16 Write Multiple Registers. */
    writeFunction: z.union([z.literal(6), z.literal(16)]).default(16),
  })
  .strict();

/** How the device reports a close it refused because of voltage on the load side (DOMAIN.md rule 14). */
export const ModbusCloseRefusalSchema = z
  .object({
    /** The exception code the device answers the close with (0x04, or a vendor code 0x80–0xFF). */
    exceptionCode: z.number().int().min(1).max(0xff).optional(),
    /** A status bit the device sets when it refused a close; read after every reconnect command. */
    statusBit: z.object({ table: z.enum(['holdingRegister', 'inputRegister']), address: pduAddress, mask: z.number().int().min(1).max(0xffff) }).strict().optional(),
  })
  .strict()
  .refine((r) => r.exceptionCode !== undefined || r.statusBit !== undefined, { message: 'closeRefusal needs an exceptionCode, a statusBit or both' });

const registerMapObject = z
  .object({
    relayCommand: ModbusRelayCommandSchema,
    relayState: ModbusRelayStateSchema,
    /** Supply voltage in V after scaling; absent when the model does not measure it. */
    voltageV: ModbusNumericPointSchema.optional(),
    /** Cumulative active energy import in Wh after scaling. */
    energyWh: ModbusNumericPointSchema.optional(),
    /** Voltage on the load side of the relay in V after scaling (DOMAIN.md rule 14). */
    loadSideVoltageV: ModbusNumericPointSchema.optional(),
    closeRefusal: ModbusCloseRefusalSchema.optional(),
    loadLimit: ModbusLoadLimitSchema.optional(),
    /**
     * Registers of the same table this close together are read in one request (fewer transactions on a slow
     * bus; the gap is read and ignored). 0 reads only adjacent registers together.
     */
    mergeGap: z.number().int().min(0).max(32).default(4),
  })
  .strict();

type RegisterMapShape = z.infer<typeof registerMapObject>;

export const ModbusRegisterMapSchema = registerMapObject.superRefine((map, ctx) => {
  for (const p of registerMapProblems(map)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
});

export type ModbusRegisterMap = z.infer<typeof ModbusRegisterMapSchema>;
export type ModbusRelayCommand = z.infer<typeof ModbusRelayCommandSchema>;
export type ModbusWriteStep = z.infer<typeof ModbusWriteStepSchema>;
export type ModbusRelayStatePoint = z.infer<typeof ModbusRelayStateSchema>;
export type ModbusNumericPoint = z.infer<typeof ModbusNumericPointSchema>;
export type ModbusRegisterTable = 'coil' | 'discreteInput' | 'holdingRegister' | 'inputRegister';
type NumericType = ModbusNumericPoint['type'];

/** Registers a numeric point occupies. */
export function pointWidth(point: Pick<ModbusNumericPoint, 'type'>): 1 | 2 | 4 {
  return point.type.endsWith('16') ? 1 : point.type.endsWith('32') ? 2 : 4;
}

/** The numeric points of a map, by field, in reading order. */
export const NUMERIC_FIELDS = ['voltageV', 'energyWh', 'loadSideVoltageV', 'loadLimit'] as const;
export type NumericField = (typeof NUMERIC_FIELDS)[number];

interface MapProblem {
  path: Array<string | number>;
  message: string;
}

const asList = (e: number | number[]): number[] => (typeof e === 'number' ? [e] : e);

/** Whether `raw` fits a point's type before scaling. */
function rawFits(type: NumericType, raw: number): boolean {
  if (!Number.isInteger(raw)) return type.startsWith('float');
  const bits = type.endsWith('16') ? 16 : type.endsWith('32') ? 32 : 64;
  if (type.startsWith('float')) return true;
  if (type.startsWith('uint')) return raw >= 0 && (bits === 64 || raw < 2 ** bits);
  return bits === 64 || (raw >= -(2 ** (bits - 1)) && raw < 2 ** (bits - 1));
}

/** What the per-field schemas cannot see: the map as a whole. Each problem names its field. */
function registerMapProblems(map: RegisterMapShape): MapProblem[] {
  const out: MapProblem[] = [];
  const s = map.relayState;
  if (s.kind === 'holdingRegister' || s.kind === 'inputRegister' || s.kind === 'coils' || s.kind === 'discreteInputs') {
    let fieldMax: number;
    if ('count' in s) {
      fieldMax = 2 ** s.count - 1;
      if (s.address + s.count - 1 > 0xffff) out.push({ path: ['relayState', 'count'], message: `${s.count} inputs from address ${s.address} run past 0xFFFF` });
    } else {
      if (s.mask === 0) out.push({ path: ['relayState', 'mask'], message: 'mask 0 selects no bit of the register' });
      if (s.shift > 15) out.push({ path: ['relayState', 'shift'], message: `shift ${s.shift} is beyond bit 15 of a 16-bit register` });
      else if (s.mask !== 0 && (s.mask & ((1 << s.shift) - 1)) !== 0) {
        out.push({ path: ['relayState', 'shift'], message: `shift ${s.shift} drops bits of mask 0x${s.mask.toString(16)}: shift by the mask's lowest bit` });
      }
      fieldMax = s.mask >>> Math.min(s.shift, 15);
    }
    const seen = new Map<number, string>();
    for (const [state, enc] of Object.entries(s.values)) {
      if (enc === undefined) continue;
      for (const v of asList(enc)) {
        if (v > fieldMax) out.push({ path: ['relayState', 'values', state], message: `value ${v} is wider than the field (at most ${fieldMax})` });
        const other = seen.get(v);
        if (other !== undefined) out.push({ path: ['relayState', 'values', state], message: `value ${v} is given for both ${other} and ${state}` });
        seen.set(v, state);
      }
    }
  }

  if (map.relayCommand.kind === 'sequence') {
    const steps = map.relayCommand.steps;
    steps.forEach((step, i) => out.push(...stepProblems(step, ['relayCommand', 'steps', i], i === steps.length - 1)));
  }

  // Numeric points (and the relay state register) must not overlap: one register cannot hold two values.
  const spans: Array<{ field: string; table: string; lo: number; hi: number }> = [];
  if (s.kind === 'holdingRegister' || s.kind === 'inputRegister') spans.push({ field: 'relayState', table: s.kind, lo: s.address, hi: s.address });
  for (const field of NUMERIC_FIELDS) {
    const p = map[field];
    if (!p) continue;
    const hi = p.address + pointWidth(p) - 1;
    if (hi > 0xffff) {
      out.push({ path: [field, 'address'], message: `${p.type} at ${p.address} runs past register 0xFFFF` });
      continue;
    }
    const clash = spans.find((x) => x.table === p.table && x.lo <= hi && p.address <= x.hi);
    if (clash) out.push({ path: [field, 'address'], message: `registers ${p.address}–${hi} overlap ${clash.field} (${clash.lo}–${clash.hi})` });
    spans.push({ field, table: p.table, lo: p.address, hi });
  }

  const l = map.loadLimit;
  if (l) {
    if (l.writeFunction === 6 && pointWidth(l) !== 1) out.push({ path: ['loadLimit', 'writeFunction'], message: `function 6 writes one register; a ${l.type} needs function 16` });
    if (!rawFits(l.type, l.noLimit)) out.push({ path: ['loadLimit', 'noLimit'], message: `${l.noLimit} does not fit a ${l.type}` });
  }
  return out;
}

function stepProblems(step: ModbusWriteStep, path: Array<string | number>, last: boolean): MapProblem[] {
  const out: MapProblem[] = [];
  const lists = Array.isArray(step.values) ? [['values', step.values] as const] : (['disconnect', 'reconnect'] as const).map((a) => [`values.${a}`, (step.values as Record<string, number[]>)[a]!] as const);
  const single = step.function === 5 || step.function === 6;
  const bits = step.function === 5 || step.function === 15;
  const max = step.function === 15 ? MAX_WRITE_COILS : step.function === 16 ? MAX_WRITE_REGISTERS : 1;
  for (const [name, values] of lists) {
    const where = [...path, ...name.split('.')];
    if (single && values.length !== 1) out.push({ path: where, message: `function ${step.function} writes one value, not ${values.length}` });
    if (!single && values.length > max) out.push({ path: where, message: `function ${step.function} writes at most ${max} values, not ${values.length}` });
    if (step.quantity !== undefined && values.length !== step.quantity) out.push({ path: where, message: `quantity ${step.quantity} does not fit ${values.length} value(s)` });
    const bad = values.find((v) => (bits ? v !== 0 && v !== 1 : v < 0 || v > 0xffff));
    if (bad !== undefined) out.push({ path: where, message: bits ? `a coil value is 0 or 1, not ${bad}` : `${bad} is wider than a 16-bit register` });
    if (step.address + values.length - 1 > 0xffff) out.push({ path: [...path, 'address'], message: `${values.length} value(s) from address ${step.address} run past 0xFFFF` });
  }
  if (single && step.quantity !== undefined) out.push({ path: [...path, 'quantity'], message: `function ${step.function} has no quantity` });
  if (step.delayMs !== undefined) {
    if (step.delayMs < 0 || step.delayMs > MAX_STEP_DELAY_MS) out.push({ path: [...path, 'delayMs'], message: `delayMs must be 0–${MAX_STEP_DELAY_MS}` });
    else if (last && step.delayMs > 0) out.push({ path: [...path, 'delayMs'], message: 'the last step has no next step to wait for (use relay.operateTimeMs for the settle before read-back)' });
  }
  return out;
}
