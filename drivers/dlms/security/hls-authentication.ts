import { data, type DlmsData } from '../axdr.js';
import type { CosemMethod } from '../cosem/attribute.js';
import { parseObis } from '../cosem/obis.js';
import { DlmsWireFailure } from '../wire-failure.js';
import type { CipheringChannel } from './ciphering-channel.js';
import { hlsGmacResponse, verifyHlsGmac } from './hls-gmac.js';

/**
 * Passes 3 and 4 of HLS-GMAC (IEC 62056-5-3 §5.2.2.3, Green Book §9.2.7.4): the client calls
 * reply_to_HLS_authentication (Association LN, class 15, current association 0-0:40.0.0.255, method 1) with
 * f(StoC); the meter answers with f(CtoS), which must verify with the meter's system title. Any mismatch is
 * `auth_failed`; the caller then ends the association.
 */

export const ASSOCIATION_LN_CLASS_ID = 15;
export const CURRENT_ASSOCIATION = parseObis('0-0:40.0.0.255');
export const REPLY_TO_HLS_AUTHENTICATION: CosemMethod = { classId: ASSOCIATION_LN_CLASS_ID, logicalName: CURRENT_ASSOCIATION, method: 1, name: 'reply_to_HLS_authentication' };

/** What the HLS passes need of the COSEM client: an ACTION that returns data. */
export interface ActionCaller {
  actionWithReturn(method: CosemMethod, parameter: DlmsData): Promise<DlmsData | undefined>;
}

export async function hlsGmacPasses(cosem: ActionCaller, secure: CipheringChannel, stoc: Uint8Array): Promise<void> {
  const ctos = secure.challenge;
  const serverTitle = secure.serverSystemTitle;
  if (!ctos || !serverTitle) throw new Error('HLS passes 3/4 before the AARQ/AARE');
  const fStoC = hlsGmacResponse(secure.globalKeys, secure.o.clientSystemTitle, await secure.nextInvocationCounter(), stoc);
  let returned: DlmsData | undefined;
  try {
    returned = await cosem.actionWithReturn(REPLY_TO_HLS_AUTHENTICATION, data.octetString(fStoC));
  } catch (e) {
    if (e instanceof DlmsWireFailure && e.outcome === 'nack') throw secure.authFailed(`the meter refused our f(StoC) in reply_to_HLS_authentication (${e.detail}); its keys differ from key set ${secure.o.keys.keySetId}`);
    throw e;
  }
  if (returned?.type !== 'octet-string') throw secure.authFailed('reply_to_HLS_authentication returned no f(CtoS)');
  if (verifyHlsGmac(secure.globalKeys, serverTitle, ctos, returned.value) === undefined) throw secure.authFailed(`the meter's f(CtoS) does not verify with key set ${secure.o.keys.keySetId}: the meter does not hold these keys`);
}
