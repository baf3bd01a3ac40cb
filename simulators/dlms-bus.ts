import { pino, type Logger } from 'pino';
import { sameServerAddress, type ServerAddress } from '../drivers/dlms/hdlc-address.js';
import { nextSeq, type Control } from '../drivers/dlms/hdlc-control.js';
import { decodeFrame, encodeFrame, isFrame, type HdlcFrame } from '../drivers/dlms/hdlc-frame.js';
import { HdlcFrameReader } from '../drivers/dlms/hdlc-frame-reader.js';
import { decodeParameters, encodeParameters, negotiate, type HdlcParameters } from '../drivers/dlms/hdlc-parameters.js';
import { LLC_REQUEST, stripLlc } from '../drivers/dlms/llc.js';
import type { ByteLine } from '../drivers/dlms/byte-line.js';
import { SerialLine } from '../drivers/dlms/serial-line.js';
import type { ControlMode } from '../drivers/dlms/cosem/disconnect-control.js';
import { SimulatedMeter, type MeterFaults } from './meter-model.js';
import { DlmsSimMeter, type DlmsSimMeterOptions, type SimMeterKeys } from './dlms-meter.js';

/**
 * Simulated DLMS/HDLC meters on one serial bus (the far end of a pty, or a TCP socket for HDLC over TCP): the HDLC server (secondary station)
 * side of IEC 62056-46 for each meter, addressed by its HDLC server address, over `DlmsSimMeter`.
 * Link-level fault injection lives here: no UA to SNRM, frames sent with a bad FCS, a lost segment of a
 * segmented answer. A repeated I-frame (same N(S)) is never executed twice: the last answer is repeated.
 */

export interface DlmsLinkFaults {
  /** The next n SNRMs get no UA. */
  noUa: number;
  /** The next n frames the meter sends have a corrupted FCS… */
  fcsErrors: number;
  /** …after this many good frames (to hit one frame of a conversation, e.g. 3 = the fourth answer). */
  fcsErrorsAfter: number;
  /** The next n non-first segments of a segmented answer are lost on the wire (the client must poll). */
  dropSegments: number;
}

export interface BusMeterSpec {
  meterId: string;
  physicalAddress: number;
  logicalAddress?: number;
  controlMode: ControlMode;
  password?: string;
  /** HLS-GMAC keys and system title for the management client (suite 0); the public client (SAP 16) stays open. */
  keys?: SimMeterKeys;
  initialRelay?: SimulatedMeter['relay'];
  faults?: Partial<MeterFaults>;
  /** Limits the meter states in UA (default 128 bytes, window 1). */
  hdlcLimits?: Partial<HdlcParameters>;
  maxPduSize?: number;
  /** Whether the meter grants general-protection (general-glo/ded-ciphering). Default true. */
  generalProtection?: boolean;
  /** The class 71 limiter (default: one at 0-0:17.0.0.255 with double-long-unsigned watts); `false` = none. */
  limiter?: DlmsSimMeterOptions['limiter'];
  /** The meter refuses to close with voltage on its load side (rule 14; the `backfeed` fault puts it there). */
  checksLoadSide?: boolean;
}

interface LinkState {
  connected: boolean;
  vs: number;
  vr: number;
  params: HdlcParameters;
  rxSegments: Uint8Array[];
  /** Segments of the current answer not yet sent (each waits for the client's RR). */
  txQueue: Array<{ info: Uint8Array; last: boolean }>;
  /** Segments of the current answer already sent. */
  txSent: number;
  lastSent: HdlcFrame | undefined;
  timers: Set<NodeJS.Timeout>;
}

export interface SimulatedBusMeter {
  meter: SimulatedMeter;
  cosem: DlmsSimMeter;
  linkFaults: DlmsLinkFaults;
  address: ServerAddress;
  limits: HdlcParameters;
  link: LinkState;
}

/** The meter model and its COSEM side for one spec (the bus, the TCP wrapper server and the CLI share it). */
export function simulatedDlmsMeter(s: BusMeterSpec, now: () => number): { meter: SimulatedMeter; cosem: DlmsSimMeter } {
  const closes = s.controlMode === 0 || s.controlMode === 2 || s.controlMode === 4;
  const meter = new SimulatedMeter({ id: s.meterId, remoteReconnect: closes ? 'closes' : 'arms', now, ...(s.initialRelay ? { initialRelay: s.initialRelay } : {}), ...(s.faults ? { faults: s.faults } : {}), ...(s.checksLoadSide ? { checksLoadSide: true } : {}) });
  const spec: DlmsSimMeterOptions = { meter, physicalAddress: s.physicalAddress, controlMode: s.controlMode, ...(s.logicalAddress !== undefined ? { logicalAddress: s.logicalAddress } : {}), ...(s.password !== undefined ? { password: s.password } : {}), ...(s.keys ? { keys: s.keys } : {}), ...(s.maxPduSize !== undefined ? { maxPduSize: s.maxPduSize } : {}), ...(s.generalProtection !== undefined ? { generalProtection: s.generalProtection } : {}), ...(s.limiter !== undefined ? { limiter: s.limiter } : {}) };
  return { meter, cosem: new DlmsSimMeter(spec) };
}

const freshLink = (): LinkState => ({ connected: false, vs: 0, vr: 0, params: { maxInfoTx: 128, maxInfoRx: 128, windowTx: 1, windowRx: 1 }, rxSegments: [], txQueue: [], txSent: 0, lastSent: undefined, timers: new Set() });

/** The simulator's end of the bus: a serial port (pty), or a TCP socket a terminal server would give. */
export type SimulatorLine = ByteLine & { open(): Promise<void>; close(): Promise<void> };

export class DlmsBusSimulator {
  private readonly line: SimulatorLine;
  private reader = new HdlcFrameReader();
  private readonly meters = new Map<string, SimulatedBusMeter>();
  private readonly log: Logger;
  private unsubscribe: (() => void) | undefined;

  /** On a serial device (`path`), or on any line (`line`: HDLC over TCP, see dlms-tcp-server.ts). */
  constructor(options: ({ path: string; baudRate?: number } | { line: SimulatorLine }) & { meters: readonly BusMeterSpec[]; logger?: Logger; now?: () => number }) {
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ simulator: 'dlms-bus' });
    this.line = 'line' in options ? options.line : new SerialLine({ path: options.path, baudRate: options.baudRate ?? 9600, reopenMs: 100, logger: this.log });
    const now = options.now ?? Date.now;
    for (const s of options.meters) {
      const { meter, cosem } = simulatedDlmsMeter(s, now);
      this.meters.set(s.meterId, {
        meter,
        cosem,
        linkFaults: { noUa: 0, fcsErrors: 0, fcsErrorsAfter: 0, dropSegments: 0 },
        address: { upper: cosem.logicalAddress, lower: s.physicalAddress },
        limits: { maxInfoTx: 128, maxInfoRx: 128, windowTx: 1, windowRx: 1, ...s.hdlcLimits },
        link: freshLink(),
      });
    }
  }

  async start(): Promise<void> {
    this.unsubscribe = this.line.onData((chunk) => this.onBytes(chunk));
    await this.line.open();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    for (const m of this.meters.values()) this.resetLink(m);
    for (const m of this.meters.values()) m.meter.dispose();
    await this.line.close();
  }

  get ready(): boolean {
    return this.line.isOpen;
  }

  /** Every meter on the bus. */
  get busMeters(): SimulatedBusMeter[] {
    return [...this.meters.values()];
  }

  /** The line went away (TCP client gone): every meter forgets its HDLC connection. */
  resetLinks(): void {
    for (const m of this.meters.values()) this.resetLink(m);
    this.reader = new HdlcFrameReader();
  }

  /** The meter model behind a meter id (relay, model faults, received log). */
  meter(meterId: string): SimulatedMeter {
    return this.busMeter(meterId).meter;
  }

  busMeter(meterId: string): SimulatedBusMeter {
    const m = this.meters.get(meterId);
    if (!m) throw new Error(`no simulated DLMS meter ${meterId} on this bus`);
    return m;
  }

  private resetLink(m: SimulatedBusMeter): void {
    for (const t of m.link.timers) clearTimeout(t);
    m.link = freshLink();
    m.cosem.resetLink();
  }

  private onBytes(chunk: Uint8Array): void {
    for (const item of this.reader.push(chunk)) {
      if (item.kind !== 'frame') continue;
      const f = decodeFrame(item.bytes, 'toServer');
      if (!isFrame(f)) continue; // a bad frame is discarded; the client repeats (IEC 62056-46 §6.4.4.2)
      const m = [...this.meters.values()].find((x) => sameServerAddress(x.address, f.server));
      if (!m) continue; // nobody at that address on this bus
      this.onFrame(m, f);
    }
  }

  private onFrame(m: SimulatedBusMeter, f: HdlcFrame): void {
    const now = Date.now();
    const clientSap = f.clientSap;
    if (now < m.meter.faults.offlineUntil) {
      if (f.control.kind === 'SNRM') m.meter.acceptsContact(now);
      return;
    }
    const c = f.control;
    if (c.kind === 'SNRM') {
      if (m.linkFaults.noUa > 0) {
        m.linkFaults.noUa--;
        return;
      }
      const proposal = decodeParameters(f.information);
      this.resetLink(m);
      if (!proposal) return this.send(m, clientSap, { kind: 'FRMR', pf: true });
      m.link.connected = true;
      m.link.params = negotiate(proposal, m.limits);
      return this.send(m, clientSap, { kind: 'UA', pf: true }, encodeParameters(m.link.params));
    }
    if (m.cosem.isSilent) return;
    if (c.kind === 'DISC') {
      const was = m.link.connected;
      this.resetLink(m);
      return this.send(m, clientSap, { kind: was ? 'UA' : 'DM', pf: true });
    }
    if (!m.link.connected) return this.send(m, clientSap, { kind: 'DM', pf: true });
    const link = m.link;
    if (c.kind === 'RR' || c.kind === 'RNR') {
      if (c.nr === link.vs && link.txQueue.length > 0) return this.sendNextSegment(m, clientSap);
      if (link.lastSent && c.nr !== link.vs) return this.write(m, link.lastSent); // the client missed our last I-frame
      return this.send(m, clientSap, { kind: 'RR', nr: link.vr, pf: true });
    }
    if (c.kind !== 'I') return;
    if (c.ns !== link.vr) {
      // A repeat of the I-frame we already took: answer again, never execute twice.
      if (link.lastSent && nextSeq(c.ns) === link.vr) return this.write(m, link.lastSent);
      return this.send(m, clientSap, { kind: 'RR', nr: link.vr, pf: true });
    }
    link.vr = nextSeq(link.vr);
    link.rxSegments.push(f.information);
    if (f.segmented) return this.send(m, clientSap, { kind: 'RR', nr: link.vr, pf: true });
    const info = Buffer.concat(link.rxSegments);
    link.rxSegments = [];
    const apdu = stripLlc(LLC_REQUEST, info);
    if (!apdu) return this.send(m, clientSap, { kind: 'FRMR', pf: true });
    const answer = m.cosem.answer(apdu, now, clientSap);
    if (!answer) {
      this.log.debug({ meterId: m.meter.id }, 'meter silent');
      return;
    }
    const max = link.params.maxInfoTx;
    const segments: Array<{ info: Uint8Array; last: boolean }> = [];
    for (let off = 0; off < answer.info.length || off === 0; off += max) segments.push({ info: answer.info.subarray(off, off + max), last: off + max >= answer.info.length });
    link.txQueue = segments;
    link.txSent = 0;
    if (answer.delayMs > 0) {
      const t = setTimeout(() => {
        link.timers.delete(t);
        if (m.link === link) this.sendNextSegment(m, clientSap);
      }, answer.delayMs);
      link.timers.add(t);
    } else this.sendNextSegment(m, clientSap);
  }

  private sendNextSegment(m: SimulatedBusMeter, clientSap: number): void {
    const link = m.link;
    const seg = link.txQueue.shift();
    if (!seg) return;
    const frame: HdlcFrame = { direction: 'toClient', server: m.address, clientSap, control: { kind: 'I', ns: link.vs, nr: link.vr, pf: true }, segmented: !seg.last, information: seg.info };
    link.vs = nextSeq(link.vs);
    link.lastSent = frame;
    const index = link.txSent++;
    if (m.linkFaults.dropSegments > 0 && index > 0) {
      m.linkFaults.dropSegments--;
      this.log.debug({ meterId: m.meter.id, segment: index }, 'segment lost on the wire (simulated)');
      return;
    }
    this.write(m, frame);
  }

  private send(m: SimulatedBusMeter, clientSap: number, control: Control, information: Uint8Array = new Uint8Array(0)): void {
    this.write(m, { direction: 'toClient', server: m.address, clientSap, control, segmented: false, information });
  }

  private write(m: SimulatedBusMeter, frame: HdlcFrame): void {
    const bytes = encodeFrame(frame);
    if (m.linkFaults.fcsErrors > 0 && m.linkFaults.fcsErrorsAfter > 0) m.linkFaults.fcsErrorsAfter--;
    else if (m.linkFaults.fcsErrors > 0) {
      m.linkFaults.fcsErrors--;
      bytes[bytes.length - 3]! ^= 0xff; // corrupt the FCS
    }
    this.line.write(bytes).catch((e: unknown) => this.log.debug({ err: (e as Error).message }, 'write failed'));
  }
}
