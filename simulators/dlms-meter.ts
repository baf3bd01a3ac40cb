import { randomBytes } from 'node:crypto';
import {
  decodeAarq,
  decodeInitiateRequest,
  encodeAare,
  encodeInitiateResponse,
  encodeRlre,
  ACSE_TAG,
  AcseServiceUserDiagnostic,
  AssociationResult,
  CONFORMANCE,
  CONTEXT_LN_NO_CIPHERING,
  CONTEXT_LN_WITH_CIPHERING,
  DLMS_VERSION,
  type DecodedAarq,
  type InitiateRequest,
} from '../drivers/dlms/acse-apdu.js';
import { CIPHERED_TAG, cipheredTagFor, decodeCipheredApdu, encodeCipheredApdu, encodeGeneralCiphering, isCipheredApdu, plainTagOf, type KeyKind } from '../drivers/dlms/security/ciphered-apdu.js';
import { hlsGmacResponse, verifyHlsGmac } from '../drivers/dlms/security/hls-gmac.js';
import { ASSOCIATION_LN_CLASS_ID, CURRENT_ASSOCIATION } from '../drivers/dlms/security/hls-authentication.js';
import { type SecurityControl } from '../drivers/dlms/security/security-control.js';
import { protect, unprotect, type CipherKeys } from '../drivers/dlms/security/suite0-cipher.js';
import { parseObis } from '../drivers/dlms/cosem/obis.js';
import { KeyId, readGlobalKeyTransfer, SECURITY_SETUP_CLASS_ID, SecuritySetupMethod } from '../drivers/dlms/cosem/security-setup.js';
import { data, encodeData, type DlmsData } from '../drivers/dlms/axdr.js';
import { CLOCK_CLASS_ID, ClockAttribute, decodeDateTime, encodeDateTime } from '../drivers/dlms/cosem/clock.js';
import { controlStateFromRelay, DISCONNECT_CONTROL_CLASS_ID, DisconnectControlAttribute, DisconnectControlMethod, remoteReconnectOutcome, type ControlMode } from '../drivers/dlms/cosem/disconnect-control.js';
import { OBIS, sameLogicalName, type LogicalName } from '../drivers/dlms/cosem/obis.js';
import { encodeScalerUnit, REGISTER_CLASS_ID, RegisterAttribute, Unit, type ScalerUnit } from '../drivers/dlms/cosem/register.js';
import { LLC_RESPONSE, withLlc } from '../drivers/dlms/llc.js';
import { AccessResult, decodeRequest, encodeResponse, ServiceError, StateError, type XdlmsRequest, type XdlmsResponse } from '../drivers/dlms/xdlms-apdu.js';
import type { MeterReply, SimulatedMeter } from './meter-model.js';
import { SimulatedLimiter, type SimLimiterOptions } from './dlms-limiter.js';

/**
 * The COSEM application side of one simulated DLMS meter: association (AARQ/AARE with LLS password, or HLS-GMAC
 * with security suite 0 ciphering as a real meter does it: glo-initiate, passes 3/4 on the current association,
 * ciphered service APDUs with its own invocation counter, the client's counter checked to grow and rejected with
 * exception-response invocation-counter-error otherwise), the public client (SAP 16, lowest security, read-only:
 * the frame counter and the disconnect control), GET (with data blocks), SET, ACTION and release, over the
 * protocol-independent `SimulatedMeter`.
 *
 * One conversation = one decision of the meter model. The first live read of an association (control
 * state, output state, a register value) calls `handle('read')`; an ACTION calls `handle('disconnect' |
 * 'reconnect')`; every later read in the same association is answered from that reply. So a lying meter
 * claims the asked state within the command's association, a stuck one shows the unchanged state, and
 * a fresh association (the gateway's read-back) sees the truth. A SET of the limiter's threshold_normal (class 71,
 * dlms-limiter.ts) calls `handle('limit')` the same way, and threshold_active is read from that reply. When the model stays silent (offline,
 * dropped command) the meter answers nothing more until the next SNRM.
 *
 * Ciphered service requests come as glo-/ded-xxx or, when the association negotiated general-protection (conformance
 * bit 1, granted unless `generalProtection: false`), as general-glo/ded-ciphering whose system title must be the
 * association's calling-AP-title (else deciphering-error); the meter answers in the form the client used, as real
 * meters do. `wireTags` records the first byte of each APDU in (">db") and out ("<db"), newest last.
 */

export interface DlmsMeterFaults {
  /** The next n ACTIONs are answered temporary-failure (the relay does not move). */
  temporaryFailures: number;
  /** The meter holds other keys than the ones imported for it: HLS and deciphering fail. */
  wrongKey: boolean;
  /** At the next secured AARQ the meter's last-seen client counter jumps ahead by this much (then 0 again). */
  counterAhead: number;
  /** global_key_transfer is answered other-reason (the meter keeps its keys). */
  refuseKeyTransfer: boolean;
  /** The next global_key_transfer is carried out but its answer is lost (the meter goes silent until the next connection). */
  loseKeyTransferAnswer: boolean;
}

/** A meter's security suite 0 material (what the manufacturer's key file lists for it). */
export interface SimMeterKeys {
  encryptionKey: Buffer;
  authenticationKey: Buffer;
  systemTitle: Buffer;
  /** Master key (KEK): global_key_transfer (class 64 method 2) is unwrapped with it; without one it is refused. */
  masterKey?: Buffer;
}

/**
 * Where the simulated meter keeps the voltage on the load side of its disconnector (class 3 Register, DOMAIN.md rule
 * 14). The standard has no instance for it: like real makers, a manufacturer-specific code (value group E 128–254).
 */
export const LOAD_SIDE_VOLTAGE_OBIS = parseObis('1-0:32.7.128.255');

/** The frame counter object the public client may read: class 1 Data, 0-0:43.1.0.255 (IDIS invocation counter). */
export const FRAME_COUNTER_OBIS = parseObis('0-0:43.1.0.255');
const DATA_CLASS_ID = 1;
export const PUBLIC_CLIENT_SAP = 16;
/** The Security setup object of the management client's association (class 64). */
export const SECURITY_SETUP_OBIS = parseObis('0-0:43.0.0.255');
/** ConfirmedServiceError initiateError (1), application-reference (0), deciphering-error (6). */
const INITIATE_DECIPHERING_ERROR = Uint8Array.from([0x0e, 0x01, 0x00, 0x06]);

interface SecuredAssociation {
  clientSystemTitle: Uint8Array;
  ctos: Uint8Array;
  stoc: Uint8Array;
  /** Passes 3/4 done. */
  authenticated: boolean;
  /** Context 3: service APDUs must be ciphered. */
  ciphered: boolean;
  dedicatedKey: Uint8Array | undefined;
  /** general-protection negotiated: general-glo/ded-ciphering allowed. */
  generalProtection: boolean;
}

export interface DlmsSimMeterOptions {
  meter: SimulatedMeter;
  /** Lower HDLC address (physical device on the bus). */
  physicalAddress: number;
  /** Upper HDLC address (logical device). Default 1. */
  logicalAddress?: number;
  /** Disconnect control mode 0–6; must agree with the model's remoteReconnect (2, 4 close; 1, 3, 5, 6 arm). */
  controlMode: ControlMode;
  /** LLS password; undefined = lowest security (no authentication). */
  password?: string;
  /** HLS-GMAC with these keys for the management client (instead of a password). */
  keys?: SimMeterKeys;
  energyScalerUnit?: ScalerUnit;
  voltageScalerUnit?: ScalerUnit;
  /** Largest APDU the meter receives (server-max-receive-pdu-size). Default 1024. */
  maxPduSize?: number;
  /** Whether the meter grants general-protection (general-glo/ded-ciphering) when the client proposes it. Default true. */
  generalProtection?: boolean;
  /** The load limiter (class 71) over the model's demand limit: on by default at 0-0:17.0.0.255; `false` = the meter has none. */
  limiter?: SimLimiterOptions | false;
}

/** What the meter puts on the wire for one request: an information field (LLC + APDU, or garbage), when. */
export interface MeterAnswer {
  info: Uint8Array;
  delayMs: number;
}

const SERVER_CONFORMANCE = CONFORMANCE.priorityManagement | CONFORMANCE.blockTransferWithGet | CONFORMANCE.get | CONFORMANCE.set | CONFORMANCE.selectiveAccess | CONFORMANCE.eventNotification | CONFORMANCE.action;
/** GET-Response-With-Datablock header: tag, choice, invoke-id, last-block, block-number (4), choice, length (≤ 3). */
const BLOCK_OVERHEAD = 12;
const WIRE_TAGS_KEPT = 500;
const tagHex = (b: number | undefined) => (b ?? 0).toString(16).padStart(2, '0');

export class DlmsSimMeter {
  readonly meter: SimulatedMeter;
  readonly physicalAddress: number;
  readonly logicalAddress: number;
  readonly controlMode: ControlMode;
  password: string | undefined;
  keys: SimMeterKeys | undefined;
  /** The class 71 limiter, undefined for a meter without one; its `readOnly` is the refused-SET fault. */
  readonly limiter: SimulatedLimiter | undefined;
  readonly faults: DlmsMeterFaults = { temporaryFailures: 0, wrongKey: false, counterAhead: 0, refuseKeyTransfer: false, loseKeyTransferAnswer: false };
  /** Associations accepted and refused, for tests. */
  readonly counters = { associations: 0, refused: 0, releases: 0, blocksSent: 0, hlsFailures: 0, rejectedCounters: 0, publicAssociations: 0, keyTransfers: 0, keyTransfersRefused: 0 };
  /** Every client invocation counter value this meter was sent (accepted or not), in order: tests assert no repeat. */
  readonly seenCounters: number[] = [];
  /** The first byte of every APDU received (">c8") and answered ("<cc"), newest last, at most WIRE_TAGS_KEPT. */
  readonly wireTags: string[] = [];
  /** The last client invocation counter accepted (the frame counter the public client reads). */
  lastClientCounter = 0;
  /** The meter's own invocation counter, for what it ciphers. */
  private serverCounter = 1;
  private secured: SecuredAssociation | undefined;
  private publicClient = false;
  /** Keys taken by global_key_transfer: used from the next association on (the answer still goes out under the old ones). */
  private nextKeys: SimMeterKeys | undefined;

  private readonly energySu: ScalerUnit;
  private readonly voltageSu: ScalerUnit;
  private readonly maxPduSize: number;
  private readonly serverConformance: number;
  private associated = false;
  private clientMaxPdu = 0xffff;
  private snapshot: MeterReply | undefined;
  private silent = false;
  private blocks: { invokeId: number; chunks: Uint8Array[]; sent: number } | undefined;
  private conversation = 0;
  private clockOffsetMs = 0;

  constructor(o: DlmsSimMeterOptions) {
    this.meter = o.meter;
    this.physicalAddress = o.physicalAddress;
    this.logicalAddress = o.logicalAddress ?? 1;
    this.controlMode = o.controlMode;
    this.password = o.password;
    this.keys = o.keys;
    this.energySu = o.energyScalerUnit ?? { scaler: 0, unit: Unit.Wh };
    this.voltageSu = o.voltageScalerUnit ?? { scaler: -1, unit: Unit.V };
    this.maxPduSize = o.maxPduSize ?? 1024;
    this.limiter = o.limiter === false ? undefined : new SimulatedLimiter(o.limiter);
    this.serverConformance = o.generalProtection === false ? SERVER_CONFORMANCE : SERVER_CONFORMANCE | CONFORMANCE.generalProtection;
    const arms = remoteReconnectOutcome(o.controlMode) === 'armed';
    if (o.controlMode !== 0 && arms !== (o.meter.remoteReconnect === 'arms')) {
      throw new Error(`simulated meter ${o.meter.id}: control mode ${o.controlMode} ${arms ? 'arms' : 'closes'} on reconnect, but the meter model ${o.meter.remoteReconnect}`);
    }
  }

  /** The link was (re)connected or disconnected: forget the association. */
  resetLink(): void {
    this.switchKeys();
    this.associated = false;
    this.snapshot = undefined;
    this.silent = false;
    this.blocks = undefined;
    this.secured = undefined;
    this.publicClient = false;
    this.conversation++;
  }

  /** Whether the meter has stopped answering for the rest of this connection. */
  get isSilent(): boolean {
    return this.silent;
  }

  /** Answer one complete APDU (LLC stripped) from client SAP `clientSap`; undefined = the meter stays silent. */
  answer(apdu: Uint8Array, now: number, clientSap = 1): MeterAnswer | undefined {
    if (this.silent) return undefined;
    this.record(`>${tagHex(apdu[0])}`);
    const out = this.answerApdu(apdu, now, clientSap);
    if (out) this.record(`<${tagHex(out.info[LLC_RESPONSE.length])}`);
    return out;
  }

  private record(tag: string): void {
    this.wireTags.push(tag);
    if (this.wireTags.length > WIRE_TAGS_KEPT) this.wireTags.splice(0, this.wireTags.length - WIRE_TAGS_KEPT);
  }

  private answerApdu(apdu: Uint8Array, now: number, clientSap: number): MeterAnswer | undefined {
    const tag = apdu[0];
    if (tag === ACSE_TAG.AARQ) return this.respondRaw(this.associate(apdu, clientSap));
    if (tag === ACSE_TAG.RLRQ) {
      this.associated = false;
      this.secured = undefined;
      this.counters.releases++;
      this.switchKeys();
      return this.respondRaw(encodeRlre());
    }
    if (this.secured?.ciphered && this.associated) {
      if (!isCipheredApdu(apdu)) return this.respondRaw(encodeResponse({ kind: 'exception', stateError: StateError.serviceNotAllowed, serviceError: ServiceError.operationNotPossible }));
      return this.answerCiphered(apdu, now);
    }
    return this.answerPlain(apdu, now);
  }

  private answerPlain(apdu: Uint8Array, now: number): MeterAnswer | undefined {
    let req: XdlmsRequest;
    try {
      req = decodeRequest(apdu);
    } catch {
      return this.respondRaw(encodeResponse({ kind: 'exception', stateError: 2 /* service-unknown */, serviceError: 2 }));
    }
    if (!this.associated) return this.respond(this.refuse(req, AccessResult.readWriteDenied));
    if (this.secured && !this.secured.authenticated) {
      // Between AARE and pass 3 only reply_to_HLS_authentication is allowed.
      if (req.kind === 'action' && req.method.classId === ASSOCIATION_LN_CLASS_ID && sameLogicalName(req.method.logicalName, CURRENT_ASSOCIATION) && req.method.method === 1) return this.replyToHls(req);
      return this.respond(this.refuse(req, AccessResult.readWriteDenied));
    }
    if (this.publicClient) return this.answerPublic(req, now);
    switch (req.kind) {
      case 'get':
        return this.get(req, now);
      case 'get-next':
        return this.nextBlock(req.invokeId, req.block);
      case 'set':
        return this.set(req, now);
      case 'action':
        return this.action(req, now);
    }
  }

  /** The public client reads the frame counter and the disconnect control; everything else is denied. */
  private answerPublic(req: XdlmsRequest, now: number): MeterAnswer | undefined {
    if (req.kind === 'get') {
      const { classId, logicalName: ln, attribute: a } = req.attribute;
      if (classId === DATA_CLASS_ID && sameLogicalName(ln, FRAME_COUNTER_OBIS) && a === 2) return this.getResult(req.invokeId, data.doubleLongUnsigned(this.lastClientCounter), 0);
      if (classId === DISCONNECT_CONTROL_CLASS_ID && sameLogicalName(ln, OBIS.disconnectControl)) return this.get(req, now);
    }
    if (req.kind === 'get-next') return this.nextBlock(req.invokeId, req.block);
    return this.respond(this.refuse(req, AccessResult.readWriteDenied));
  }

  /**
   * What the meter pushes, as it sends it: with keys, general-glo-ciphering (Green Book §9.2.7.2.4: its system title,
   * SC authenticated and encrypted, its own invocation counter, the global unicast key); without, the plain APDU.
   */
  protectPush(plain: Uint8Array): Uint8Array {
    if (!this.keys) return plain;
    const content = protect({ ...this.meterKeys(), securityControl: { suite: 0, authenticated: true, encrypted: true, broadcastKey: false, compressed: false }, systemTitle: this.keys.systemTitle, invocationCounter: this.serverCounter++, plaintext: plain });
    return encodeGeneralCiphering('global', this.keys.systemTitle, content);
  }

  /** The keys the meter actually holds (other ones under the wrongKey fault). */
  private meterKeys(dedicated?: Uint8Array): CipherKeys {
    const k = this.keys!;
    const flip = (b: Uint8Array) => {
      const out = Buffer.from(b);
      if (this.faults.wrongKey) out[0]! ^= 0x5a;
      return out;
    };
    return { encryptionKey: dedicated ? Buffer.from(dedicated) : flip(k.encryptionKey), authenticationKey: flip(k.authenticationKey) };
  }

  /** Check a client invocation counter: strictly above the last accepted one (Green Book §9.2.7.2.4). */
  private acceptCounter(ic: number): boolean {
    this.seenCounters.push(ic);
    if (ic <= this.lastClientCounter) {
      this.counters.rejectedCounters++;
      return false;
    }
    this.lastClientCounter = ic;
    return true;
  }

  private counterError(): Uint8Array {
    return encodeResponse({ kind: 'exception', stateError: StateError.serviceNotAllowed, serviceError: ServiceError.invocationCounterError, invocationCounter: this.lastClientCounter + 1 });
  }

  private cipher(plain: Uint8Array, tag: number, sc: SecurityControl, keys: CipherKeys): Uint8Array {
    const content = protect({ ...keys, securityControl: sc, systemTitle: this.keys!.systemTitle, invocationCounter: this.serverCounter++, plaintext: plain });
    return encodeCipheredApdu(tag, content);
  }

  private answerCiphered(apdu: Uint8Array, now: number): MeterAnswer | undefined {
    const s = this.secured!;
    let kind: KeyKind;
    let plain;
    let general = false;
    try {
      const c = decodeCipheredApdu(apdu);
      general = c.systemTitle !== undefined;
      if (general && !s.generalProtection) return this.respondRaw(encodeResponse({ kind: 'exception', stateError: StateError.serviceNotAllowed, serviceError: ServiceError.operationNotPossible }));
      // The sender's system title must be the one this association was made with (its calling-AP-title).
      if (general && !Buffer.from(c.systemTitle!).equals(Buffer.from(s.clientSystemTitle))) throw new Error('another system title');
      kind = c.tag === CIPHERED_TAG.generalDedCiphering ? 'dedicated' : c.tag === CIPHERED_TAG.generalGloCiphering ? 'global' : plainTagOf(c.tag)!.key;
      if (kind === 'dedicated' && !s.dedicatedKey) throw new Error('no dedicated key');
      plain = unprotect(c.content, s.clientSystemTitle, this.meterKeys(kind === 'dedicated' ? s.dedicatedKey : undefined));
    } catch {
      return this.respondRaw(encodeResponse({ kind: 'exception', stateError: StateError.serviceNotAllowed, serviceError: ServiceError.decipheringError }));
    }
    if (!this.acceptCounter(plain.invocationCounter)) return this.respondRaw(this.counterError());
    const answer = this.answerPlain(plain.plaintext, now);
    if (!answer) return undefined;
    const body = answer.info.subarray(LLC_RESPONSE.length);
    const tag = cipheredTagFor(body[0]!, kind);
    const isLlc = LLC_RESPONSE.every((b, i) => answer.info[i] === b);
    if (!isLlc || tag === undefined) return answer; // garbage or an exception-response goes out as it is
    const keys = this.meterKeys(kind === 'dedicated' ? s.dedicatedKey : undefined);
    if (general) {
      const content = protect({ ...keys, securityControl: plain.securityControl, systemTitle: this.keys!.systemTitle, invocationCounter: this.serverCounter++, plaintext: body });
      return { info: withLlc(LLC_RESPONSE, encodeGeneralCiphering(kind, this.keys!.systemTitle, content)), delayMs: answer.delayMs };
    }
    return { info: withLlc(LLC_RESPONSE, this.cipher(body, tag, plain.securityControl, keys)), delayMs: answer.delayMs };
  }

  /** Pass 3 checked, pass 4 answered: f(StoC) from the client must verify, f(CtoS) goes back. */
  private replyToHls(req: Extract<XdlmsRequest, { kind: 'action' }>): MeterAnswer {
    const s = this.secured!;
    const param = req.parameter;
    const ic = param?.type === 'octet-string' ? verifyHlsGmac(this.meterKeys(), s.clientSystemTitle, s.stoc, param.value) : undefined;
    const fresh = ic !== undefined && !this.seenCounters.includes(ic);
    if (ic !== undefined) this.seenCounters.push(ic);
    if (!fresh) {
      this.counters.hlsFailures++;
      this.associated = false;
      return this.respond({ kind: 'action', invokeId: req.invokeId, result: AccessResult.otherReason });
    }
    s.authenticated = true;
    const fCtoS = hlsGmacResponse(this.meterKeys(), this.keys!.systemTitle, this.serverCounter++, s.ctos);
    return this.respond({ kind: 'action', invokeId: req.invokeId, result: AccessResult.success, returned: { data: data.octetString(fCtoS) } });
  }

  private respondRaw(apdu: Uint8Array, delayMs = 0): MeterAnswer {
    return { info: withLlc(LLC_RESPONSE, apdu), delayMs };
  }

  private respond(res: XdlmsResponse, delayMs = 0): MeterAnswer {
    return this.respondRaw(encodeResponse(res), delayMs);
  }

  private refuse(req: XdlmsRequest, code: number): XdlmsResponse {
    if (req.kind === 'get' || req.kind === 'get-next') return { kind: 'get', invokeId: req.invokeId, result: { error: code } };
    if (req.kind === 'set') return { kind: 'set', invokeId: req.invokeId, result: code };
    return { kind: 'action', invokeId: req.invokeId, result: code };
  }

  private associate(apdu: Uint8Array, clientSap: number): Uint8Array {
    this.resetLink();
    const refuse = (diagnostic: number, userInformation?: Uint8Array) => {
      this.counters.refused++;
      return encodeAare({ result: AssociationResult.rejectedPermanent, diagnostic, diagnosticSource: 'user', ...(userInformation ? { userInformation } : {}) });
    };
    let aarq: DecodedAarq;
    try {
      aarq = decodeAarq(apdu);
    } catch {
      return refuse(AcseServiceUserDiagnostic.noReasonGiven);
    }
    if (clientSap === PUBLIC_CLIENT_SAP) {
      // The public client: lowest security, no ciphering, read-only.
      if (aarq.applicationContext !== CONTEXT_LN_NO_CIPHERING) return refuse(AcseServiceUserDiagnostic.applicationContextNameNotSupported);
      if (aarq.mechanism !== 'lowest' || !aarq.initiate) return refuse(AcseServiceUserDiagnostic.authenticationMechanismNameNotRecognised);
      this.publicClient = true;
      this.counters.publicAssociations++;
      return this.accept(aarq.initiate);
    }
    if (this.keys) return this.associateHls(aarq, refuse);
    if (aarq.applicationContext !== CONTEXT_LN_NO_CIPHERING || !aarq.initiate) return refuse(AcseServiceUserDiagnostic.applicationContextNameNotSupported);
    if (this.password !== undefined) {
      if (aarq.mechanism !== 'low' || !aarq.password) return refuse(AcseServiceUserDiagnostic.authenticationRequired);
      if (Buffer.from(aarq.password).toString('latin1') !== this.password) return refuse(AcseServiceUserDiagnostic.authenticationFailure);
    }
    return this.accept(aarq.initiate);
  }

  private accept(initiate: InitiateRequest): Uint8Array {
    this.associated = true;
    this.clientMaxPdu = initiate.maxPduSize;
    this.counters.associations++;
    return encodeAare({
      result: AssociationResult.accepted,
      diagnostic: AcseServiceUserDiagnostic.null,
      diagnosticSource: 'user',
      initiate: { conformance: initiate.conformance & SERVER_CONFORMANCE, maxPduSize: this.maxPduSize, dlmsVersion: DLMS_VERSION },
    });
  }

  /** The management client with HLS-GMAC (mechanism 5), with or without ciphering (context 3 or 1). */
  private associateHls(aarq: DecodedAarq, refuse: (diagnostic: number, userInformation?: Uint8Array) => Uint8Array): Uint8Array {
    if (aarq.mechanism !== 'hls-gmac') return refuse(AcseServiceUserDiagnostic.authenticationMechanismNameRequired);
    if (!aarq.challenge || aarq.challenge.length < 8 || aarq.challenge.length > 64 || aarq.callingApTitle?.length !== 8) return refuse(AcseServiceUserDiagnostic.authenticationFailure);
    if (this.faults.counterAhead > 0) {
      this.lastClientCounter += this.faults.counterAhead;
      this.faults.counterAhead = 0;
    }
    const ciphered = aarq.applicationContext === CONTEXT_LN_WITH_CIPHERING;
    if (!ciphered && aarq.applicationContext !== CONTEXT_LN_NO_CIPHERING) return refuse(AcseServiceUserDiagnostic.applicationContextNameNotSupported);
    let initiate: InitiateRequest;
    let sc: SecurityControl | undefined;
    if (ciphered) {
      if (aarq.userInformation[0] !== CIPHERED_TAG.gloInitiateRequest) return refuse(AcseServiceUserDiagnostic.noReasonGiven);
      let plain;
      try {
        plain = unprotect(decodeCipheredApdu(aarq.userInformation).content, aarq.callingApTitle, this.meterKeys());
        initiate = decodeInitiateRequest(plain.plaintext);
      } catch {
        this.counters.hlsFailures++;
        return refuse(AcseServiceUserDiagnostic.noReasonGiven, INITIATE_DECIPHERING_ERROR);
      }
      // A counter that does not grow: refused, saying which counter the meter expects (as its exception-response does).
      if (!this.acceptCounter(plain.invocationCounter)) return refuse(AcseServiceUserDiagnostic.noReasonGiven, this.counterError());
      sc = plain.securityControl;
    } else {
      if (!aarq.initiate) return refuse(AcseServiceUserDiagnostic.noReasonGiven);
      initiate = aarq.initiate;
    }
    const stoc = randomBytes(16);
    const conformance = initiate.conformance & this.serverConformance;
    this.secured = { clientSystemTitle: aarq.callingApTitle, ctos: aarq.challenge, stoc, authenticated: false, ciphered, dedicatedKey: initiate.dedicatedKey, generalProtection: (conformance & CONFORMANCE.generalProtection) !== 0 };
    this.associated = true;
    this.clientMaxPdu = initiate.maxPduSize;
    this.counters.associations++;
    const response = encodeInitiateResponse({ conformance, maxPduSize: this.maxPduSize, dlmsVersion: DLMS_VERSION });
    return encodeAare({
      applicationContext: aarq.applicationContext,
      result: AssociationResult.accepted,
      // Accepted, with passes 3 and 4 still to do.
      diagnostic: AcseServiceUserDiagnostic.authenticationRequired,
      diagnosticSource: 'user',
      respondingApTitle: this.keys!.systemTitle,
      mechanism: 'hls-gmac',
      challenge: stoc,
      userInformation: sc ? this.cipher(response, CIPHERED_TAG.gloInitiateResponse, sc, this.meterKeys()) : response,
    });
  }

  /** The model's reply this association rests on, taking it now if there is none yet. */
  private take(op: 'read' | 'disconnect' | 'reconnect' | 'limit', now: number, limitW?: number | null): MeterReply | undefined {
    if (op === 'read' && this.snapshot) return this.snapshot;
    const cid = `dlms:${this.logicalAddress}/${this.physicalAddress}:${this.conversation}:${op}`;
    const reply = this.meter.handle(op, now, op === 'limit' ? { cid, limitW: limitW ?? null } : { cid });
    if (!reply) {
      this.silent = true;
      return undefined;
    }
    this.snapshot = reply;
    return reply;
  }

  private get(req: Extract<XdlmsRequest, { kind: 'get' }>, now: number): MeterAnswer | undefined {
    const { classId, logicalName: ln, attribute: a } = req.attribute;
    const reply = (d: DlmsData, delayMs = 0) => this.getResult(req.invokeId, d, delayMs);
    const live = (produce: (r: MeterReply) => DlmsData): MeterAnswer | undefined => {
      const first = this.snapshot === undefined;
      const r = this.take('read', now);
      if (!r) return undefined;
      if (first && r.garbled) return { info: r.garbage ?? new Uint8Array([0xff]), delayMs: r.replyDelayMs };
      return reply(produce(r), first ? r.replyDelayMs : 0);
    };
    if (sameLogicalName(ln, OBIS.disconnectControl)) {
      if (classId !== DISCONNECT_CONTROL_CLASS_ID) return this.respond(this.refuse(req, AccessResult.objectClassInconsistent));
      if (a === DisconnectControlAttribute.logicalName) return reply(data.octetString(Uint8Array.from(ln)));
      if (a === DisconnectControlAttribute.outputState) return live((r) => data.boolean(r.relay === 'connected'));
      if (a === DisconnectControlAttribute.controlState) return live((r) => data.enum(controlStateFromRelay(r.relay)));
      if (a === DisconnectControlAttribute.controlMode) return reply(data.enum(this.controlMode));
    } else if (sameLogicalName(ln, OBIS.activeEnergyImport) || sameLogicalName(ln, OBIS.voltageL1) || sameLogicalName(ln, LOAD_SIDE_VOLTAGE_OBIS)) {
      if (classId !== REGISTER_CLASS_ID) return this.respond(this.refuse(req, AccessResult.objectClassInconsistent));
      const energy = sameLogicalName(ln, OBIS.activeEnergyImport);
      const su = energy ? this.energySu : this.voltageSu;
      if (a === RegisterAttribute.logicalName) return reply(data.octetString(Uint8Array.from(ln)));
      if (a === RegisterAttribute.scalerUnit) return reply(encodeScalerUnit(su));
      if (a === RegisterAttribute.value) {
        return live((r) => {
          const volts = sameLogicalName(ln, OBIS.voltageL1) ? r.voltageV : r.loadSideVoltageV;
          const raw = Math.round((energy ? r.energyWh : volts) / 10 ** su.scaler);
          return energy ? data.doubleLongUnsigned(raw) : data.longUnsigned(raw);
        });
      }
    } else if (sameLogicalName(ln, OBIS.clock)) {
      if (classId !== CLOCK_CLASS_ID) return this.respond(this.refuse(req, AccessResult.objectClassInconsistent));
      if (a === ClockAttribute.logicalName) return reply(data.octetString(Uint8Array.from(ln)));
      if (a === ClockAttribute.time) return reply(data.octetString(encodeDateTime(now + this.clockOffsetMs)));
    } else if (this.limiter && sameLogicalName(ln, this.limiter.logicalName)) {
      const g = this.limiter.get(classId, a);
      return 'value' in g ? reply(g.value) : 'live' in g ? live(g.live) : this.respond(this.refuse(req, g.refused));
    } else return this.respond(this.refuse(req, AccessResult.objectUndefined));
    return this.respond(this.refuse(req, AccessResult.objectUndefined));
  }

  /** GET-Response-Normal, or the first of its data blocks when it exceeds the client's max PDU (IEC 62056-5-3 §9.3.7). */
  private getResult(invokeId: number, d: DlmsData, delayMs: number): MeterAnswer {
    const normal = encodeResponse({ kind: 'get', invokeId, result: { data: d } });
    if (normal.length <= this.clientMaxPdu) return this.respondRaw(normal, delayMs);
    const raw = encodeData(d);
    const size = Math.max(1, this.clientMaxPdu - BLOCK_OVERHEAD);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < raw.length; i += size) chunks.push(raw.slice(i, i + size));
    this.blocks = { invokeId, chunks, sent: 0 };
    const first = this.nextBlock(invokeId, 0);
    return { ...first, delayMs };
  }

  private nextBlock(invokeId: number, acknowledged: number): MeterAnswer {
    const b = this.blocks;
    if (!b) return this.respond({ kind: 'get-block', invokeId, lastBlock: true, block: acknowledged, result: { error: AccessResult.noLongGetInProgress } });
    if (acknowledged !== b.sent) return this.respond({ kind: 'get-block', invokeId, lastBlock: true, block: acknowledged, result: { error: AccessResult.dataBlockNumberInvalid } });
    const chunk = b.chunks[b.sent]!;
    b.sent++;
    const lastBlock = b.sent === b.chunks.length;
    if (lastBlock) this.blocks = undefined;
    this.counters.blocksSent++;
    return this.respond({ kind: 'get-block', invokeId: b.invokeId, lastBlock, block: b.sent, result: { raw: chunk } });
  }

  /**
   * The clock's time and the limiter's threshold_normal and min_over_threshold_duration are writable here; everything
   * else is read-write-denied (access rights of a public client). A new threshold is the meter model's decision
   * (`handle('limit')`): silent, garbled or refused as its faults say.
   */
  private set(req: Extract<XdlmsRequest, { kind: 'set' }>, now: number): MeterAnswer | undefined {
    const { classId, logicalName: ln, attribute: a } = req.attribute;
    const result = (code: number, delayMs = 0) => this.respond({ kind: 'set', invokeId: req.invokeId, result: code }, delayMs);
    if (classId === CLOCK_CLASS_ID && sameLogicalName(ln, OBIS.clock) && a === ClockAttribute.time) {
      const t = req.value.type === 'octet-string' ? decodeDateTime(req.value.value) : 'not an octet-string';
      if (typeof t === 'string') return result(AccessResult.typeUnmatched);
      this.clockOffsetMs = t - now;
      return result(AccessResult.success);
    }
    if (this.limiter && sameLogicalName(ln, this.limiter.logicalName)) {
      const s = this.limiter.set(classId, a, req.value);
      if ('result' in s) return result(s.result);
      const r = this.take('limit', now, s.limitW);
      if (!r) return undefined;
      if (r.garbled) return { info: r.garbage ?? new Uint8Array([0xff]), delayMs: r.replyDelayMs };
      return result(r.result === 'nack' ? AccessResult.otherReason : AccessResult.success, r.replyDelayMs);
    }
    const known = [OBIS.disconnectControl, OBIS.activeEnergyImport, OBIS.voltageL1, OBIS.clock].some((k) => sameLogicalName(k, ln as LogicalName));
    return result(known ? AccessResult.readWriteDenied : AccessResult.objectUndefined);
  }

  /**
   * New keys from global_key_transfer take effect here, between associations. Invocation counters start again with
   * the new keys (Green Book: a counter belongs to its key), so `seenCounters` restarts too.
   */
  private switchKeys(): void {
    if (!this.nextKeys) return;
    this.keys = this.nextKeys;
    this.nextKeys = undefined;
    this.lastClientCounter = 0;
    this.seenCounters.length = 0;
  }

  /** Security setup global_key_transfer: only in an HLS association; a wrap that does not open is refused, old keys kept. */
  private keyTransfer(req: Extract<XdlmsRequest, { kind: 'action' }>): MeterAnswer | undefined {
    const result = (code: number) => this.respond({ kind: 'action', invokeId: req.invokeId, result: code });
    const refused = (code: number) => {
      this.counters.keyTransfersRefused++;
      return result(code);
    };
    if (req.method.method !== SecuritySetupMethod.globalKeyTransfer) return refused(AccessResult.objectUndefined);
    if (!this.secured?.authenticated || !this.keys) return refused(AccessResult.readWriteDenied);
    if (!this.keys.masterKey || this.faults.refuseKeyTransfer) return refused(AccessResult.otherReason);
    const got = readGlobalKeyTransfer(this.faults.wrongKey ? Buffer.alloc(16, 0x77) : this.keys.masterKey, req.parameter);
    if ('error' in got) return refused(got.error === 'type' ? AccessResult.typeUnmatched : AccessResult.otherReason);
    const enc = got.get(KeyId.globalUnicastEncryption) ?? this.keys.encryptionKey;
    const auth = got.get(KeyId.authentication) ?? this.keys.authenticationKey;
    if (enc.length !== 16 || auth.length !== 16) return refused(AccessResult.typeUnmatched);
    this.nextKeys = { ...this.keys, encryptionKey: Buffer.from(enc), authenticationKey: Buffer.from(auth), masterKey: got.get(KeyId.master) ?? this.keys.masterKey };
    this.counters.keyTransfers++;
    if (this.faults.loseKeyTransferAnswer) {
      this.faults.loseKeyTransferAnswer = false;
      this.silent = true;
      return undefined;
    }
    return result(AccessResult.success);
  }

  private action(req: Extract<XdlmsRequest, { kind: 'action' }>, now: number): MeterAnswer | undefined {
    const { classId, logicalName: ln, method } = req.method;
    const result = (code: number, delayMs = 0) => this.respond({ kind: 'action', invokeId: req.invokeId, result: code }, delayMs);
    if (sameLogicalName(ln, SECURITY_SETUP_OBIS)) return classId === SECURITY_SETUP_CLASS_ID ? this.keyTransfer(req) : result(AccessResult.objectClassInconsistent);
    if (!sameLogicalName(ln, OBIS.disconnectControl)) return result(AccessResult.objectUndefined);
    if (classId !== DISCONNECT_CONTROL_CLASS_ID) return result(AccessResult.objectClassInconsistent);
    if (method !== DisconnectControlMethod.remoteDisconnect && method !== DisconnectControlMethod.remoteReconnect) return result(AccessResult.objectUndefined);
    if (req.parameter?.type !== 'integer' || req.parameter.value !== 0) return result(AccessResult.typeUnmatched);
    if (this.controlMode === 0) return result(AccessResult.objectUnavailable); // mode 0: always connected, not operable
    if (this.faults.temporaryFailures > 0) {
      this.faults.temporaryFailures--;
      return result(AccessResult.temporaryFailure);
    }
    const r = this.take(method === DisconnectControlMethod.remoteDisconnect ? 'disconnect' : 'reconnect', now);
    if (!r) return undefined;
    if (r.garbled) return { info: r.garbage ?? new Uint8Array([0xff]), delayMs: r.replyDelayMs };
    // A close refused for a live load side: temporary-failure, as the condition may clear (the profile names the result).
    if (r.refusal === 'load_side_voltage') return result(AccessResult.temporaryFailure, r.replyDelayMs);
    if (r.result === 'nack') return result(AccessResult.otherReason, r.replyDelayMs);
    return result(AccessResult.success, r.replyDelayMs);
  }
}
