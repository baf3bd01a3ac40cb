import type { WireFailure } from '../driver.js';

/**
 * A conversation that ended without the answer it asked for: what the wire said, in the driver's outcome words.
 * `result` names the meter's refusal where it gave one (a Data-Access-Result, an exception-response), for the link's
 * exception counters.
 */
export class DlmsWireFailure extends Error {
  override readonly name = 'DlmsWireFailure';
  constructor(
    readonly outcome: WireFailure,
    readonly detail: string,
    readonly evidence?: string,
    readonly result?: string,
  ) {
    super(detail);
  }
}

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
