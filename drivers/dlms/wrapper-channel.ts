import type { ApduChannel } from './apdu-channel.js';
import type { TcpLine } from './tcp-line.js';
import { DlmsWireFailure, hex } from './wire-failure.js';
import { encodeWrapperFrame, WrapperFrameReader, type WrapperFrame } from './wrapper-frame.js';

/**
 * APDUs over the TCP wrapper (IEC 62056-47 §5.3): a `WrapperConnection` owns the frame reader of one TCP
 * connection, and hands out an `ApduChannel` per association, addressed by the client's wPort (the
 * profile's client SAP) and the server's wPort (the meter's logical device). One association uses a
 * connection at a time; a frame addressed to other wPorts (a late answer to a conversation that already
 * timed out) is discarded and counted, never taken for the answer.
 *
 * A header with a wrong version or an oversize length breaks the stream: the connection is dropped (the
 * link reconnects) and the request waiting on it ends `garbled`. A connection lost while a request waits
 * ends it `link_error` at once; no answer by the deadline is `timeout`.
 */

export interface WrapperConnectionCounters {
  /** Frames for other wPorts, or arriving when nobody asked. */
  strayFrames: number;
  /** Streams dropped for a bad header (version or length). */
  badStreams: number;
  /** Requests whose answer did not come by the deadline (it may still come: the connection is then not reused). */
  timeouts: number;
}

export interface WrapperAddress {
  /** The client's wPort: its client SAP (0x10 public, 0x01 management). */
  client: number;
  /** The server's wPort: the logical device (1 = management logical device). */
  server: number;
}

export class WrapperConnection {
  readonly counters: WrapperConnectionCounters = { strayFrames: 0, badStreams: 0, timeouts: 0 };
  private reader: WrapperFrameReader;
  private inbox: WrapperFrame[] = [];
  private fatal: string | undefined;
  private waiter: (() => void) | undefined;

  constructor(
    readonly line: TcpLine,
    private readonly maxApduBytes: number,
  ) {
    this.reader = new WrapperFrameReader({ maxApduBytes });
    line.onOpen(() => {
      this.reader = new WrapperFrameReader({ maxApduBytes: this.maxApduBytes });
      this.inbox = [];
      this.fatal = undefined;
    });
    line.onClose(() => this.waiter?.());
    line.onData((chunk) => this.onBytes(chunk));
  }

  /** The channel one association talks through; `deadline()` is read at each request (release gets its own budget). */
  channel(address: WrapperAddress, where: string, deadline: () => number): ApduChannel & { readonly received: string[] } {
    const received: string[] = [];
    return {
      received,
      request: async (apdu) => {
        const answer = await this.request(address, apdu, where, deadline());
        received.push(hex(answer));
        return answer;
      },
    };
  }

  private onBytes(chunk: Uint8Array): void {
    for (const item of this.reader.push(chunk)) {
      if (item.kind === 'frame') this.inbox.push(item.frame);
      else {
        this.counters.badStreams++;
        this.fatal = item.detail;
        this.line.drop(item.detail);
      }
    }
    this.waiter?.();
  }

  private async request(a: WrapperAddress, apdu: Uint8Array, where: string, deadline: number): Promise<Uint8Array> {
    if (!this.line.isOpen) throw new DlmsWireFailure('link_error', `meter ${where}: TCP connection to ${this.line.path} is not open`);
    // Whatever is queued now answers nothing we are about to ask.
    this.counters.strayFrames += this.inbox.length;
    this.inbox = [];
    try {
      await this.line.write(encodeWrapperFrame({ source: a.client, destination: a.server, apdu }));
    } catch (e) {
      throw new DlmsWireFailure('link_error', `meter ${where}: cannot write to ${this.line.path}: ${(e as Error).message}`);
    }
    for (;;) {
      while (this.inbox.length > 0) {
        const f = this.inbox.shift()!;
        if (f.source === a.server && f.destination === a.client) return f.apdu;
        this.counters.strayFrames++;
      }
      if (this.fatal) throw new DlmsWireFailure('garbled', `meter ${where}: ${this.fatal}; connection dropped`);
      if (!this.line.isOpen) throw new DlmsWireFailure('link_error', `meter ${where}: TCP connection to ${this.line.path} dropped while waiting for the answer`);
      const left = deadline - Date.now();
      if (left <= 0) {
        this.counters.timeouts++;
        throw new DlmsWireFailure('timeout', `meter ${where}: no answer on ${this.line.path} (wPort ${a.client} → ${a.server}) by the deadline`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiter = done;
      });
      this.waiter = undefined;
    }
  }
}
