import type { Logger } from 'pino';
import { describeControl, nextSeq, type Control } from './hdlc-control.js';
import { decodeFrame, encodeFrame, isFrame, type HdlcFrame } from './hdlc-frame.js';
import { HdlcFrameReader } from './hdlc-frame-reader.js';
import { decodeParameters, encodeParameters, type HdlcParameters } from './hdlc-parameters.js';
import { formatServerAddress, sameServerAddress, type ServerAddress } from './hdlc-address.js';
import type { ByteLine } from './byte-line.js';
import { DlmsWireFailure, hex } from './wire-failure.js';

/**
 * The client (primary station) side of one HDLC connection in normal response mode (IEC 62056-46 §6.4.4):
 * SNRM/UA with parameter negotiation, I-frames with N(S)/N(R), segmentation both ways, RR polling, DISC.
 *
 * Frame-level recovery (separate from the order-level retries of the control loop): a frame that gets
 * no valid answer within `responseTimeoutMs` (lost, or its answer had a bad FCS) is followed by an RR poll,
 * up to `frameRetries` times. The server answers a poll by repeating its last I-frame, or with RR whose
 * N(R) shows whether our I-frame arrived; if it did not, we send it again with the same N(S). A server
 * never executes a repeated N(S) twice, so a lost answer never repeats a relay command. When the frame
 * retries are spent the client keeps listening until the request deadline, then reports a timeout.
 */

export interface HdlcClientOptions {
  line: ByteLine;
  server: ServerAddress;
  clientSap: number;
  /** What the client proposes in SNRM. */
  proposal: HdlcParameters;
  responseTimeoutMs: number;
  frameRetries: number;
  /** Absolute time (ms since epoch) by which the conversation's answer must be in. */
  deadline: number;
  log: Logger;
}

export interface HdlcCounters {
  framesSent: number;
  framesReceived: number;
  badFrames: number;
  /** Of the bad frames, those whose HCS or FCS (CRC-16/X.25) did not check: noise on the line. */
  fcsErrors: number;
  repeats: number;
}

export class HdlcClient {
  readonly counters: HdlcCounters = { framesSent: 0, framesReceived: 0, badFrames: 0, fcsErrors: 0, repeats: 0 };
  /** What the UA negotiated, from the client's side. */
  negotiated: HdlcParameters | undefined;
  /** Hex of every frame and stray byte received, for evidence. */
  readonly received: string[] = [];
  deadline: number;

  private readonly reader = new HdlcFrameReader();
  private inbox: HdlcFrame[] = [];
  private waiter: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private vs = 0;
  private vr = 0;
  private readonly o: HdlcClientOptions;
  private readonly where: string;

  constructor(options: HdlcClientOptions) {
    this.o = options;
    this.deadline = options.deadline;
    this.where = formatServerAddress(options.server);
    this.unsubscribe = options.line.onData((chunk) => this.onBytes(chunk));
  }

  /** Stop listening to the line (the conversation is over). */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.waiter?.();
  }

  /** SNRM → UA (IEC 62056-46 §6.4.4.4.3.2): resets N(S)/N(R) and negotiates lengths and windows. */
  async connect(): Promise<void> {
    const snrm = this.frame({ kind: 'SNRM', pf: true }, encodeParameters(this.o.proposal));
    const ua = await this.exchange(snrm, (f) => f.control.kind === 'UA' || f.control.kind === 'DM', 'UA to SNRM');
    if (ua.control.kind === 'DM') throw new DlmsWireFailure('nack', `meter ${this.where} answered SNRM with DM (it refuses a connection now)`, hex(encodeFrame(ua)));
    const p = decodeParameters(ua.information);
    if (!p) throw new DlmsWireFailure('garbled', `meter ${this.where}: UA parameters do not parse`, hex(ua.information));
    // The server states its own transmit/receive; ours are the other way round.
    this.negotiated = { maxInfoTx: p.maxInfoRx, maxInfoRx: p.maxInfoTx, windowTx: p.windowRx, windowRx: p.windowTx };
    this.vs = 0;
    this.vr = 0;
  }

  /** Send one information field (LLC + APDU), segmented to the negotiated length; return the reassembled answer. */
  async request(info: Uint8Array): Promise<Uint8Array> {
    const max = this.negotiated?.maxInfoTx ?? this.o.proposal.maxInfoTx;
    for (let off = 0; off < info.length || off === 0; off += max) {
      const last = off + max >= info.length;
      const segment = info.subarray(off, off + max);
      if (!last) {
        await this.sendIFrame(segment, true, (f) => f.control.kind === 'RR');
        continue;
      }
      const first = await this.sendIFrame(segment, false, (f) => f.control.kind === 'I');
      return this.receiveRest(first);
    }
    throw new Error('unreachable');
  }

  /** DISC → UA or DM (IEC 62056-46 §6.4.4.4.3.3); gives up quietly after one response time-out. */
  async disconnect(waitMs = this.o.responseTimeoutMs): Promise<boolean> {
    if (!this.o.line.isOpen) return false;
    this.inbox = [];
    const disc = this.frame({ kind: 'DISC', pf: true });
    try {
      await this.send(disc);
      const f = await this.waitFor((x) => x.control.kind === 'UA' || x.control.kind === 'DM', Date.now() + waitMs);
      return f !== undefined;
    } catch {
      return false;
    }
  }

  private frame(control: Control, information: Uint8Array = new Uint8Array(0), segmented = false): HdlcFrame {
    return { direction: 'toServer', server: this.o.server, clientSap: this.o.clientSap, control, segmented, information };
  }

  private async sendIFrame(segment: Uint8Array, segmented: boolean, accept: (f: HdlcFrame) => boolean): Promise<HdlcFrame> {
    const ns = this.vs;
    const frame = this.frame({ kind: 'I', ns, nr: this.vr, pf: true }, segment, segmented);
    this.vs = nextSeq(ns);
    // An RR answering our I-frame counts only if its N(R) acknowledges it.
    const acked = (f: HdlcFrame) => (f.control.kind === 'RR' ? f.control.nr === this.vs : accept(f));
    const reply = await this.exchange(frame, (f) => (f.control.kind === 'I' ? f.control.ns === this.vr && accept(f) : acked(f) && accept(f)), `answer to I-frame N(S)=${ns}`, (f) => {
      // RR with the old N(R): our I-frame never arrived; the next repeat resends it.
      return f.control.kind === 'RR' && f.control.nr === ns;
    });
    if (reply.control.kind === 'I') this.vr = nextSeq(this.vr);
    return reply;
  }

  /** Collect the segments of a segmented answer (S bit set), acknowledging each with RR (§6.4.4.4.3.5). */
  private async receiveRest(first: HdlcFrame): Promise<Uint8Array> {
    const parts: Uint8Array[] = [first.information];
    let current = first;
    while (current.segmented) {
      if (!current.control.pf) {
        // Window > 1: more I-frames follow before the server passes the poll back.
        const next = await this.waitFor((f) => f.control.kind === 'I' && f.control.ns === this.vr, this.deadline);
        if (!next) throw this.timeout('next segment');
        this.vr = nextSeq(this.vr);
        parts.push(next.information);
        current = next;
        continue;
      }
      const rr = this.frame({ kind: 'RR', nr: this.vr, pf: true });
      const next = await this.exchange(rr, (f) => f.control.kind === 'I' && f.control.ns === this.vr, `segment N(S)=${this.vr}`);
      this.vr = nextSeq(this.vr);
      parts.push(next.information);
      current = next;
    }
    return Buffer.concat(parts);
  }

  /**
   * Send `frame` and wait for a frame that `accept`s, repeating per the recovery rules above. `resend`
   * says a reply asks for the frame itself again (not just a poll).
   */
  private async exchange(frame: HdlcFrame, accept: (f: HdlcFrame) => boolean, what: string, resend?: (f: HdlcFrame) => boolean): Promise<HdlcFrame> {
    const unnumbered = frame.control.kind === 'SNRM' || frame.control.kind === 'DISC' || frame.control.kind === 'RR';
    let toSend: HdlcFrame = frame;
    for (let retry = 0; ; retry++) {
      await this.send(toSend);
      let sendAgain = false;
      const until = Math.min(this.deadline, Date.now() + this.o.responseTimeoutMs);
      for (;;) {
        const f = await this.waitFor((x) => accept(x) || (resend?.(x) ?? false) || x.control.kind === 'DM' || x.control.kind === 'FRMR' || x.control.kind === 'RR', until);
        if (!f) break;
        if (accept(f)) return f;
        if (f.control.kind === 'DM' || f.control.kind === 'FRMR') {
          throw new DlmsWireFailure('nack', `meter ${this.where} answered ${describeControl(f.control)} while waiting for the ${what}: the link was reset`, this.evidence());
        }
        if (resend?.(f)) {
          sendAgain = true; // it never arrived: send it again, same N(S)
          break;
        }
        // An RR that acknowledges but brings no data: the server is still working; keep waiting.
      }
      if (Date.now() >= this.deadline) throw this.timeout(what);
      if (retry >= this.o.frameRetries) {
        // Frame retries spent: listen until the deadline in case a slow answer still comes.
        const late = await this.waitFor(accept, this.deadline);
        if (late) return late;
        throw this.timeout(what);
      }
      this.counters.repeats++;
      this.o.log.debug({ server: this.where, what, retry: retry + 1 }, 'no valid answer within the response time-out; repeating');
      // Unnumbered frames are simply repeated; for an I-frame, poll with RR so a lost answer is repeated, not re-executed.
      toSend = unnumbered || sendAgain ? frame : this.frame({ kind: 'RR', nr: this.vr, pf: true });
    }
  }

  private timeout(what: string): DlmsWireFailure {
    return new DlmsWireFailure('timeout', `no ${what} from meter ${this.where} before the deadline (${this.counters.repeats} frame repeat(s), ${this.counters.badFrames} bad frame(s))`, this.evidence());
  }

  evidence(): string | undefined {
    return this.received.length > 0 ? this.received.join(' ') : undefined;
  }

  private async send(frame: HdlcFrame): Promise<void> {
    const bytes = encodeFrame(frame);
    try {
      await this.o.line.write(bytes);
    } catch (e) {
      throw new DlmsWireFailure('link_error', `cannot write to ${this.o.line.path}: ${(e as Error).message}`);
    }
    this.counters.framesSent++;
    this.o.log.trace({ server: this.where, tx: hex(bytes), control: describeControl(frame.control) }, 'hdlc tx');
  }

  private onBytes(chunk: Uint8Array): void {
    for (const item of this.reader.push(chunk)) {
      if (item.kind === 'noise') {
        this.received.push(`noise:${hex(item.bytes)}`);
        continue;
      }
      const f = decodeFrame(item.bytes, 'toClient');
      if (!isFrame(f)) {
        this.counters.badFrames++;
        if (f.error === 'fcs' || f.error === 'hcs') this.counters.fcsErrors++;
        this.received.push(`bad-${f.error}:${hex(item.bytes)}`);
        this.o.log.debug({ server: this.where, error: f.error, rx: hex(item.bytes) }, 'discarded an invalid frame');
        continue;
      }
      if (!sameServerAddress(f.server, this.o.server) || f.clientSap !== this.o.clientSap) continue; // another station's frame
      this.counters.framesReceived++;
      this.received.push(hex(item.bytes));
      this.o.log.trace({ server: this.where, rx: hex(item.bytes), control: describeControl(f.control) }, 'hdlc rx');
      this.inbox.push(f);
      this.waiter?.();
    }
  }

  /** The first queued frame that `match`es (others before it are dropped), or undefined at `until`. */
  private async waitFor(match: (f: HdlcFrame) => boolean, until: number): Promise<HdlcFrame | undefined> {
    for (;;) {
      while (this.inbox.length > 0) {
        const f = this.inbox.shift()!;
        if (match(f)) return f;
      }
      const left = until - Date.now();
      if (left <= 0 || !this.unsubscribe) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.waiter = done;
      });
      this.waiter = undefined;
    }
  }
}
