import { decodeAarq, encodeAare, encodeRlre, ACSE_TAG, AcseServiceUserDiagnostic, AssociationResult, CONFORMANCE, CONTEXT_LN_NO_CIPHERING, DLMS_VERSION } from '../drivers/dlms/acse-apdu.js';
import { data, encodeData, type DlmsData } from '../drivers/dlms/axdr.js';
import { CLOCK_CLASS_ID, ClockAttribute, decodeDateTime, encodeDateTime } from '../drivers/dlms/cosem/clock.js';
import { controlStateFromRelay, DISCONNECT_CONTROL_CLASS_ID, DisconnectControlAttribute, DisconnectControlMethod, remoteReconnectOutcome, type ControlMode } from '../drivers/dlms/cosem/disconnect-control.js';
import { OBIS, sameLogicalName, type LogicalName } from '../drivers/dlms/cosem/obis.js';
import { encodeScalerUnit, REGISTER_CLASS_ID, RegisterAttribute, Unit, type ScalerUnit } from '../drivers/dlms/cosem/register.js';
import { LLC_RESPONSE, withLlc } from '../drivers/dlms/llc.js';
import { AccessResult, decodeRequest, encodeResponse, type XdlmsRequest, type XdlmsResponse } from '../drivers/dlms/xdlms-apdu.js';
import type { MeterReply, SimulatedMeter } from './meter-model.js';

/**
 * The COSEM application side of one simulated DLMS meter: association (AARQ/AARE with LLS password),
 * GET (with data blocks), SET, ACTION and release, over the protocol-independent `SimulatedMeter`.
 *
 * One conversation = one decision of the meter model. The first live read of an association (control
 * state, output state, a register value) calls `handle('read')`; an ACTION calls `handle('disconnect' |
 * 'reconnect')`; every later read in the same association is answered from that reply. So a lying meter
 * claims the asked state within the command's association, a stuck one shows the unchanged state, and
 * a fresh association (the gateway's read-back) sees the truth. When the model stays silent (offline,
 * dropped command) the meter answers nothing more until the next SNRM.
 */

export interface DlmsMeterFaults {
  /** The next n ACTIONs are answered temporary-failure (the relay does not move). */
  temporaryFailures: number;
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
  energyScalerUnit?: ScalerUnit;
  voltageScalerUnit?: ScalerUnit;
  /** Largest APDU the meter receives (server-max-receive-pdu-size). Default 1024. */
  maxPduSize?: number;
}

/** What the meter puts on the wire for one request: an information field (LLC + APDU, or garbage), when. */
export interface MeterAnswer {
  info: Uint8Array;
  delayMs: number;
}

const SERVER_CONFORMANCE = CONFORMANCE.priorityManagement | CONFORMANCE.blockTransferWithGet | CONFORMANCE.get | CONFORMANCE.set | CONFORMANCE.selectiveAccess | CONFORMANCE.eventNotification | CONFORMANCE.action;
/** GET-Response-With-Datablock header: tag, choice, invoke-id, last-block, block-number (4), choice, length (≤ 3). */
const BLOCK_OVERHEAD = 12;

export class DlmsSimMeter {
  readonly meter: SimulatedMeter;
  readonly physicalAddress: number;
  readonly logicalAddress: number;
  readonly controlMode: ControlMode;
  password: string | undefined;
  readonly faults: DlmsMeterFaults = { temporaryFailures: 0 };
  /** Associations accepted and refused, for tests. */
  readonly counters = { associations: 0, refused: 0, releases: 0, blocksSent: 0 };

  private readonly energySu: ScalerUnit;
  private readonly voltageSu: ScalerUnit;
  private readonly maxPduSize: number;
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
    this.energySu = o.energyScalerUnit ?? { scaler: 0, unit: Unit.Wh };
    this.voltageSu = o.voltageScalerUnit ?? { scaler: -1, unit: Unit.V };
    this.maxPduSize = o.maxPduSize ?? 1024;
    const arms = remoteReconnectOutcome(o.controlMode) === 'armed';
    if (o.controlMode !== 0 && arms !== (o.meter.remoteReconnect === 'arms')) {
      throw new Error(`simulated meter ${o.meter.id}: control mode ${o.controlMode} ${arms ? 'arms' : 'closes'} on reconnect, but the meter model ${o.meter.remoteReconnect}`);
    }
  }

  /** The link was (re)connected or disconnected: forget the association. */
  resetLink(): void {
    this.associated = false;
    this.snapshot = undefined;
    this.silent = false;
    this.blocks = undefined;
    this.conversation++;
  }

  /** Whether the meter has stopped answering for the rest of this connection. */
  get isSilent(): boolean {
    return this.silent;
  }

  /** Answer one complete APDU (LLC stripped); undefined = the meter stays silent. */
  answer(apdu: Uint8Array, now: number): MeterAnswer | undefined {
    if (this.silent) return undefined;
    const tag = apdu[0];
    if (tag === ACSE_TAG.AARQ) return this.respondRaw(this.associate(apdu));
    if (tag === ACSE_TAG.RLRQ) {
      this.associated = false;
      this.counters.releases++;
      return this.respondRaw(encodeRlre());
    }
    let req: XdlmsRequest;
    try {
      req = decodeRequest(apdu);
    } catch {
      return this.respondRaw(encodeResponse({ kind: 'exception', stateError: 2 /* service-unknown */, serviceError: 2 }));
    }
    if (!this.associated) return this.respond(this.refuse(req, AccessResult.readWriteDenied));
    switch (req.kind) {
      case 'get':
        return this.get(req, now);
      case 'get-next':
        return this.nextBlock(req.invokeId, req.block);
      case 'set':
        return this.respond(this.set(req, now));
      case 'action':
        return this.action(req, now);
    }
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

  private associate(apdu: Uint8Array): Uint8Array {
    this.resetLink();
    const refuse = (diagnostic: number) => {
      this.counters.refused++;
      return encodeAare({ result: AssociationResult.rejectedPermanent, diagnostic, diagnosticSource: 'user' });
    };
    let aarq;
    try {
      aarq = decodeAarq(apdu);
    } catch {
      return refuse(AcseServiceUserDiagnostic.noReasonGiven);
    }
    if (aarq.applicationContext !== CONTEXT_LN_NO_CIPHERING) return refuse(AcseServiceUserDiagnostic.applicationContextNameNotSupported);
    if (this.password !== undefined) {
      if (aarq.mechanism !== 'low' || !aarq.password) return refuse(AcseServiceUserDiagnostic.authenticationRequired);
      if (Buffer.from(aarq.password).toString('latin1') !== this.password) return refuse(AcseServiceUserDiagnostic.authenticationFailure);
    }
    this.associated = true;
    this.clientMaxPdu = aarq.maxPduSize;
    this.counters.associations++;
    return encodeAare({
      result: AssociationResult.accepted,
      diagnostic: AcseServiceUserDiagnostic.null,
      diagnosticSource: 'user',
      initiate: { conformance: aarq.conformance & SERVER_CONFORMANCE, maxPduSize: this.maxPduSize, dlmsVersion: DLMS_VERSION },
    });
  }

  /** The model's reply this association rests on, taking it now if there is none yet. */
  private take(op: 'read' | 'disconnect' | 'reconnect', now: number): MeterReply | undefined {
    if (op === 'read' && this.snapshot) return this.snapshot;
    const reply = this.meter.handle(op, now, { cid: `dlms:${this.logicalAddress}/${this.physicalAddress}:${this.conversation}:${op}` });
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
    } else if (sameLogicalName(ln, OBIS.activeEnergyImport) || sameLogicalName(ln, OBIS.voltageL1)) {
      if (classId !== REGISTER_CLASS_ID) return this.respond(this.refuse(req, AccessResult.objectClassInconsistent));
      const energy = sameLogicalName(ln, OBIS.activeEnergyImport);
      const su = energy ? this.energySu : this.voltageSu;
      if (a === RegisterAttribute.logicalName) return reply(data.octetString(Uint8Array.from(ln)));
      if (a === RegisterAttribute.scalerUnit) return reply(encodeScalerUnit(su));
      if (a === RegisterAttribute.value) {
        return live((r) => {
          const raw = Math.round((energy ? r.energyWh : r.voltageV) / 10 ** su.scaler);
          return energy ? data.doubleLongUnsigned(raw) : data.longUnsigned(raw);
        });
      }
    } else if (sameLogicalName(ln, OBIS.clock)) {
      if (classId !== CLOCK_CLASS_ID) return this.respond(this.refuse(req, AccessResult.objectClassInconsistent));
      if (a === ClockAttribute.logicalName) return reply(data.octetString(Uint8Array.from(ln)));
      if (a === ClockAttribute.time) return reply(data.octetString(encodeDateTime(now + this.clockOffsetMs)));
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

  /** Only the clock's time is writable here; everything else is read-write-denied (access rights of a public client). */
  private set(req: Extract<XdlmsRequest, { kind: 'set' }>, now: number): XdlmsResponse {
    const { classId, logicalName: ln, attribute: a } = req.attribute;
    if (classId === CLOCK_CLASS_ID && sameLogicalName(ln, OBIS.clock) && a === ClockAttribute.time) {
      const t = req.value.type === 'octet-string' ? decodeDateTime(req.value.value) : 'not an octet-string';
      if (typeof t === 'string') return { kind: 'set', invokeId: req.invokeId, result: AccessResult.typeUnmatched };
      this.clockOffsetMs = t - now;
      return { kind: 'set', invokeId: req.invokeId, result: AccessResult.success };
    }
    const known = [OBIS.disconnectControl, OBIS.activeEnergyImport, OBIS.voltageL1, OBIS.clock].some((k) => sameLogicalName(k, ln as LogicalName));
    return { kind: 'set', invokeId: req.invokeId, result: known ? AccessResult.readWriteDenied : AccessResult.objectUndefined };
  }

  private action(req: Extract<XdlmsRequest, { kind: 'action' }>, now: number): MeterAnswer | undefined {
    const { classId, logicalName: ln, method } = req.method;
    const result = (code: number, delayMs = 0) => this.respond({ kind: 'action', invokeId: req.invokeId, result: code }, delayMs);
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
    if (r.result === 'nack') return result(AccessResult.otherReason, r.replyDelayMs);
    return result(AccessResult.success, r.replyDelayMs);
  }
}
