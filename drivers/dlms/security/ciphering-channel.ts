import { randomBytes } from 'node:crypto';
import type { ApduChannel } from '../apdu-channel.js';
import { AcseServiceUserDiagnostic, AssociationResult, CONFORMANCE, CONTEXT_LN_WITH_CIPHERING, CONTEXT_LN_NO_CIPHERING, decodeInitiateResponse, encodeInitiateRequest, describeDiagnostic, type Aare, type Aarq, type MechanismName } from '../acse-apdu.js';
import { BerError } from '../ber.js';
import { decodeResponse, describeException, ServiceError, XDLMS_TAG } from '../xdlms-apdu.js';
import { DlmsWireFailure, hex } from '../wire-failure.js';
import { CipheredApduError, CIPHERED_TAG, cipheredTagFor, decodeCipheredApdu, encodeCipheredApdu, encodeGeneralCiphering, plainTagOf, type KeyKind } from './ciphered-apdu.js';
import type { MeterKeyring, MeterKeys } from './keyring.js';
import { securityControlFor, type CipheringPolicy } from './security-control.js';
import { DecipherError, KEY_LENGTH, protect, SYSTEM_TITLE_LENGTH, unprotect, type CipherKeys } from './suite0-cipher.js';

/**
 * The client's end of a secured association (security suite 0, Green Book §9.2.7): it builds what the AARQ
 * carries (calling-AP-title, the CtoS challenge, the glo-initiate-request with an optional dedicated key),
 * judges the AARE (server system title, glo-initiate-response), and then, as an ApduChannel, ciphers every
 * xDLMS service request per the profile's policy with a fresh invocation counter from the MeterKeyring and
 * deciphers every response, checking its tag and that the meter's own counter grows (a replayed response is
 * garbled). What goes over the wire is kept in `wire` (ciphered, never keys) for evidence.
 *
 * With `cipheredApdu: 'general'` the service requests go as general-glo-ciphering (0xDB) or, with a dedicated key,
 * general-ded-ciphering (0xDC), carrying the client's system title (Green Book §9.2.7.2.4). Their use is governed by
 * the general-protection conformance bit (IEC 62056-5-3 §9.4.6.1, bit 1): the client proposes it in the InitiateRequest
 * and a meter that does not grant it cannot take the general form (a `nack` naming the profile setting). The AARQ keeps
 * the glo-initiate-request: general-protection is negotiated by that very InitiateRequest, so it cannot yet apply to it.
 * The answer must come in the same general form, and the system title it carries must be the one the meter gave as
 * responding-AP-title in the AARE: another title is not the meter this association authenticated, which is
 * `auth_failed` (as a title that differs from the key file's), judged before anything is deciphered.
 */

export interface SecureSessionOptions {
  meterId: string;
  where: string;
  keys: MeterKeys;
  keyring: MeterKeyring;
  clientSystemTitle: Uint8Array;
  mechanism: MechanismName;
  policy: CipheringPolicy;
  dedicatedKey: boolean;
  /** Service APDUs as glo-/ded-xxx (default) or as general-glo/ded-ciphering with the system title. */
  cipheredApdu?: 'service-specific' | 'general';
}

/** The meter refused our invocation counter: resynchronise through the frame counter, then retry once. */
export class CounterTooLow extends DlmsWireFailure {
  constructor(
    detail: string,
    evidence: string,
    readonly expected: number | undefined,
  ) {
    super('nack', detail, evidence);
  }
}

const CHALLENGE_LENGTH = 16;
const ACSE_TAGS = new Set([0x60, 0x61, 0x62, 0x63]);
const REQUEST_TAGS = new Set<number>([XDLMS_TAG.getRequest, XDLMS_TAG.setRequest, XDLMS_TAG.actionRequest]);
/** ConfirmedServiceError initiateError (1), application-reference (0), deciphering-error (6) (IEC 62056-5-3 §9.5). */
const INITIATE_DECIPHERING_ERROR = [0x0e, 0x01, 0x00, 0x06];

export class CipheringChannel implements ApduChannel {
  /** Every APDU as sent (">") and received ("<"), in hex: the conversation's evidence. */
  readonly wire: string[] = [];
  /** CtoS, once the AARQ was built. */
  challenge: Uint8Array | undefined;
  serverSystemTitle: Uint8Array | undefined;
  private dedicated: Buffer | undefined;
  private lastServerCounter = -1;
  private active = false;

  constructor(
    private readonly inner: ApduChannel,
    readonly o: SecureSessionOptions,
  ) {}

  get ciphering(): boolean {
    return this.o.policy !== 'none';
  }

  get general(): boolean {
    return this.ciphering && this.o.cipheredApdu === 'general';
  }

  get globalKeys(): CipherKeys {
    return { encryptionKey: this.o.keys.encryptionKey, authenticationKey: this.o.keys.authenticationKey };
  }

  nextInvocationCounter(): Promise<number> {
    return this.o.keyring.nextInvocationCounter(this.o.meterId, this.o.keys.keySetId);
  }

  evidence(): string {
    return this.wire.join(' ');
  }

  authFailed(detail: string): DlmsWireFailure {
    return new DlmsWireFailure('auth_failed', `meter ${this.o.where}: ${detail}`, this.evidence());
  }

  /** The AARQ fields this security asks for (IEC 62056-5-3 §8.2, Green Book §9.4.2.2). */
  async aarqFields(base: { conformance: number; maxPduSize: number }): Promise<Partial<Aarq>> {
    const out: Partial<Aarq> = { callingApTitle: this.o.clientSystemTitle, applicationContext: this.ciphering ? CONTEXT_LN_WITH_CIPHERING : CONTEXT_LN_NO_CIPHERING };
    if (this.o.mechanism === 'hls-gmac') out.challenge = this.challenge = randomBytes(CHALLENGE_LENGTH);
    if (this.ciphering) {
      if (this.o.dedicatedKey) this.dedicated = randomBytes(KEY_LENGTH);
      const conformance = this.general ? base.conformance | CONFORMANCE.generalProtection : base.conformance;
      const initiate = encodeInitiateRequest({ ...base, conformance, ...(this.dedicated ? { dedicatedKey: this.dedicated } : {}) });
      const sc = securityControlFor(this.o.policy)!;
      const content = protect({ ...this.globalKeys, securityControl: sc, systemTitle: this.o.clientSystemTitle, invocationCounter: await this.nextInvocationCounter(), plaintext: initiate });
      out.userInformation = encodeCipheredApdu(CIPHERED_TAG.gloInitiateRequest, content);
    }
    return out;
  }

  /** Judge the AARE: system title, ciphered user-information, refusals that mean keys or counters. */
  acceptAare(aare: Aare): void {
    const info = aare.userInformation;
    if (info?.[0] === XDLMS_TAG.exceptionResponse) this.throwException(info);
    if (aare.result !== AssociationResult.accepted) {
      const decipher = info && INITIATE_DECIPHERING_ERROR.every((b, i) => info[i] === b);
      if (decipher) throw this.authFailed(`the meter could not decipher our glo-initiate-request (its keys differ from the imported key set ${this.o.keys.keySetId})`);
      if (aare.diagnosticSource === 'user' && aare.diagnostic === AcseServiceUserDiagnostic.authenticationFailure) throw this.authFailed(`the meter refused the association: ${describeDiagnostic(aare)} (check the key set ${this.o.keys.keySetId})`);
      return; // any other refusal is the caller's nack
    }
    const title = aare.respondingApTitle;
    if (!title || title.length !== SYSTEM_TITLE_LENGTH) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: AARE without an 8-byte responding-AP-title (server system title)`, this.evidence());
    const known = this.o.keys.serverSystemTitle;
    if (known && !Buffer.from(known).equals(Buffer.from(title))) throw this.authFailed(`the meter's system title ${hex(title)} is not the one in its key file (${hex(known)})`);
    this.serverSystemTitle = title;
    if (this.o.mechanism === 'hls-gmac' && (!aare.challenge || aare.challenge.length < 8 || aare.challenge.length > 64)) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: AARE for HLS without a StoC challenge of 8–64 bytes`, this.evidence());
    if (this.ciphering) {
      if (!info || info[0] !== CIPHERED_TAG.gloInitiateResponse) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: AARE user-information is not a glo-initiate-response`, this.evidence());
      const plain = this.decipher(info, 'global', 'glo-initiate-response');
      let initiate;
      try {
        initiate = decodeInitiateResponse(plain);
      } catch (e) {
        throw new DlmsWireFailure('garbled', `meter ${this.o.where}: deciphered InitiateResponse: ${(e as BerError).message}`, this.evidence());
      }
      if (this.general && (initiate.conformance & CONFORMANCE.generalProtection) === 0) {
        throw new DlmsWireFailure('nack', `meter ${this.o.where}: the meter did not grant general-protection (conformance bit 1), so it takes no general-glo/ded-ciphering; the profile asks cipheredApdu 'general' (use 'service-specific' for this meter)`, this.evidence());
      }
    }
    this.active = true;
  }

  async request(apdu: Uint8Array): Promise<Uint8Array> {
    const cipherIt = this.active && this.ciphering && REQUEST_TAGS.has(apdu[0]!);
    let sent = apdu;
    const key: KeyKind = this.dedicated ? 'dedicated' : 'global';
    if (cipherIt) {
      const content = protect({ ...this.keysFor(key), securityControl: securityControlFor(this.o.policy)!, systemTitle: this.o.clientSystemTitle, invocationCounter: await this.nextInvocationCounter(), plaintext: apdu });
      sent = this.general ? encodeGeneralCiphering(key, this.o.clientSystemTitle, content) : encodeCipheredApdu(cipheredTagFor(apdu[0]!, key)!, content);
    }
    this.wire.push(`>${hex(sent)}`);
    const answer = await this.inner.request(sent);
    this.wire.push(`<${hex(answer)}`);
    if (ACSE_TAGS.has(answer[0]!)) return answer;
    if (answer[0] === XDLMS_TAG.exceptionResponse) this.throwException(answer);
    if (!cipherIt) return answer;
    const general = key === 'global' ? CIPHERED_TAG.generalGloCiphering : CIPHERED_TAG.generalDedCiphering;
    // The answer comes in the form of the request; a service-specific request also takes a general answer (older behaviour kept).
    const expectedTag = this.general ? general : cipheredTagFor(apdu[0]! + 4, key); // request tag + 4 = its response tag (C0→C4, C1→C5, C3→C7)
    if (answer[0] !== expectedTag && (this.general || answer[0] !== general)) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: answer 0x${answer[0]?.toString(16)} to a ciphered request is not the ${key} ciphered response 0x${expectedTag?.toString(16)}`, this.evidence());
    const plain = this.decipher(answer, key, 'response');
    if (this.general && plain[0] === XDLMS_TAG.exceptionResponse) this.throwException(plain);
    if (this.general && plain[0] !== apdu[0]! + 4) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: the general-ciphered answer holds APDU 0x${plain[0]?.toString(16)}, not the response 0x${(apdu[0]! + 4).toString(16)} to our request`, this.evidence());
    return plain;
  }

  private keysFor(key: KeyKind): CipherKeys {
    return key === 'dedicated' && this.dedicated ? { encryptionKey: this.dedicated, authenticationKey: this.o.keys.authenticationKey } : this.globalKeys;
  }

  /** Decipher a meter's ciphered APDU: tag check, policy kept (no downgrade), its counter strictly growing. */
  private decipher(bytes: Uint8Array, key: KeyKind, what: string): Buffer {
    try {
      const c = decodeCipheredApdu(bytes);
      const kind = c.tag === CIPHERED_TAG.generalGloCiphering ? 'global' : c.tag === CIPHERED_TAG.generalDedCiphering ? 'dedicated' : plainTagOf(c.tag)?.key;
      if (kind !== key) throw new CipheredApduError(`${what} ciphered with the wrong key kind`);
      if (c.systemTitle && !Buffer.from(c.systemTitle).equals(Buffer.from(this.serverSystemTitle!))) {
        throw this.authFailed(`the ${what} carries system title ${hex(c.systemTitle)}, not the meter's responding-AP-title ${hex(this.serverSystemTitle!)} from the AARE`);
      }
      const st = c.systemTitle ?? this.serverSystemTitle!;
      const out = unprotect(c.content, st, this.keysFor(key));
      const wanted = securityControlFor(this.o.policy)!;
      if ((wanted.authenticated && !out.securityControl.authenticated) || (wanted.encrypted && !out.securityControl.encrypted)) {
        throw new DlmsWireFailure('garbled', `meter ${this.o.where}: ${what} is protected less than the profile's policy ${this.o.policy}`, this.evidence());
      }
      if (out.invocationCounter <= this.lastServerCounter) {
        throw new DlmsWireFailure('garbled', `meter ${this.o.where}: ${what} carries invocation counter ${out.invocationCounter}, not above the last one ${this.lastServerCounter} (a replayed answer)`, this.evidence());
      }
      this.lastServerCounter = out.invocationCounter;
      return out.plaintext;
    } catch (e) {
      if (e instanceof DecipherError) throw this.authFailed(`the ${what} does not decipher: ${e.message}`);
      if (e instanceof CipheredApduError) throw new DlmsWireFailure('garbled', `meter ${this.o.where}: ${e.message}`, this.evidence());
      throw e;
    }
  }

  private throwException(bytes: Uint8Array): never {
    let ex;
    try {
      ex = decodeResponse(bytes);
    } catch {
      throw new DlmsWireFailure('garbled', `meter ${this.o.where}: malformed exception-response`, this.evidence());
    }
    if (ex.kind !== 'exception') throw new DlmsWireFailure('garbled', `meter ${this.o.where}: malformed exception-response`, this.evidence());
    if (ex.serviceError === ServiceError.invocationCounterError) throw new CounterTooLow(`meter ${this.o.where}: ${describeException(ex)}`, this.evidence(), ex.invocationCounter);
    if (ex.serviceError === ServiceError.decipheringError) throw this.authFailed(`the meter could not decipher our request (${describeException(ex)}); its keys differ from key set ${this.o.keys.keySetId}`);
    throw new DlmsWireFailure('nack', `meter ${this.o.where}: ${describeException(ex)}`, this.evidence());
  }
}
