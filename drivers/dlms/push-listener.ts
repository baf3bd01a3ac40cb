import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { RelayReading } from '../driver.js';
import { relayFromControlState } from './cosem/disconnect-control.js';
import { formatObis, OBIS, type LogicalName } from './cosem/obis.js';
import type { DlmsPushConfig } from './dlms-config.js';
import { decodeNotification, disconnectStateOf, PUSH_TAG, type PushedDisconnectState } from './push-notification.js';
import { hex } from './wire-failure.js';
import { WrapperFrameReader, WRAPPER_HEADER_BYTES, type WrapperFrame } from './wrapper-frame.js';

/**
 * The gateway's TCP listener for what DLMS meters push (IEC 62056-47 wrapper frames carrying Data-Notification
 * or Event-Notification-Request, IEC 62056-5-3 §9.3.10). A notification that reports the disconnect control's
 * control_state (see push-notification.ts for the push setup) becomes a `RelayReading` for the meter it came
 * from, with evidence naming source `push`.
 *
 * Ciphered notifications (general-glo-ciphering 0xDB with the sender's system title, or glo-event-notification
 * 0xCA with the system title known from the sender) are handed to the `decipher` hook; the key store is the
 * hook's business. Everything that is not delivered is dropped and counted by reason. Bounded: connections
 * (`maxConnections`), frame size (`maxFrameBytes`, header included; a bigger frame drops the connection) and
 * idle time (`idleTimeoutMs`).
 */

/** Why a pushed frame or connection was dropped. */
export type PushDropReason =
  | 'connection-limit'
  | 'bad-version'
  | 'oversize'
  | 'unknown-system-title'
  | 'bad-tag'
  | 'replayed'
  | 'ciphered-without-decipher'
  | 'not-a-notification'
  | 'no-relay-state'
  | 'unknown-meter';

export const PUSH_DROP_REASONS: readonly PushDropReason[] = ['connection-limit', 'bad-version', 'oversize', 'unknown-system-title', 'bad-tag', 'replayed', 'ciphered-without-decipher', 'not-a-notification', 'no-relay-state', 'unknown-meter'];

/** Why a ciphered notification was not deciphered: no keys for that system title, a tag that does not verify, or an invocation counter that did not grow (a replay). */
export type PushDecipherRefusal = 'unknown-system-title' | 'bad-tag' | 'replayed';

/**
 * Unwrap a ciphered APDU (the whole APDU, tag included) sent by `systemTitle`: the plain APDU, or why not (may be
 * async: the key store is). The security layer and the key ring provide it; the listener never sees a key.
 * Notifications of one connection are deciphered one after the other, in the order they arrived.
 */
export type PushDecipher = (systemTitle: Buffer, apdu: Uint8Array) => Uint8Array | PushDecipherRefusal | Promise<Uint8Array | PushDecipherRefusal>;

/** What the listener knows about who sent a notification. */
export interface PushSender {
  /** From general-glo-ciphering, or from `systemTitleFor` for glo APDUs. */
  systemTitle?: Buffer;
  /** From the notification body (push setup object list), when present. */
  logicalDeviceName?: Uint8Array;
  /** The source wPort of the wrapper frame (the meter's logical device). */
  wPort: number;
  /** The remote address of the TCP connection, without the port. */
  peerAddress: string;
}

export interface PushListenerOptions {
  config: DlmsPushConfig;
  /** Which meter sent it (the gateway's fleet lookup, may be async); undefined = not one of ours (dropped as unknown-meter). */
  meterFor?: (sender: PushSender) => string | undefined | Promise<string | undefined>;
  decipher?: PushDecipher;
  /** The system title of a sender whose ciphered APDU does not carry one (glo-event-notification). */
  systemTitleFor?: (sender: { wPort: number; peerAddress: string }) => Buffer | undefined;
  onState: (meterId: string, reading: RelayReading, evidence: string) => void;
  logger: Logger;
  /** The disconnect control's logical name; default 0-0:96.3.10.255. */
  disconnectControl?: LogicalName;
  now?: () => number;
}

export interface PushListenerCounters {
  connections: number;
  frames: number;
  delivered: number;
  idleClosed: number;
  dropped: Record<PushDropReason, number>;
}

export class DlmsPushListener {
  readonly counters: PushListenerCounters = { connections: 0, frames: 0, delivered: 0, idleClosed: 0, dropped: Object.fromEntries(PUSH_DROP_REASONS.map((r) => [r, 0])) as Record<PushDropReason, number> };
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly log: Logger;
  private readonly now: () => number;
  private boundPort = 0;

  constructor(private readonly o: PushListenerOptions) {
    this.log = o.logger.child({ component: 'dlms-push' });
    this.now = o.now ?? Date.now;
  }

  /** The port listened on (the bound one when the config says 0). */
  get port(): number {
    return this.boundPort;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    const server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.o.config.port, host: this.o.config.host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.error({ err: e.message }, 'push listener error'));
    this.server = server;
    const a = server.address();
    this.boundPort = typeof a === 'object' && a ? a.port : this.o.config.port;
    this.log.info({ host: this.o.config.host, port: this.boundPort }, 'DLMS push listener up');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private drop(reason: PushDropReason, detail: Record<string, unknown>): void {
    this.counters.dropped[reason]++;
    this.log.warn({ reason, ...detail }, 'DLMS push dropped');
  }

  private accept(s: Socket): void {
    const peerAddress = (s.remoteAddress ?? '?').replace(/^::ffff:/, '');
    if (this.sockets.size >= this.o.config.maxConnections) {
      this.drop('connection-limit', { peer: peerAddress, limit: this.o.config.maxConnections });
      s.destroy();
      return;
    }
    this.counters.connections++;
    this.sockets.add(s);
    const reader = new WrapperFrameReader({ maxApduBytes: this.o.config.maxFrameBytes - WRAPPER_HEADER_BYTES });
    s.setTimeout(this.o.config.idleTimeoutMs, () => {
      this.counters.idleClosed++;
      s.destroy();
    });
    s.on('error', () => undefined);
    s.on('close', () => this.sockets.delete(s));
    // One frame at a time per connection: a meter's notifications are handled (and their counters checked) in order.
    let queue: Promise<void> = Promise.resolve();
    s.on('data', (chunk: Buffer) => {
      for (const item of reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))) {
        if (item.kind === 'fatal') {
          this.drop(item.reason, { peer: peerAddress, detail: item.detail });
          s.destroy();
          return;
        }
        this.counters.frames++;
        const frame = item.frame;
        queue = queue.then(() => this.onFrame(frame, peerAddress)).catch((e: unknown) => this.log.error({ err: (e as Error).message, peer: peerAddress, wPort: frame.source }, 'push frame failed'));
      }
    });
  }

  private async onFrame(f: WrapperFrame, peerAddress: string): Promise<void> {
    const where = { peer: peerAddress, wPort: f.source };
    let apdu = f.apdu;
    let systemTitle: Buffer | undefined;
    const ciphered = apdu[0] === PUSH_TAG.generalGloCiphering || apdu[0] === PUSH_TAG.gloEventNotificationRequest;
    if (ciphered) {
      if (apdu[0] === PUSH_TAG.generalGloCiphering) {
        // general-glo-ciphering: tag, system-title (A-XDR octet string), ciphered-content.
        const len = apdu[1] ?? 0;
        if (len === 0 || len > 16 || apdu.length < 2 + len) return this.drop('not-a-notification', { ...where, detail: 'general-glo-ciphering without a system title' });
        systemTitle = Buffer.from(apdu.subarray(2, 2 + len));
      } else systemTitle = this.o.systemTitleFor?.({ wPort: f.source, peerAddress });
      if (!systemTitle) return this.drop('unknown-system-title', { ...where, detail: 'glo-ciphered notification from a sender whose system title is not known' });
      if (!this.o.decipher) return this.drop('ciphered-without-decipher', { ...where, systemTitle: systemTitle.toString('hex') });
      const plain = await this.o.decipher(systemTitle, apdu);
      if (typeof plain === 'string') return this.drop(plain, { ...where, systemTitle: systemTitle.toString('hex') });
      apdu = plain;
    }
    const n = decodeNotification(apdu);
    if (typeof n === 'string') return this.drop('not-a-notification', { ...where, detail: n, apdu: hex(apdu.subarray(0, 64)) });
    const state = disconnectStateOf(n, this.o.disconnectControl ?? OBIS.disconnectControl);
    if (typeof state === 'string') return this.drop('no-relay-state', { ...where, detail: state });
    const sender: PushSender = { wPort: f.source, peerAddress, ...(systemTitle ? { systemTitle } : {}), ...(state.logicalDeviceName ? { logicalDeviceName: state.logicalDeviceName } : {}) };
    let meterId: string | undefined;
    try {
      meterId = await this.o.meterFor?.(sender);
    } catch (e) {
      return this.log.error({ err: (e as Error).message, peer: peerAddress, wPort: f.source }, 'push meter lookup failed');
    }
    this.deliver(meterId, f, n.kind, peerAddress, systemTitle, state, apdu, ciphered);
  }

  private deliver(meterId: string | undefined, f: WrapperFrame, service: string, peerAddress: string, systemTitle: Buffer | undefined, state: PushedDisconnectState, apdu: Uint8Array, ciphered: boolean): void {
    const where = { peer: peerAddress, wPort: f.source };
    if (meterId === undefined) {
      return this.drop('unknown-meter', { ...where, ...(systemTitle ? { systemTitle: systemTitle.toString('hex') } : {}), ...(state.logicalDeviceName ? { logicalDeviceName: Buffer.from(state.logicalDeviceName).toString('latin1') } : {}) });
    }
    const relay = relayFromControlState(state.controlState);
    const reading: RelayReading = { relay, at: this.now() };
    const evidence = JSON.stringify({
      source: 'push',
      service,
      ciphered,
      peer: peerAddress,
      wPort: f.source,
      ...(systemTitle ? { systemTitle: systemTitle.toString('hex') } : {}),
      ...(state.logicalDeviceName ? { logicalDeviceName: Buffer.from(state.logicalDeviceName).toString('latin1') } : {}),
      object: formatObis(this.o.disconnectControl ?? OBIS.disconnectControl),
      controlState: state.controlState,
      relay,
      ...(state.at !== undefined ? { meterTime: new Date(state.at).toISOString() } : {}),
      apdu: hex(apdu),
    });
    this.counters.delivered++;
    this.log.info({ meterId, relay, peer: peerAddress, wPort: f.source, ciphered }, 'DLMS push: disconnector state');
    this.o.onState(meterId, reading, evidence);
  }
}
