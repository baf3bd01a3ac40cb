import { BerError, readOne, readSmallInteger, readTlvs, tlv } from './ber.js';

/**
 * The association APDUs of IEC 62056-5-3 §8 (ACSE, after ISO/IEC 8650): AARQ [APPLICATION 0] = 0x60,
 * AARE [APPLICATION 1] = 0x61, RLRQ [APPLICATION 2] = 0x62, RLRE [APPLICATION 3] = 0x63, and the xDLMS
 * InitiateRequest (0x01) / InitiateResponse (0x08) carried in their user-information field — in clear, or
 * as glo-initiate-request / -response when the application context is LN with ciphering (3). HLS adds the
 * calling-AP-title / responding-AP-title (system titles) and the challenges CtoS / StoC
 * (calling- / responding-authentication-value), Green Book §9.2.7.4 and §9.4.2.
 */

export const ACSE_TAG = { AARQ: 0x60, AARE: 0x61, RLRQ: 0x62, RLRE: 0x63 } as const;

/** Fields inside AARQ/AARE (context-specific tags, IEC 62056-5-3 §8.2 and ISO/IEC 8650-1). */
const FIELD = {
  applicationContextName: 0xa1,
  result: 0xa2,
  resultSourceDiagnostic: 0xa3,
  senderAcseRequirements: 0x8a,
  responderAcseRequirements: 0x88,
  mechanismName: 0x8b,
  responderMechanismName: 0x89,
  callingApTitle: 0xa6,
  respondingApTitle: 0xa4,
  callingAuthenticationValue: 0xac,
  respondingAuthenticationValue: 0xaa,
  userInformation: 0xbe,
} as const;

const OID_TAG = 0x06;
const OCTET_STRING_TAG = 0x04;
const CHARSTRING_TAG = 0x80;
const RELEASE_REASON_TAG = 0x80;
/** {joint-iso-ccitt(2) country(16) country-name(756) identified-organization(5) DLMS-UA(8)} = 60 85 74 05 08 */
const DLMS_UA_ARC = [0x60, 0x85, 0x74, 0x05, 0x08];
const APPLICATION_CONTEXT_ARC = 1;
const MECHANISM_ARC = 2;
/** Application context: 1 = logical name referencing, no ciphering; 3 = LN with ciphering (IEC 62056-5-3 §8.3.3.1). */
export const CONTEXT_LN_NO_CIPHERING = 1;
export const CONTEXT_LN_WITH_CIPHERING = 3;
/** Authentication mechanism: 0 = lowest level (none), 1 = low level security (password), 5 = HLS with GMAC. */
export const MECHANISM = { lowest: 0, low: 1, 'hls-gmac': 5 } as const;
export type MechanismName = keyof typeof MECHANISM;
const MECHANISM_BY_ID = new Map<number, MechanismName>(Object.entries(MECHANISM).map(([k, v]) => [v, k as MechanismName]));
/** acse-requirements BIT STRING {authentication (0)}: 7 unused bits, bit 0 set. */
const AUTHENTICATION_REQUIRED = [0x07, 0x80];

/** xDLMS (IEC 62056-5-3 §9.5): InitiateRequest and InitiateResponse tags, DLMS version 6, conformance [APPLICATION 31]. */
const INITIATE_REQUEST = 0x01;
const INITIATE_RESPONSE = 0x08;
const CONFIRMED_SERVICE_ERROR = 0x0e;
/** What else may fill an AARE's user-information: glo-initiate-response, glo-confirmed-service-error, exception-response. */
const CIPHERED_USER_INFORMATION = new Set([0x28, 0x2e, 0xd8]);
export const DLMS_VERSION = 6;
const CONFORMANCE_TAG = [0x5f, 0x1f];
const CONFORMANCE_LENGTH = 0x04;
/** The VAA name of an LN association (IEC 62056-5-3 §9.5). */
const VAA_NAME_LN = 0x0007;

/** Conformance block bit n (IEC 62056-5-3 §9.4.6.1, bit 0 the most significant of the 24). */
export const conformanceBit = (n: number): number => 1 << (23 - n);
export const CONFORMANCE = {
  /** general-glo-ciphering / general-ded-ciphering (and general-ciphering) may be used in the association. */
  generalProtection: conformanceBit(1),
  priorityManagement: conformanceBit(9),
  attribute0WithGet: conformanceBit(10),
  blockTransferWithGet: conformanceBit(11),
  blockTransferWithSet: conformanceBit(12),
  blockTransferWithAction: conformanceBit(13),
  multipleReferences: conformanceBit(14),
  get: conformanceBit(19),
  set: conformanceBit(20),
  selectiveAccess: conformanceBit(21),
  eventNotification: conformanceBit(22),
  action: conformanceBit(23),
} as const;
/** What the client proposes: the LN services and block transfer (0x007E1F, as the standard's examples). */
export const CLIENT_CONFORMANCE =
  CONFORMANCE.priorityManagement | CONFORMANCE.attribute0WithGet | CONFORMANCE.blockTransferWithGet | CONFORMANCE.blockTransferWithSet |
  CONFORMANCE.blockTransferWithAction | CONFORMANCE.multipleReferences | CONFORMANCE.get | CONFORMANCE.set | CONFORMANCE.selectiveAccess |
  CONFORMANCE.eventNotification | CONFORMANCE.action;

/** Association-result (ISO/IEC 8650-1): accepted, rejected-permanent, rejected-transient. */
export const AssociationResult = { accepted: 0, rejectedPermanent: 1, rejectedTransient: 2 } as const;
/** acse-service-user diagnostics (IEC 62056-5-3 §8.2, Table "Result-source-diagnostic"). */
export const AcseServiceUserDiagnostic = {
  null: 0,
  noReasonGiven: 1,
  applicationContextNameNotSupported: 2,
  authenticationMechanismNameNotRecognised: 11,
  authenticationMechanismNameRequired: 12,
  authenticationFailure: 13,
  authenticationRequired: 14,
} as const;
const DIAGNOSTIC_NAMES = new Map<number, string>(Object.entries(AcseServiceUserDiagnostic).map(([k, v]) => [v, k]));
const ACSE_SERVICE_USER = 0xa1;
const ACSE_SERVICE_PROVIDER = 0xa2;

/** The xDLMS InitiateRequest (IEC 62056-5-3 §9.5), in clear. */
export interface InitiateRequest {
  conformance: number;
  maxPduSize: number;
  /** A dedicated key (16 bytes) for this association's ciphered APDUs, carried in a ciphered InitiateRequest only. */
  dedicatedKey?: Uint8Array;
}

export interface InitiateResponse {
  conformance: number;
  maxPduSize: number;
  dlmsVersion: number;
}

export interface Aarq {
  /** Application context name: 1 (default) or 3 (LN with ciphering). */
  applicationContext?: number;
  mechanism: MechanismName;
  /** Low level security: the password, sent in clear (IEC 62056-5-3 §5.2.2.2). */
  password?: Uint8Array;
  /** HLS: the client's challenge CtoS (8–64 bytes), sent as calling-authentication-value. */
  challenge?: Uint8Array;
  /** The client's system title (8 bytes), sent as calling-AP-title; needed with ciphering and HLS. */
  callingApTitle?: Uint8Array;
  conformance: number;
  maxPduSize: number;
  /** The user-information APDU as it goes on the wire (a glo-initiate-request); default: a plain InitiateRequest. */
  userInformation?: Uint8Array;
}

/** An AARQ as the server reads it. `initiate` is there when user-information is a plain InitiateRequest. */
export interface DecodedAarq {
  applicationContext: number;
  /** 'unknown' when the mechanism name is none Meterline speaks. */
  mechanism: MechanismName | 'unknown';
  password?: Uint8Array;
  challenge?: Uint8Array;
  callingApTitle?: Uint8Array;
  userInformation: Uint8Array;
  initiate?: InitiateRequest;
}

export interface Aare {
  /** Application context name; default 1. */
  applicationContext?: number;
  result: number;
  /** The acse-service-user (or -provider) diagnostic. */
  diagnostic: number;
  diagnosticSource: 'user' | 'provider';
  /** HLS: the server's system title (responding-AP-title). */
  respondingApTitle?: Uint8Array;
  /** HLS: the responder mechanism name. */
  mechanism?: MechanismName;
  /** HLS: the server's challenge StoC (responding-authentication-value). */
  challenge?: Uint8Array;
  /** Present when the association was accepted and the InitiateResponse is in clear. */
  initiate?: InitiateResponse;
  /** The user-information APDU as on the wire (InitiateResponse, glo-initiate-response or a service error). */
  userInformation?: Uint8Array;
}

export function describeDiagnostic(aare: Aare): string {
  const name = aare.diagnosticSource === 'user' ? (DIAGNOSTIC_NAMES.get(aare.diagnostic) ?? 'unknown') : 'acse-service-provider';
  return `${name} (${aare.diagnostic})`;
}

const objectId = (arc: number, leaf: number) => tlv(OID_TAG, [...DLMS_UA_ARC, arc, leaf]);
const conformanceBytes = (c: number) => [...CONFORMANCE_TAG, CONFORMANCE_LENGTH, 0x00, (c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff];
const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];

export function encodeInitiateRequest(r: InitiateRequest): Uint8Array {
  const key = r.dedicatedKey ? [0x01, r.dedicatedKey.length, ...r.dedicatedKey] : [0x00];
  return Uint8Array.from([INITIATE_REQUEST, ...key, 0x00 /* response-allowed: default TRUE */, 0x00 /* no QoS */, DLMS_VERSION, ...conformanceBytes(r.conformance), ...u16(r.maxPduSize)]);
}

export function encodeInitiateResponse(r: InitiateResponse): Uint8Array {
  return Uint8Array.from([INITIATE_RESPONSE, 0x00 /* no QoS */, r.dlmsVersion, ...conformanceBytes(r.conformance), ...u16(r.maxPduSize), ...u16(VAA_NAME_LN)]);
}

export function encodeAarq(a: Aarq): Uint8Array {
  const body = [...tlv(FIELD.applicationContextName, objectId(APPLICATION_CONTEXT_ARC, a.applicationContext ?? CONTEXT_LN_NO_CIPHERING))];
  if (a.callingApTitle) body.push(...tlv(FIELD.callingApTitle, tlv(OCTET_STRING_TAG, a.callingApTitle)));
  if (a.mechanism !== 'lowest') {
    const value = a.mechanism === 'low' ? a.password : a.challenge;
    if (!value) throw new Error(a.mechanism === 'low' ? 'low level security needs a password' : 'HLS needs a challenge (CtoS)');
    body.push(...tlv(FIELD.senderAcseRequirements, AUTHENTICATION_REQUIRED));
    body.push(...tlv(FIELD.mechanismName, [...DLMS_UA_ARC, MECHANISM_ARC, MECHANISM[a.mechanism]]));
    body.push(...tlv(FIELD.callingAuthenticationValue, tlv(CHARSTRING_TAG, value)));
  }
  const info = a.userInformation ?? encodeInitiateRequest({ conformance: a.conformance, maxPduSize: a.maxPduSize });
  body.push(...tlv(FIELD.userInformation, tlv(OCTET_STRING_TAG, info)));
  return Uint8Array.from(tlv(ACSE_TAG.AARQ, body));
}

function readConformance(bytes: Uint8Array, p: number): number {
  if (bytes[p] !== CONFORMANCE_TAG[0] || bytes[p + 1] !== CONFORMANCE_TAG[1] || bytes[p + 2] !== CONFORMANCE_LENGTH) throw new BerError('conformance block expected');
  return (bytes[p + 4]! << 16) | (bytes[p + 5]! << 8) | bytes[p + 6]!;
}

/** Decode a plain InitiateRequest (IEC 62056-5-3 §9.5). Throws BerError. */
export function decodeInitiateRequest(ir: Uint8Array): InitiateRequest {
  if (ir[0] !== INITIATE_REQUEST) throw new BerError('not an InitiateRequest');
  let p = 1;
  let dedicatedKey: Uint8Array | undefined;
  if (ir[p] === 0x01) {
    const len = ir[p + 1] ?? 0;
    dedicatedKey = ir.slice(p + 2, p + 2 + len);
    p += 2 + len;
  } else p += 1;
  if (ir[p] === 0x01) p += 2; // response-allowed present
  else p += 1;
  if (ir[p] === 0x01) p += 2; // proposed-quality-of-service present
  else p += 1;
  if (ir[p] !== DLMS_VERSION) throw new BerError(`proposed DLMS version ${ir[p]}, expected 6`);
  if (ir.length < p + 10) throw new BerError('InitiateRequest too short');
  const out: InitiateRequest = { conformance: readConformance(ir, p + 1), maxPduSize: (ir[p + 8]! << 8) | ir[p + 9]! };
  if (dedicatedKey) out.dedicatedKey = dedicatedKey;
  return out;
}

/** Decode a plain InitiateResponse. Throws BerError. */
export function decodeInitiateResponse(ir: Uint8Array): InitiateResponse {
  if (ir[0] !== INITIATE_RESPONSE) throw new BerError('not an InitiateResponse');
  let p = 1;
  p += ir[p] === 0x01 ? 2 : 1; // negotiated-quality-of-service
  if (ir.length < p + 10) throw new BerError('InitiateResponse too short');
  return { dlmsVersion: ir[p]!, conformance: readConformance(ir, p + 1), maxPduSize: (ir[p + 8]! << 8) | ir[p + 9]! };
}

const apTitle = (field: Uint8Array | undefined, what: string) => (field ? readOne(field, OCTET_STRING_TAG, what) : undefined);

/** Decode an AARQ (the server's side). */
export function decodeAarq(bytes: Uint8Array): DecodedAarq {
  const fields = readTlvs(readOne(bytes, ACSE_TAG.AARQ, 'AARQ'));
  const get = (tag: number) => fields.find((f) => f.tag === tag)?.value;
  const ctx = get(FIELD.applicationContextName);
  if (!ctx) throw new BerError('AARQ without application-context-name');
  const oid = readOne(ctx, OID_TAG, 'application-context-name');
  const mech = get(FIELD.mechanismName);
  const auth = get(FIELD.callingAuthenticationValue);
  const info = get(FIELD.userInformation);
  if (!info) throw new BerError('AARQ without user-information');
  const userInformation = readOne(info, OCTET_STRING_TAG, 'user-information');
  const mechanism: DecodedAarq['mechanism'] = mech ? (MECHANISM_BY_ID.get(mech[mech.length - 1]!) ?? 'unknown') : 'lowest';
  const out: DecodedAarq = { applicationContext: oid[oid.length - 1]!, mechanism, userInformation };
  const title = apTitle(get(FIELD.callingApTitle), 'calling-AP-title');
  if (title) out.callingApTitle = title;
  if (auth) {
    const value = readOne(auth, CHARSTRING_TAG, 'calling-authentication-value');
    if (mechanism === 'low') out.password = value;
    else out.challenge = value;
  }
  if (userInformation[0] === INITIATE_REQUEST) out.initiate = decodeInitiateRequest(userInformation);
  return out;
}

export function encodeAare(a: Aare): Uint8Array {
  const body = [
    ...tlv(FIELD.applicationContextName, objectId(APPLICATION_CONTEXT_ARC, a.applicationContext ?? CONTEXT_LN_NO_CIPHERING)),
    ...tlv(FIELD.result, tlv(0x02, [a.result])),
    ...tlv(FIELD.resultSourceDiagnostic, tlv(a.diagnosticSource === 'user' ? ACSE_SERVICE_USER : ACSE_SERVICE_PROVIDER, tlv(0x02, [a.diagnostic]))),
  ];
  if (a.respondingApTitle) body.push(...tlv(FIELD.respondingApTitle, tlv(OCTET_STRING_TAG, a.respondingApTitle)));
  if (a.mechanism && a.mechanism !== 'lowest') {
    body.push(...tlv(FIELD.responderAcseRequirements, AUTHENTICATION_REQUIRED));
    body.push(...tlv(FIELD.responderMechanismName, [...DLMS_UA_ARC, MECHANISM_ARC, MECHANISM[a.mechanism]]));
  }
  if (a.challenge) body.push(...tlv(FIELD.respondingAuthenticationValue, tlv(CHARSTRING_TAG, a.challenge)));
  const info = a.userInformation ?? (a.initiate ? encodeInitiateResponse(a.initiate) : undefined);
  if (info) body.push(...tlv(FIELD.userInformation, tlv(OCTET_STRING_TAG, info)));
  return Uint8Array.from(tlv(ACSE_TAG.AARE, body));
}

/** Decode an AARE (the client's side). Throws BerError when it is not one. */
export function decodeAare(bytes: Uint8Array): Aare {
  const fields = readTlvs(readOne(bytes, ACSE_TAG.AARE, 'AARE'));
  const get = (tag: number) => fields.find((f) => f.tag === tag)?.value;
  const resultField = get(FIELD.result);
  const diagField = get(FIELD.resultSourceDiagnostic);
  if (!resultField || !diagField) throw new BerError('AARE without result or result-source-diagnostic');
  const result = readSmallInteger(resultField, 'result');
  const diag = readTlvs(diagField)[0];
  if (!diag || (diag.tag !== ACSE_SERVICE_USER && diag.tag !== ACSE_SERVICE_PROVIDER)) throw new BerError('bad result-source-diagnostic');
  const out: Aare = { result, diagnostic: readSmallInteger(diag.value, 'diagnostic'), diagnosticSource: diag.tag === ACSE_SERVICE_USER ? 'user' : 'provider' };
  const ctx = get(FIELD.applicationContextName);
  if (ctx) {
    const oid = readOne(ctx, OID_TAG, 'application-context-name');
    if (oid[oid.length - 1] !== CONTEXT_LN_NO_CIPHERING) out.applicationContext = oid[oid.length - 1]!;
  }
  const title = apTitle(get(FIELD.respondingApTitle), 'responding-AP-title');
  if (title) out.respondingApTitle = title;
  const mech = get(FIELD.responderMechanismName);
  if (mech) {
    const m = MECHANISM_BY_ID.get(mech[mech.length - 1]!);
    if (m) out.mechanism = m;
  }
  const auth = get(FIELD.respondingAuthenticationValue);
  if (auth) out.challenge = readOne(auth, CHARSTRING_TAG, 'responding-authentication-value');
  const info = get(FIELD.userInformation);
  if (info) {
    const ir = readOne(info, OCTET_STRING_TAG, 'user-information');
    if (ir[0] === INITIATE_RESPONSE) out.initiate = decodeInitiateResponse(ir);
    else if (ir[0] !== CONFIRMED_SERVICE_ERROR && !CIPHERED_USER_INFORMATION.has(ir[0]!)) throw new BerError(`unexpected user-information tag 0x${ir[0]?.toString(16)}`);
    if (ir[0] !== INITIATE_RESPONSE) out.userInformation = ir;
  }
  return out;
}

/** RLRQ with reason normal (0) (ISO/IEC 8650-1 Release-request-reason). */
export function encodeRlrq(): Uint8Array {
  return Uint8Array.from(tlv(ACSE_TAG.RLRQ, tlv(RELEASE_REASON_TAG, [0x00])));
}

/** RLRE with reason normal (0). */
export function encodeRlre(): Uint8Array {
  return Uint8Array.from(tlv(ACSE_TAG.RLRE, tlv(RELEASE_REASON_TAG, [0x00])));
}

export function isApdu(bytes: Uint8Array, tag: number): boolean {
  return bytes[0] === tag;
}
