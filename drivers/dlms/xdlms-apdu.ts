import { decodeDataAt, decodeLength, encodeData, encodeLength, AxdrError, type DlmsData } from './axdr.js';
import type { CosemAttribute, CosemMethod } from './cosem/attribute.js';
import type { LogicalName } from './cosem/obis.js';

/**
 * The xDLMS service APDUs of IEC 62056-5-3 §9.3 with logical-name referencing, in A-XDR:
 * GET-Request 0xC0, SET-Request 0xC1, ACTION-Request 0xC3, GET-Response 0xC4, SET-Response 0xC5,
 * ACTION-Response 0xC7, Exception-Response 0xD8. Each request and response is a CHOICE: normal (1),
 * next / with-datablock (2), … The second byte after the choice is Invoke-Id-And-Priority.
 */

export const XDLMS_TAG = {
  getRequest: 0xc0,
  setRequest: 0xc1,
  actionRequest: 0xc3,
  getResponse: 0xc4,
  setResponse: 0xc5,
  actionResponse: 0xc7,
  exceptionResponse: 0xd8,
} as const;

const CHOICE = { normal: 0x01, nextOrDatablock: 0x02 } as const;
/** Invoke-Id-And-Priority: bit 7 priority high, bit 6 service class confirmed, bits 0–3 invoke id. */
const PRIORITY_HIGH = 0x80;
const CONFIRMED = 0x40;
const INVOKE_ID_MASK = 0x0f;
const ABSENT = 0x00;
const PRESENT = 0x01;
const GET_DATA_RESULT = { data: 0x00, dataAccessResult: 0x01 } as const;

/** Data-Access-Result and Action-Result (IEC 62056-5-3 §9.3.x): the codes a meter answers with. */
export const AccessResult = {
  success: 0,
  hardwareFault: 1,
  temporaryFailure: 2,
  readWriteDenied: 3,
  objectUndefined: 4,
  objectClassInconsistent: 9,
  objectUnavailable: 11,
  typeUnmatched: 12,
  scopeOfAccessViolated: 13,
  dataBlockUnavailable: 14,
  longGetAborted: 15,
  noLongGetInProgress: 16,
  dataBlockNumberInvalid: 19,
  otherReason: 250,
} as const;

/** What a non-success result means for whoever reads the log or the order. */
const RESULT_MEANING = new Map<number, string>([
  [AccessResult.hardwareFault, 'hardware-fault: the meter reports a hardware fault'],
  [AccessResult.temporaryFailure, 'temporary-failure: the meter is busy or the relay cannot operate now; retry later'],
  [AccessResult.readWriteDenied, 'read-write-denied: access denied for this client/security level'],
  [AccessResult.objectUndefined, 'object-undefined: the meter has no such COSEM object'],
  [AccessResult.objectClassInconsistent, 'object-class-inconsistent: the object has another class'],
  [AccessResult.objectUnavailable, 'object-unavailable: the object exists but is not available now'],
  [AccessResult.typeUnmatched, 'type-unmatched: the parameter has the wrong data type'],
  [AccessResult.scopeOfAccessViolated, 'scope-of-access-violated: access denied for this client/security level'],
  [AccessResult.dataBlockUnavailable, 'data-block-unavailable'],
  [AccessResult.longGetAborted, 'long-get-aborted'],
  [AccessResult.noLongGetInProgress, 'no-long-get-in-progress'],
  [AccessResult.dataBlockNumberInvalid, 'data-block-number-invalid'],
  [AccessResult.otherReason, 'other-reason: the meter refused without saying why'],
]);

export function describeResult(code: number): string {
  return `${RESULT_MEANING.get(code) ?? 'unknown result'} (${code})`;
}

/** A result's name alone ("temporary-failure"), as link health counts the meters' refusals by it. */
export function resultName(code: number): string {
  return RESULT_MEANING.get(code)?.split(':')[0] ?? `result-${code}`;
}

export const invokeIdAndPriority = (invokeId: number): number => PRIORITY_HIGH | CONFIRMED | (invokeId & INVOKE_ID_MASK);

export type XdlmsRequest =
  | { kind: 'get'; invokeId: number; attribute: Omit<CosemAttribute, 'name'> }
  | { kind: 'get-next'; invokeId: number; block: number }
  | { kind: 'set'; invokeId: number; attribute: Omit<CosemAttribute, 'name'>; value: DlmsData }
  | { kind: 'action'; invokeId: number; method: Omit<CosemMethod, 'name'>; parameter?: DlmsData };

export type XdlmsResponse =
  | { kind: 'get'; invokeId: number; result: { data: DlmsData } | { error: number } }
  | { kind: 'get-block'; invokeId: number; lastBlock: boolean; block: number; result: { raw: Uint8Array } | { error: number } }
  | { kind: 'set'; invokeId: number; result: number }
  | { kind: 'action'; invokeId: number; result: number; returned?: { data: DlmsData } | { error: number } }
  | { kind: 'exception'; stateError: number; serviceError: number; invocationCounter?: number };

/** Exception-Response (IEC 62056-5-3 §9.5): state-error and service-error codes. */
export const StateError = { serviceNotAllowed: 1, serviceUnknown: 2 } as const;
export const ServiceError = { operationNotPossible: 1, serviceNotSupported: 2, otherReason: 3, pduTooLong: 4, decipheringError: 5, invocationCounterError: 6 } as const;
const SERVICE_ERROR_NAMES = new Map<number, string>(Object.entries(ServiceError).map(([k, v]) => [v, k]));

export function describeException(r: { stateError: number; serviceError: number; invocationCounter?: number }): string {
  const name = SERVICE_ERROR_NAMES.get(r.serviceError) ?? 'unknown';
  const ic = r.invocationCounter !== undefined ? `, the meter expects invocation counter ${r.invocationCounter}` : '';
  return `exception-response (state-error ${r.stateError}, service-error ${name} (${r.serviceError})${ic})`;
}

export class ApduError extends Error {
  override readonly name = 'ApduError';
}

const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];
const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const descriptor = (classId: number, ln: LogicalName, index: number) => [...u16(classId), ...ln, index];

function getDataResult(r: { data: DlmsData } | { error: number }): number[] {
  return 'data' in r ? [GET_DATA_RESULT.data, ...encodeData(r.data)] : [GET_DATA_RESULT.dataAccessResult, r.error];
}

export function encodeRequest(r: XdlmsRequest): Uint8Array {
  const iid = invokeIdAndPriority(r.invokeId);
  switch (r.kind) {
    case 'get':
      return Uint8Array.from([XDLMS_TAG.getRequest, CHOICE.normal, iid, ...descriptor(r.attribute.classId, r.attribute.logicalName, r.attribute.attribute), ABSENT]);
    case 'get-next':
      return Uint8Array.from([XDLMS_TAG.getRequest, CHOICE.nextOrDatablock, iid, ...u32(r.block)]);
    case 'set':
      return Uint8Array.from([XDLMS_TAG.setRequest, CHOICE.normal, iid, ...descriptor(r.attribute.classId, r.attribute.logicalName, r.attribute.attribute), ABSENT, ...encodeData(r.value)]);
    case 'action': {
      const params = r.parameter ? [PRESENT, ...encodeData(r.parameter)] : [ABSENT];
      return Uint8Array.from([XDLMS_TAG.actionRequest, CHOICE.normal, iid, ...descriptor(r.method.classId, r.method.logicalName, r.method.method), ...params]);
    }
  }
}

export function encodeResponse(r: XdlmsResponse): Uint8Array {
  if (r.kind === 'exception') {
    // invocation-counter-error carries the Unsigned32 the meter expects at least.
    const ic = r.serviceError === ServiceError.invocationCounterError && r.invocationCounter !== undefined ? u32(r.invocationCounter) : [];
    return Uint8Array.from([XDLMS_TAG.exceptionResponse, r.stateError, r.serviceError, ...ic]);
  }
  const iid = invokeIdAndPriority(r.invokeId);
  switch (r.kind) {
    case 'get':
      return Uint8Array.from([XDLMS_TAG.getResponse, CHOICE.normal, iid, ...getDataResult(r.result)]);
    case 'get-block': {
      const result = 'raw' in r.result ? [GET_DATA_RESULT.data, ...encodeLength(r.result.raw.length), ...r.result.raw] : [GET_DATA_RESULT.dataAccessResult, r.result.error];
      return Uint8Array.from([XDLMS_TAG.getResponse, CHOICE.nextOrDatablock, iid, r.lastBlock ? 0x01 : 0x00, ...u32(r.block), ...result]);
    }
    case 'set':
      return Uint8Array.from([XDLMS_TAG.setResponse, CHOICE.normal, iid, r.result]);
    case 'action': {
      const returned = r.returned ? [PRESENT, ...getDataResult(r.returned)] : [ABSENT];
      return Uint8Array.from([XDLMS_TAG.actionResponse, CHOICE.normal, iid, r.result, ...returned]);
    }
  }
}

class Cursor {
  p = 0;
  constructor(readonly bytes: Uint8Array) {}
  byte(what: string): number {
    const b = this.bytes[this.p];
    if (b === undefined) throw new ApduError(`APDU ends before ${what}`);
    this.p++;
    return b;
  }
  bytesN(n: number, what: string): Uint8Array {
    if (this.p + n > this.bytes.length) throw new ApduError(`APDU ends inside ${what}`);
    const out = this.bytes.slice(this.p, this.p + n);
    this.p += n;
    return out;
  }
  u16(what: string): number {
    return (this.byte(what) << 8) | this.byte(what);
  }
  u32(what: string): number {
    return ((this.byte(what) << 24) >>> 0) + (this.byte(what) << 16) + (this.byte(what) << 8) + this.byte(what);
  }
  data(): DlmsData {
    try {
      const { value, next } = decodeDataAt(this.bytes, this.p);
      this.p = next;
      return value;
    } catch (e) {
      throw e instanceof AxdrError ? new ApduError(e.message) : e;
    }
  }
  end(): void {
    if (this.p !== this.bytes.length) throw new ApduError(`${this.bytes.length - this.p} unexpected byte(s) at the end of the APDU`);
  }
}

function readDescriptor(c: Cursor): { classId: number; logicalName: LogicalName; index: number } {
  const classId = c.u16('class id');
  const logicalName = Array.from(c.bytesN(6, 'logical name')) as unknown as LogicalName;
  return { classId, logicalName, index: c.byte('attribute/method id') };
}

function readGetDataResult(c: Cursor): { data: DlmsData } | { error: number } {
  const choice = c.byte('Get-Data-Result');
  if (choice === GET_DATA_RESULT.data) return { data: c.data() };
  if (choice === GET_DATA_RESULT.dataAccessResult) return { error: c.byte('data-access-result') };
  throw new ApduError(`Get-Data-Result choice ${choice}`);
}

/** Decode a request (the server's side). Throws ApduError on anything else. */
export function decodeRequest(bytes: Uint8Array): XdlmsRequest {
  const c = new Cursor(bytes);
  const tag = c.byte('tag');
  const choice = c.byte('choice');
  const invokeId = c.byte('invoke-id') & INVOKE_ID_MASK;
  let out: XdlmsRequest;
  if (tag === XDLMS_TAG.getRequest && choice === CHOICE.normal) {
    const d = readDescriptor(c);
    if (c.byte('access-selection') !== ABSENT) throw new ApduError('selective access is not supported');
    out = { kind: 'get', invokeId, attribute: { classId: d.classId, logicalName: d.logicalName, attribute: d.index } };
  } else if (tag === XDLMS_TAG.getRequest && choice === CHOICE.nextOrDatablock) {
    out = { kind: 'get-next', invokeId, block: c.u32('block-number') };
  } else if (tag === XDLMS_TAG.setRequest && choice === CHOICE.normal) {
    const d = readDescriptor(c);
    if (c.byte('access-selection') !== ABSENT) throw new ApduError('selective access is not supported');
    out = { kind: 'set', invokeId, attribute: { classId: d.classId, logicalName: d.logicalName, attribute: d.index }, value: c.data() };
  } else if (tag === XDLMS_TAG.actionRequest && choice === CHOICE.normal) {
    const d = readDescriptor(c);
    const method = { classId: d.classId, logicalName: d.logicalName, method: d.index };
    out = c.byte('parameters present') === PRESENT ? { kind: 'action', invokeId, method, parameter: c.data() } : { kind: 'action', invokeId, method };
  } else throw new ApduError(`unsupported request 0x${tag.toString(16)}/${choice}`);
  c.end();
  return out;
}

/** Decode a response (the client's side). Throws ApduError when the bytes are not a well-formed response. */
export function decodeResponse(bytes: Uint8Array): XdlmsResponse {
  const c = new Cursor(bytes);
  const tag = c.byte('tag');
  if (tag === XDLMS_TAG.exceptionResponse) {
    const out: XdlmsResponse = { kind: 'exception', stateError: c.byte('state-error'), serviceError: c.byte('service-error') };
    if (out.serviceError === ServiceError.invocationCounterError && bytes.length - c.p >= 4) out.invocationCounter = c.u32('invocation counter');
    return out;
  }
  const choice = c.byte('choice');
  const invokeId = c.byte('invoke-id') & INVOKE_ID_MASK;
  let out: XdlmsResponse;
  if (tag === XDLMS_TAG.getResponse && choice === CHOICE.normal) {
    out = { kind: 'get', invokeId, result: readGetDataResult(c) };
  } else if (tag === XDLMS_TAG.getResponse && choice === CHOICE.nextOrDatablock) {
    const lastBlock = c.byte('last-block') !== 0;
    const block = c.u32('block-number');
    const which = c.byte('raw-data or data-access-result');
    if (which === GET_DATA_RESULT.data) {
      const len = decodeLength(bytes, c.p);
      c.p = len.next;
      out = { kind: 'get-block', invokeId, lastBlock, block, result: { raw: c.bytesN(len.value, 'raw-data') } };
    } else if (which === GET_DATA_RESULT.dataAccessResult) out = { kind: 'get-block', invokeId, lastBlock, block, result: { error: c.byte('data-access-result') } };
    else throw new ApduError(`DataBlock-G result choice ${which}`);
  } else if (tag === XDLMS_TAG.setResponse && choice === CHOICE.normal) {
    out = { kind: 'set', invokeId, result: c.byte('result') };
  } else if (tag === XDLMS_TAG.actionResponse && choice === CHOICE.normal) {
    const result = c.byte('action-result');
    out = c.byte('return-parameters present') === PRESENT ? { kind: 'action', invokeId, result, returned: readGetDataResult(c) } : { kind: 'action', invokeId, result };
  } else throw new ApduError(`unexpected APDU 0x${tag.toString(16)}/${choice}`);
  c.end();
  return out;
}
