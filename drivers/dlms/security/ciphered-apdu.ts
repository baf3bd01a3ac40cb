import { decodeLength, encodeLength } from '../axdr.js';
import { SYSTEM_TITLE_LENGTH } from './suite0-cipher.js';

/**
 * The ciphered xDLMS APDUs of IEC 62056-5-3 §9.5 / Green Book §9.2.7.2 (tags from the xDLMS-APDU CHOICE):
 * glo-initiate-request [33] 0x21, glo-initiate-response [40] 0x28, glo-confirmed-service-error [46] 0x2E;
 * glo-get/set/event-notification/action-request [200..203] 0xC8–0xCB, glo-get/set/action-response 0xCC/0xCD/0xCF;
 * ded-get/set/event-notification/action-request [208..211] 0xD0–0xD3, ded-get/set/action-response 0xD4/0xD5/0xD7;
 * general-glo-ciphering [219] 0xDB and general-ded-ciphering [220] 0xDC, which carry the sender's system title.
 * Each glo-/ded- APDU is tag ‖ A-XDR length ‖ (SC ‖ IC ‖ ciphered or authenticated content ‖ [tag]).
 */

export type KeyKind = 'global' | 'dedicated';

/** Plain tag → [global-ciphered tag, dedicated-ciphered tag]. Initiate APDUs have only the global form here. */
const CIPHERED_TAGS: ReadonlyArray<readonly [plain: number, glo: number, ded: number | undefined]> = [
  [0x01, 0x21, undefined], // InitiateRequest
  [0x08, 0x28, undefined], // InitiateResponse
  [0x0e, 0x2e, undefined], // ConfirmedServiceError
  [0xc0, 0xc8, 0xd0], // get-request
  [0xc1, 0xc9, 0xd1], // set-request
  [0xc2, 0xca, 0xd2], // event-notification-request
  [0xc3, 0xcb, 0xd3], // action-request
  [0xc4, 0xcc, 0xd4], // get-response
  [0xc5, 0xcd, 0xd5], // set-response
  [0xc7, 0xcf, 0xd7], // action-response
];

export const CIPHERED_TAG = {
  gloInitiateRequest: 0x21,
  gloInitiateResponse: 0x28,
  gloConfirmedServiceError: 0x2e,
  gloGetRequest: 0xc8,
  gloSetRequest: 0xc9,
  gloActionRequest: 0xcb,
  gloGetResponse: 0xcc,
  gloSetResponse: 0xcd,
  gloActionResponse: 0xcf,
  dedGetRequest: 0xd0,
  dedSetRequest: 0xd1,
  dedActionRequest: 0xd3,
  dedGetResponse: 0xd4,
  dedSetResponse: 0xd5,
  dedActionResponse: 0xd7,
  generalGloCiphering: 0xdb,
  generalDedCiphering: 0xdc,
} as const;

export class CipheredApduError extends Error {
  override readonly name = 'CipheredApduError';
}

/** The ciphered tag for a plain APDU tag, or undefined when that APDU has no such ciphered form. */
export function cipheredTagFor(plainTag: number, key: KeyKind): number | undefined {
  const row = CIPHERED_TAGS.find((r) => r[0] === plainTag);
  return row ? (key === 'global' ? row[1] : row[2]) : undefined;
}

/** The plain tag and key kind a ciphered tag stands for, or undefined when `tag` is not a glo-/ded- APDU. */
export function plainTagOf(cipheredTag: number): { plainTag: number; key: KeyKind } | undefined {
  for (const [plain, glo, ded] of CIPHERED_TAGS) {
    if (glo === cipheredTag) return { plainTag: plain, key: 'global' };
    if (ded === cipheredTag) return { plainTag: plain, key: 'dedicated' };
  }
  return undefined;
}

export function isCipheredApdu(bytes: Uint8Array): boolean {
  const tag = bytes[0];
  return tag !== undefined && (plainTagOf(tag) !== undefined || tag === CIPHERED_TAG.generalGloCiphering || tag === CIPHERED_TAG.generalDedCiphering);
}

/** tag ‖ length ‖ content (content = SC ‖ IC ‖ …, from `protect`). */
export function encodeCipheredApdu(tag: number, content: Uint8Array): Uint8Array {
  return Uint8Array.from([tag, ...encodeLength(content.length), ...content]);
}

function readOctetString(bytes: Uint8Array, offset: number, what: string): { value: Uint8Array; next: number } {
  let len;
  try {
    len = decodeLength(bytes, offset);
  } catch (e) {
    throw new CipheredApduError(`${what}: ${(e as Error).message}`);
  }
  if (len.next + len.value > bytes.length) throw new CipheredApduError(`${what} claims ${len.value} bytes, ${bytes.length - len.next} left`);
  return { value: bytes.slice(len.next, len.next + len.value), next: len.next + len.value };
}

export interface CipheredApdu {
  tag: number;
  /** Present for general-glo/ded-ciphering: the sender's system title carried in the APDU. */
  systemTitle?: Uint8Array;
  /** SC ‖ IC ‖ … */
  content: Uint8Array;
}

export function decodeCipheredApdu(bytes: Uint8Array): CipheredApdu {
  const tag = bytes[0];
  if (tag === undefined) throw new CipheredApduError('empty APDU');
  if (tag === CIPHERED_TAG.generalGloCiphering || tag === CIPHERED_TAG.generalDedCiphering) {
    const st = readOctetString(bytes, 1, 'system-title');
    if (st.value.length !== SYSTEM_TITLE_LENGTH) throw new CipheredApduError(`system-title of ${st.value.length} bytes, expected ${SYSTEM_TITLE_LENGTH}`);
    const content = readOctetString(bytes, st.next, 'ciphered-content');
    if (content.next !== bytes.length) throw new CipheredApduError(`${bytes.length - content.next} unexpected byte(s) after the ciphered content`);
    return { tag, systemTitle: st.value, content: content.value };
  }
  if (!plainTagOf(tag)) throw new CipheredApduError(`0x${tag.toString(16)} is not a ciphered APDU tag`);
  const content = readOctetString(bytes, 1, 'ciphered content');
  if (content.next !== bytes.length) throw new CipheredApduError(`${bytes.length - content.next} unexpected byte(s) after the ciphered content`);
  return { tag, content: content.value };
}

/** general-glo-ciphering / general-ded-ciphering: tag ‖ system-title (octet-string) ‖ ciphered-content (octet-string). */
export function encodeGeneralCiphering(key: KeyKind, systemTitle: Uint8Array, content: Uint8Array): Uint8Array {
  if (systemTitle.length !== SYSTEM_TITLE_LENGTH) throw new RangeError(`a system title is ${SYSTEM_TITLE_LENGTH} bytes`);
  const tag = key === 'global' ? CIPHERED_TAG.generalGloCiphering : CIPHERED_TAG.generalDedCiphering;
  return Uint8Array.from([tag, ...encodeLength(systemTitle.length), ...systemTitle, ...encodeLength(content.length), ...content]);
}
