import { decodeAare, encodeAarq, encodeRlrq, ACSE_TAG, AcseServiceUserDiagnostic, AssociationResult, CLIENT_CONFORMANCE, describeDiagnostic, type Aarq } from './acse-apdu.js';
import { decodeData, AxdrError, describeData, type DlmsData } from './axdr.js';
import { describeAttribute, type CosemAttribute, type CosemMethod } from './cosem/attribute.js';
import type { ApduChannel } from './apdu-channel.js';
import { BerError } from './ber.js';
import { AccessResult, ApduError, decodeResponse, describeException, describeResult, encodeRequest, type XdlmsRequest, type XdlmsResponse } from './xdlms-apdu.js';
import { DlmsWireFailure, hex } from './wire-failure.js';
import type { CipheringChannel } from './security/ciphering-channel.js';
import { hlsGmacPasses } from './security/hls-authentication.js';

/**
 * One application association over an APDU channel (HDLC or the TCP wrapper) (IEC 62056-5-3): AARQ/AARE, then GET (with block
 * transfer), SET and ACTION by logical name, then RLRQ/RLRE. Every answer is checked: a refused
 * association or a non-success result becomes `nack` naming the standard's result; bytes that are not the
 * expected APDU become `garbled` with the raw bytes as evidence.
 */

export interface AssociationOptions {
  mechanism: Aarq['mechanism'];
  password?: Uint8Array;
  /** client-max-receive-pdu-size proposed in the InitiateRequest; larger answers come in GET data blocks. */
  maxPduSize: number;
  /** HLS and/or ciphering (security suite 0): the channel this client talks through, which holds the keys. */
  secure?: CipheringChannel;
}

/** GET block transfers longer than this are not something a disconnect-control conversation needs. */
const MAX_BLOCKS = 64;
const INVOKE_ID_MOD = 16;

export class CosemClient {
  /** Hex of every response APDU, in order (the conversation's evidence). */
  readonly answers: string[] = [];
  private invokeId = 0;
  private associated = false;

  constructor(
    private readonly channel: ApduChannel,
    private readonly where: string,
  ) {}

  async associate(o: AssociationOptions): Promise<void> {
    let aarq: Aarq = { mechanism: o.mechanism, conformance: CLIENT_CONFORMANCE, maxPduSize: o.maxPduSize };
    if (o.password) aarq.password = o.password;
    if (o.secure) aarq = { ...aarq, ...(await o.secure.aarqFields({ conformance: CLIENT_CONFORMANCE, maxPduSize: o.maxPduSize })) };
    const apdu = await this.roundTrip(encodeAarq(aarq), 'AARQ');
    let aare;
    try {
      aare = decodeAare(apdu);
    } catch (e) {
      throw this.garbled(apdu, `AARE: ${(e as Error).message}`);
    }
    o.secure?.acceptAare(aare);
    if (aare.result !== AssociationResult.accepted) {
      const why = describeDiagnostic(aare);
      // authentication-failure (IEC 62056-5-3 §8.2, acse-service-user 13): the meter refused the credentials; the
      // same request cannot succeed by repeating it, so it is `auth_failed`, not a `nack` to retry.
      if (aare.diagnosticSource === 'user' && aare.diagnostic === AcseServiceUserDiagnostic.authenticationFailure) {
        throw new DlmsWireFailure('auth_failed', `meter ${this.where} rejected the association: ${why}: check the password or keys the gateway holds for it`, hex(apdu));
      }
      throw new DlmsWireFailure('nack', `meter ${this.where} rejected the association: ${why}`, hex(apdu));
    }
    this.associated = true;
    if (o.mechanism === 'hls-gmac') {
      // Accepted with "authentication-required" (14): passes 3 and 4 are still to do (IEC 62056-5-3 §5.2.2.3).
      if (!o.secure || !aare.challenge) throw this.garbled(apdu, 'HLS association without a StoC challenge in the AARE');
      await hlsGmacPasses(this, o.secure, aare.challenge);
    }
  }

  /** GET-Request-Normal, following GET-Response-With-Datablock to the last block (IEC 62056-5-3 §9.3.7). */
  async get(attribute: CosemAttribute): Promise<DlmsData> {
    const what = `GET ${describeAttribute(attribute)}`;
    let res = await this.service({ kind: 'get', invokeId: this.nextInvokeId(), attribute }, what);
    if (res.kind === 'get') {
      if ('error' in res.result) throw this.refused(what, res.result.error);
      return res.result.data;
    }
    const blocks: Uint8Array[] = [];
    for (let expected = 1; ; expected++) {
      if (res.kind !== 'get-block') throw this.garbledLast(`${what}: expected a data block, got ${res.kind}`);
      if ('error' in res.result) throw this.refused(`${what}: block ${res.block}`, res.result.error);
      if (res.block !== expected) throw this.garbledLast(`${what}: block ${res.block} where ${expected} was due`);
      blocks.push(res.result.raw);
      if (res.lastBlock) break;
      if (expected >= MAX_BLOCKS) throw this.garbledLast(`${what}: more than ${MAX_BLOCKS} blocks`);
      res = await this.service({ kind: 'get-next', invokeId: res.invokeId, block: expected }, `${what} (block ${expected + 1})`);
    }
    try {
      return decodeData(Buffer.concat(blocks));
    } catch (e) {
      throw new DlmsWireFailure('garbled', `${what}: reassembled data blocks do not decode: ${(e as Error).message}`, this.answers.join(' '));
    }
  }

  async set(attribute: CosemAttribute, value: DlmsData): Promise<void> {
    const what = `SET ${describeAttribute(attribute)} = ${describeData(value)}`;
    const res = await this.service({ kind: 'set', invokeId: this.nextInvokeId(), attribute, value }, what);
    if (res.kind !== 'set') throw this.garbledLast(`${what}: answered with ${res.kind}`);
    if (res.result !== AccessResult.success) throw this.refused(what, res.result);
  }

  /** ACTION-Request-Normal; resolves on action-result success, throws `nack` naming (and carrying) any other result. */
  async action(method: CosemMethod, parameter: DlmsData): Promise<void> {
    const what = `ACTION ${describeAttribute(method)}`;
    const res = await this.service({ kind: 'action', invokeId: this.nextInvokeId(), method, parameter }, what);
    if (res.kind !== 'action') throw this.garbledLast(`${what}: answered with ${res.kind}`);
    if (res.result !== AccessResult.success) throw this.refused(what, res.result);
  }

  /** ACTION-Request-Normal whose answer carries return parameters (reply_to_HLS_authentication); `nack` on any other result. */
  async actionWithReturn(method: CosemMethod, parameter: DlmsData): Promise<DlmsData | undefined> {
    const what = `ACTION ${describeAttribute(method)}`;
    const res = await this.service({ kind: 'action', invokeId: this.nextInvokeId(), method, parameter }, what);
    if (res.kind !== 'action') throw this.garbledLast(`${what}: answered with ${res.kind}`);
    if (res.result !== AccessResult.success) throw this.refused(what, res.result);
    if (res.returned && 'error' in res.returned) throw this.refused(what, res.returned.error);
    return res.returned?.data;
  }

  /** RLRQ → RLRE (IEC 62056-5-3 §8.4). */
  async release(): Promise<void> {
    if (!this.associated) return;
    this.associated = false;
    const apdu = await this.roundTrip(encodeRlrq(), 'RLRQ');
    if (apdu[0] !== ACSE_TAG.RLRE) throw this.garbled(apdu, 'answer to RLRQ is not an RLRE');
  }

  private nextInvokeId(): number {
    this.invokeId = (this.invokeId + 1) % INVOKE_ID_MOD;
    return this.invokeId;
  }

  private async service(req: XdlmsRequest, what: string): Promise<XdlmsResponse> {
    const apdu = await this.roundTrip(encodeRequest(req), what);
    let res: XdlmsResponse;
    try {
      res = decodeResponse(apdu);
    } catch (e) {
      if (e instanceof ApduError || e instanceof AxdrError || e instanceof BerError) throw this.garbled(apdu, `${what}: ${e.message}`);
      throw e;
    }
    if (res.kind === 'exception') throw new DlmsWireFailure('nack', `${what}: ${describeException(res)}`, hex(apdu));
    if (res.invokeId !== req.invokeId) throw this.garbled(apdu, `${what}: answer carries invoke-id ${res.invokeId}, expected ${req.invokeId}`);
    return res;
  }

  private async roundTrip(apdu: Uint8Array, what: string): Promise<Uint8Array> {
    const body = await this.channel.request(apdu);
    this.answers.push(hex(body));
    return body;
  }

  /** A non-success result: `nack`, naming the result in words and carrying its code (link health counts it by name). */
  private refused(what: string, result: number): DlmsWireFailure {
    return new DlmsWireFailure('nack', `${what}: ${describeResult(result)}`, this.answers.at(-1), result);
  }

  private garbled(bytes: Uint8Array, detail: string): DlmsWireFailure {
    return new DlmsWireFailure('garbled', `meter ${this.where}: ${detail}`, hex(bytes));
  }

  private garbledLast(detail: string): DlmsWireFailure {
    return new DlmsWireFailure('garbled', `meter ${this.where}: ${detail}`, this.answers.at(-1));
  }
}
