import { data, type DlmsData } from '../axdr.js';
import type { CosemAttribute } from './attribute.js';
import { OBIS, type LogicalName } from './obis.js';

/**
 * COSEM interface class "Register", class id 3, version 0 (Blue Book §4.3.2): attribute 2 value (a number),
 * attribute 3 scaler_unit ::= structure { scaler integer, unit enum }. The physical value is
 * value × 10^scaler in the unit (IEC 62056-6-2 unit table, Blue Book §4.3.2 "unit").
 */

export const REGISTER_CLASS_ID = 3;

export const RegisterAttribute = { logicalName: 1, value: 2, scalerUnit: 3 } as const;

/** The units Meterline reads (Blue Book unit enumeration). */
export const Unit = { W: 27, Wh: 30, A: 33, V: 35 } as const;

export interface ScalerUnit {
  scaler: number;
  unit: number;
}

export interface RegisterObject {
  value: CosemAttribute;
  scalerUnit: CosemAttribute;
}

function register(logicalName: LogicalName, name: string): RegisterObject {
  return {
    value: { classId: REGISTER_CLASS_ID, logicalName, attribute: RegisterAttribute.value, name: `${name}.value` },
    scalerUnit: { classId: REGISTER_CLASS_ID, logicalName, attribute: RegisterAttribute.scalerUnit, name: `${name}.scaler_unit` },
  };
}

export const REGISTERS = {
  activeEnergyImport: register(OBIS.activeEnergyImport, 'active_energy_import'),
  voltageL1: register(OBIS.voltageL1, 'voltage_l1'),
} as const;

export function encodeScalerUnit(s: ScalerUnit): DlmsData {
  return data.structure(data.integer(s.scaler), data.enum(s.unit));
}

export function readScalerUnit(d: DlmsData): ScalerUnit | string {
  if (d.type !== 'structure' || d.items.length !== 2) return `scaler_unit must be a structure of two, got ${d.type}`;
  const [s, u] = d.items as [DlmsData, DlmsData];
  if (s.type !== 'integer') return `scaler must be an integer, got ${s.type}`;
  if (u.type !== 'enum') return `unit must be an enum, got ${u.type}`;
  return { scaler: s.value, unit: u.value };
}

/** A register's physical value in `expectedUnit`, or a message saying why it is not one. */
export function scaledValue(value: DlmsData, su: ScalerUnit, expectedUnit: number): number | string {
  if (su.unit !== expectedUnit) return `unit ${su.unit}, expected ${expectedUnit}`;
  let raw: number;
  if (value.type === 'long64' || value.type === 'long64-unsigned') raw = Number(value.value);
  else if ('value' in value && typeof value.value === 'number' && value.type !== 'enum') raw = value.value;
  else return `register value must be a number, got ${value.type}`;
  // Round away binary noise from 10^-n so 2304 × 10^-1 reads 230.4.
  return Number((raw * 10 ** su.scaler).toPrecision(12));
}
