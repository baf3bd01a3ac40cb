import type { WireFailure } from '../driver.js';

/** A conversation that ended without the answer it asked for: what the wire said, in the driver's outcome words. */
export class DlmsWireFailure extends Error {
  override readonly name = 'DlmsWireFailure';
  constructor(
    readonly outcome: WireFailure,
    readonly detail: string,
    readonly evidence?: string,
    /** The Action-Result or Data-Access-Result code the meter answered, where it answered one (IEC 62056-5-3 §9.3). */
    readonly result?: number,
  ) {
    super(detail);
  }
}

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
