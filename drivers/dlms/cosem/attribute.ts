import { formatObis, type LogicalName } from './obis.js';

/**
 * What an attribute or method of a COSEM object is addressed by on the wire (IEC 62056-5-3
 * Cosem-Attribute-Descriptor / Cosem-Method-Descriptor): class id (2 bytes), logical name (6), index (1).
 */
export interface CosemAttribute {
  classId: number;
  logicalName: LogicalName;
  attribute: number;
  /** The standard's attribute name, for logs and evidence. */
  name: string;
}

export interface CosemMethod {
  classId: number;
  logicalName: LogicalName;
  method: number;
  name: string;
}

export function describeAttribute(a: CosemAttribute | CosemMethod): string {
  const index = 'attribute' in a ? `attr ${a.attribute}` : `method ${a.method}`;
  return `${a.name} (class ${a.classId}, ${formatObis(a.logicalName)}, ${index})`;
}
