/**
 * OBIS codes (IEC 62056-6-1): the six-byte logical name A-B:C.D.E.F of a COSEM object, written
 * "0-0:96.3.10.255". On the wire a logical name is the six bytes in order (IEC 62056-5-3 cosem-object-instance-id).
 */

export type LogicalName = readonly [number, number, number, number, number, number];

export function parseObis(text: string): LogicalName {
  const m = /^(\d+)-(\d+):(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text.trim());
  if (!m) throw new RangeError(`"${text}" is not an OBIS code like 0-0:96.3.10.255`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new RangeError(`OBIS code "${text}": each group is 0..255`);
  return parts as unknown as LogicalName;
}

export function formatObis(ln: LogicalName | Uint8Array): string {
  const [a, b, c, d, e, f] = Array.from(ln);
  return `${a}-${b}:${c}.${d}.${e}.${f}`;
}

export function obisBytes(ln: LogicalName): Uint8Array {
  return Uint8Array.from(ln);
}

export function sameLogicalName(x: LogicalName | Uint8Array, y: LogicalName | Uint8Array): boolean {
  return x.length === 6 && y.length === 6 && Array.from(x).every((v, i) => v === y[i]);
}

/** The logical names Meterline uses, with the standard's names (IEC 62056-6-2 / DLMS UA 1000-1). */
export const OBIS = {
  /** Disconnect control, class 70. */
  disconnectControl: parseObis('0-0:96.3.10.255'),
  /** Clock, class 8. */
  clock: parseObis('0-0:1.0.0.255'),
  /** Active energy import (+A), total, class 3. */
  activeEnergyImport: parseObis('1-0:1.8.0.255'),
  /** Instantaneous voltage L1, class 3. */
  voltageL1: parseObis('1-0:32.7.0.255'),
  /** Limiter, class 71 (IDIS: the supply's demand limiter). */
  limiter: parseObis('0-0:17.0.0.255'),
  /** Instantaneous active power import (+P), total, class 3: what a limiter monitors. */
  activePowerImport: parseObis('1-0:1.7.0.255'),
  /** Disconnect control script table, class 9: the scripts a limiter's actions run. */
  disconnectScriptTable: parseObis('0-0:10.0.106.255'),
} as const;
