import { createServer, Socket, type Server } from 'node:net';
import { pino, type Logger } from 'pino';
import { controlStateFromRelay } from '../drivers/dlms/cosem/disconnect-control.js';
import { ACSE_TAG } from '../drivers/dlms/acse-apdu.js';
import { LLC_RESPONSE, stripLlc } from '../drivers/dlms/llc.js';
import { disconnectPushBody, encodeDataNotification } from '../drivers/dlms/push-notification.js';
import { encodeWrapperFrame, WrapperFrameReader } from '../drivers/dlms/wrapper-frame.js';
import { DlmsBusSimulator, simulatedDlmsMeter, type BusMeterSpec, type SimulatorLine } from './dlms-bus.js';
import type { DlmsSimMeter } from './dlms-meter.js';
import type { SimulatedMeter } from './meter-model.js';

/**
 * Simulated DLMS meters behind one TCP port, the meter side of the two TCP link kinds:
 *
 * - `wrapper` (IEC 62056-47): meters told apart by the destination wPort (each meter's logical address,
 *   `logicalAddress`, distinct), answering from the same `DlmsSimMeter` as on HDLC, the LLC header stripped.
 *   A connection may talk to any of them, several connections at once (a data concentrator).
 * - `hdlc`: HDLC over TCP, a terminal server in front of an RS-485 bus: the `DlmsBusSimulator` over the
 *   accepted socket, one client at a time (a second is refused, as a serial port has one owner).
 *
 * Push: with `push` set, a relay change the meter makes on its own (the customer's button press, a local
 * trip: `SimulatedMeter.onChange`) opens a TCP connection to the push address and sends a Data-Notification
 * in a wrapper frame, body as push-notification.ts documents (device name = meter id, control_state); a meter
 * with keys sends it general-glo-ciphering under its system title (DlmsSimMeter.protectPush).
 */

export interface DlmsTcpServerOptions {
  mode: 'wrapper' | 'hdlc';
  /** 0 = an ephemeral port (read `port` after start). */
  port: number;
  host?: string;
  meters: readonly BusMeterSpec[];
  /** Connections accepted at once (wrapper); more are closed at once. Default 64. */
  maxConnections?: number;
  push?: { host: string; port: number; /** The push client's wPort; default 1. */ destinationWPort?: number };
  logger?: Logger;
  now?: () => number;
}

interface WrapperMeter {
  meter: SimulatedMeter;
  cosem: DlmsSimMeter;
}

export interface DlmsTcpServerCounters {
  connections: number;
  refused: number;
  maxOpenConnections: number;
  /** Wrapper frames for a wPort no meter has. */
  unknownWPort: number;
  pushesSent: number;
  pushFailures: number;
}

export class DlmsTcpServer {
  readonly counters: DlmsTcpServerCounters = { connections: 0, refused: 0, maxOpenConnections: 0, unknownWPort: 0, pushesSent: 0, pushFailures: 0 };
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly byWPort = new Map<number, WrapperMeter>();
  private readonly byId = new Map<string, WrapperMeter>();
  private readonly bus: DlmsBusSimulator | undefined;
  private readonly busLine: TcpServerSideLine | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private boundPort: number;
  private pushSeq = 0;
  private readonly unsubscribe: Array<() => void> = [];
  /** Which connection each meter's current association was made on. */
  private readonly associatedOn = new Map<WrapperMeter, Socket>();

  constructor(private readonly o: DlmsTcpServerOptions) {
    this.log = (o.logger ?? pino({ level: 'silent' })).child({ simulator: `dlms-tcp-${o.mode}` });
    this.now = o.now ?? Date.now;
    this.boundPort = o.port;
    if (o.mode === 'hdlc') {
      this.busLine = new TcpServerSideLine(this);
      this.bus = new DlmsBusSimulator({ line: this.busLine, meters: o.meters, logger: this.log, now: this.now });
      for (const m of this.bus.busMeters) this.byId.set(m.meter.id, { meter: m.meter, cosem: m.cosem });
    } else {
      for (const spec of o.meters) {
        const wm = simulatedDlmsMeter(spec, this.now);
        if (this.byWPort.has(wm.cosem.logicalAddress)) throw new Error(`simulated meters ${this.byWPort.get(wm.cosem.logicalAddress)!.meter.id} and ${spec.meterId} share wPort ${wm.cosem.logicalAddress}: give each a distinct logicalAddress`);
        this.byWPort.set(wm.cosem.logicalAddress, wm);
        this.byId.set(spec.meterId, wm);
      }
    }
    if (o.push) for (const wm of this.byId.values()) this.unsubscribe.push(wm.meter.onChange((m) => this.sendPush(wm, m.relay)));
  }

  /** The port listened on. */
  get port(): number {
    return this.boundPort;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  meter(meterId: string): SimulatedMeter {
    return this.entry(meterId).meter;
  }

  simMeter(meterId: string): DlmsSimMeter {
    return this.entry(meterId).cosem;
  }

  /** The HDLC bus behind the socket (hdlc mode): link faults per meter. */
  get hdlcBus(): DlmsBusSimulator | undefined {
    return this.bus;
  }

  private entry(meterId: string): WrapperMeter {
    const m = this.byId.get(meterId);
    if (!m) throw new Error(`no simulated DLMS meter ${meterId} on this TCP server`);
    return m;
  }

  async start(): Promise<void> {
    await this.listen();
    if (this.bus) await this.bus.start();
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe) u();
    await this.suspend();
    if (this.bus) await this.bus.stop();
    else for (const m of this.byId.values()) m.meter.dispose();
    for (const t of this.timers) clearTimeout(t);
  }

  /** Stop listening and drop every connection (the meters keep their state): a link that goes down. */
  async suspend(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listen again on the same port: the link comes back. */
  async resume(): Promise<void> {
    await this.listen();
  }

  private async listen(): Promise<void> {
    if (this.server) return;
    const server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.boundPort, host: this.o.host ?? '127.0.0.1' }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address();
    if (typeof a === 'object' && a) this.boundPort = a.port;
    this.server = server;
    this.log.info({ port: this.boundPort, mode: this.o.mode }, 'DLMS TCP simulator listening');
  }

  get isListening(): boolean {
    return this.server !== undefined;
  }

  private accept(s: Socket): void {
    const limit = this.o.mode === 'hdlc' ? 1 : (this.o.maxConnections ?? 64);
    if (this.sockets.size >= limit) {
      this.counters.refused++;
      s.destroy();
      return;
    }
    this.counters.connections++;
    this.sockets.add(s);
    this.counters.maxOpenConnections = Math.max(this.counters.maxOpenConnections, this.sockets.size);
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.on('close', () => {
      this.sockets.delete(s);
      if (this.busLine) this.busLine.detach(s);
    });
    if (this.busLine) return this.busLine.attach(s);
    const reader = new WrapperFrameReader();
    const touched = new Set<WrapperMeter>();
    // A meter answers one request after another: an answer never overtakes a slower one before it on the connection.
    let busyUntil = 0;
    s.on('close', () => {
      // The association lives on the connection that made it: a meter another connection has since associated on keeps that one.
      for (const m of touched) if (this.associatedOn.get(m) === s) {
        this.associatedOn.delete(m);
        m.cosem.resetLink();
      }
    });
    s.on('data', (chunk: Buffer) => {
      for (const item of reader.push(new Uint8Array(chunk))) {
        if (item.kind === 'fatal') {
          s.destroy();
          return;
        }
        const { source, destination, apdu } = item.frame;
        const wm = this.byWPort.get(destination);
        if (!wm) {
          this.counters.unknownWPort++;
          continue; // nobody at that wPort: no answer
        }
        touched.add(wm);
        const now = Date.now();
        if (!wm.meter.acceptsContact(now)) continue; // offline: nothing answers
        // A new association starts afresh (on HDLC the SNRM does this).
        if (apdu[0] === ACSE_TAG.AARQ) {
          wm.cosem.resetLink();
          this.associatedOn.set(wm, s);
        }
        const answer = wm.cosem.answer(apdu, now, source); // the client wPort is its SAP (public 16, management 1)
        if (!answer) continue;
        const body = stripLlc(LLC_RESPONSE, answer.info) ?? answer.info; // garbage from a garbling meter goes as it is
        const frame = encodeWrapperFrame({ source: destination, destination: source, apdu: body });
        const send = () => {
          if (!s.destroyed) s.write(frame);
        };
        const at = Math.max(now + answer.delayMs, busyUntil);
        busyUntil = at;
        if (at > now) this.later(send, at - now);
        else send();
      }
    });
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** Connect to the push address, send one Data-Notification, close. Failures are counted, never thrown. */
  private sendPush(wm: WrapperMeter, relay: SimulatedMeter['relay']): void {
    const push = this.o.push!;
    const apdu = encodeDataNotification({
      longInvokeId: ++this.pushSeq,
      at: this.now(),
      body: disconnectPushBody(Buffer.from(wm.meter.id, 'latin1'), controlStateFromRelay(relay)),
    });
    const frame = encodeWrapperFrame({ source: wm.cosem.logicalAddress, destination: push.destinationWPort ?? 1, apdu: wm.cosem.protectPush(apdu) });
    const s = new Socket();
    s.on('error', (e) => {
      this.counters.pushFailures++;
      this.log.warn({ meterId: wm.meter.id, err: e.message }, 'push failed');
    });
    s.connect({ host: push.host, port: push.port }, () => {
      s.end(frame, () => {
        this.counters.pushesSent++;
        this.log.info({ meterId: wm.meter.id, relay }, 'pushed the disconnector state');
      });
    });
  }
}

/** The socket a terminal server would hand the bus: the currently attached client, if any. */
class TcpServerSideLine implements SimulatorLine {
  private socket: Socket | undefined;
  private readonly listeners = new Set<(chunk: Uint8Array) => void>();
  constructor(private readonly server: DlmsTcpServer) {}

  get isOpen(): boolean {
    return this.server.isListening;
  }

  get path(): string {
    return `tcp:${this.server.port}`;
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {
    this.socket?.destroy();
  }

  attach(s: Socket): void {
    this.socket = s;
    s.on('data', (chunk: Buffer) => {
      for (const l of this.listeners) l(new Uint8Array(chunk));
    });
  }

  detach(s: Socket): void {
    if (this.socket !== s) return;
    this.socket = undefined;
    this.server.hdlcBus?.resetLinks();
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  write(bytes: Uint8Array): Promise<void> {
    const s = this.socket;
    if (!s || s.destroyed) return Promise.reject(new Error('no client connected'));
    return new Promise((resolve, reject) => s.write(bytes, (e) => (e ? reject(e) : resolve())));
  }
}
