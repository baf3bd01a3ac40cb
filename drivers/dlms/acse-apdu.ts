import { BerError, readOne, readSmallInteger, readTlvs, tlv } from './ber.js';

/**
 * The association APDUs of IEC 62056-5-3 §8 (ACSE, after ISO/IEC 8650): AARQ [APPLICATION 0] = 0x60,
 * AARE [APPLICATION 1] = 0x61, RLRQ [APPLICATION 2] = 0x62, RLRE [APPLICATION 3] = 0x63, and the xDLMS
 * InitiateRequest (0x01) / InitiateResponse (0x08) carried in their user-information field.
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
  callingAuthenticationValue: 0xac,
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
/** Application context: 1 = logical name referencing, no ciphering (IEC 62056-5-3 §8.3.3.1). */
export const CONTEXT_LN_NO_CIPHERING = 1;
/** Authentication mechanism: 0 = lowest level (none), 1 = low level security (password). */
export const MECHANISM = { lowest: 0, low: 1 } as const;
/** acse-requirements BIT STRING {authentication (0)}: 7 unused bits, bit 0 set. */
const AUTHENTICATION_REQUIRED = [0x07, 0x80];

/** xDLMS (IEC 62056-5-3 §9.5): InitiateRequest and InitiateResponse tags, DLMS version 6, conformance [APPLICATION 31]. */
const INITIATE_REQUEST = 0x01;
const INITIATE_RESPONSE = 0x08;
const CONFIRMED_SERVICE_ERROR = 0x0e;
export const DLMS_VERSION = 6;
const CONFORMANCE_TAG = [0x5f, 0x1f];
const CONFORMANCE_LENGTH = 0x04;
/** The VAA name of an LN association (IEC 62056-5-3 §9.5). */
const VAA_NAME_LN = 0x0007;

/** Conformance block bit n (IEC 62056-5-3 §9.4.6.1, bit 0 the most significant of the 24). */
export const conformanceBit = (n: number): number => 1 << (23 - n);
export const CONFORMANCE = {
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

export interface Aarq {
  mechanism: keyof typeof MECHANISM;
  /** Low level security: the password, sent in clear (IEC 62056-5-3 §5.2.2.2). */
  password?: Uint8Array;
  conformance: number;
  maxPduSize: number;
}

export interface Aare {
  result: number;
  /** The acse-service-user (or -provider) diagnostic. */
  diagnostic: number;
  diagnosticSource: 'user' | 'provider';
  /** Present when the association was accepted. */
  initiate?: { conformance: number; maxPduSize: number; dlmsVersion: number };
}

export function describeDiagnostic(aare: Aare): string {
  const name = aare.diagnosticSource === 'user' ? (DIAGNOSTIC_NAMES.get(aare.diagnostic) ?? 'unknown') : 'acse-service-provider';
  return `${name} (${aare.diagnostic})`;
}

const objectId = (arc: number, leaf: number) => tlv(OID_TAG, [...DLMS_UA_ARC, arc, leaf]);
const conformanceBytes = (c: number) => [...CONFORMANCE_TAG, CONFORMANCE_LENGTH, 0x00, (c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff];
const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];

export function encodeAarq(a: Aarq): Uint8Array {
  const initiate = [INITIATE_REQUEST, 0x00 /* no dedicated-key */, 0x00 /* response-allowed: default TRUE */, 0x00 /* no QoS */, DLMS_VERSION, ...conformanceBytes(a.conformance), ...u16(a.maxPduSize)];
  const body = [...tlv(FIELD.applicationContextName, objectId(APPLICATION_CONTEXT_ARC, CONTEXT_LN_NO_CIPHERING))];
  if (a.mechanism !== 'lowest') {
    if (!a.password) throw new Error('low level security needs a password');
    body.push(...tlv(FIELD.senderAcseRequirements, AUTHENTICATION_REQUIRED));
    body.push(...tlv(FIELD.mechanismName, [...DLMS_UA_ARC, MECHANISM_ARC, MECHANISM[a.mechanism]]));
    body.push(...tlv(FIELD.callingAuthenticationValue, tlv(CHARSTRING_TAG, a.password)));
  }
  body.push(...tlv(FIELD.userInformation, tlv(OCTET_STRING_TAG, initiate)));
  return Uint8Array.from(tlv(ACSE_TAG.AARQ, body));
}

function readConformance(bytes: Uint8Array, p: number): number {
  if (bytes[p] !== CONFORMANCE_TAG[0] || bytes[p + 1] !== CONFORMANCE_TAG[1] || bytes[p + 2] !== CONFORMANCE_LENGTH) throw new BerError('conformance block expected');
  return (bytes[p + 4]! << 16) | (bytes[p + 5]! << 8) | bytes[p + 6]!;
}

/** Decode an AARQ (the server's side). */
export function decodeAarq(bytes: Uint8Array): Aarq & { applicationContext: number } {
  const fields = readTlvs(readOne(bytes, ACSE_TAG.AARQ, 'AARQ'));
  const get = (tag: number) => fields.find((f) => f.tag === tag)?.value;
  const ctx = get(FIELD.applicationContextName);
  if (!ctx) throw new BerError('AARQ without application-context-name');
  const oid = readOne(ctx, OID_TAG, 'application-context-name');
  const mech = get(FIELD.mechanismName);
  const auth = get(FIELD.callingAuthenticationValue);
  const info = get(FIELD.userInformation);
  if (!info) throw new BerError('AARQ without user-information');
  const ir = readOne(info, OCTET_STRING_TAG, 'user-information');
  if (ir[0] !== INITIATE_REQUEST) throw new BerError('user-information is not an InitiateRequest');
  let p = 1;
  if (ir[p] === 0x01) p += 2 + ir[p + 1]!; // dedicated-key present
  else p += 1;
  if (ir[p] === 0x01) p += 2; // response-allowed present
  else p += 1;
  if (ir[p] === 0x01) p += 2; // proposed-quality-of-service present
  else p += 1;
  if (ir[p] !== DLMS_VERSION) throw new BerError(`proposed DLMS version ${ir[p]}, expected 6`);
  const conformance = readConformance(ir, p + 1);
  const maxPduSize = (ir[p + 8]! << 8) | ir[p + 9]!;
  const out: Aarq & { applicationContext: number } = {
    applicationContext: oid[oid.length - 1]!,
    mechanism: mech?.[mech.length - 1] === MECHANISM.low ? 'low' : 'lowest',
    conformance,
    maxPduSize,
  };
  if (auth) out.password = readOne(auth, CHARSTRING_TAG, 'calling-authentication-value');
  return out;
}

export function encodeAare(a: Aare): Uint8Array {
  const body = [
    ...tlv(FIELD.applicationContextName, objectId(APPLICATION_CONTEXT_ARC, CONTEXT_LN_NO_CIPHERING)),
    ...tlv(FIELD.result, tlv(0x02, [a.result])),
    ...tlv(FIELD.resultSourceDiagnostic, tlv(a.diagnosticSource === 'user' ? ACSE_SERVICE_USER : ACSE_SERVICE_PROVIDER, tlv(0x02, [a.diagnostic]))),
  ];
  if (a.initiate) {
    const ir = [INITIATE_RESPONSE, 0x00 /* no QoS */, a.initiate.dlmsVersion, ...conformanceBytes(a.initiate.conformance), ...u16(a.initiate.maxPduSize), ...u16(VAA_NAME_LN)];
    body.push(...tlv(FIELD.userInformation, tlv(OCTET_STRING_TAG, ir)));
  }
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
  const info = get(FIELD.userInformation);
  if (info) {
    const ir = readOne(info, OCTET_STRING_TAG, 'user-information');
    if (ir[0] === INITIATE_RESPONSE) {
      let p = 1;
      p += ir[p] === 0x01 ? 2 : 1; // negotiated-quality-of-service
      const dlmsVersion = ir[p]!;
      const conformance = readConformance(ir, p + 1);
      const maxPduSize = (ir[p + 8]! << 8) | ir[p + 9]!;
      out.initiate = { conformance, maxPduSize, dlmsVersion };
    } else if (ir[0] !== CONFIRMED_SERVICE_ERROR) throw new BerError(`unexpected user-information tag 0x${ir[0]?.toString(16)}`);
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
