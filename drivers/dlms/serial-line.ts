import { realpathSync } from 'node:fs';
import { SerialPort } from 'serialport';
import type { Logger } from 'pino';

/** How much longer than the bytes' time on the wire a write may take before it is a failure of the line. */
const WRITE_MARGIN_MS = 2000;

/**
 * One serial port (optical probe, RS-485 adapter, or a pty in tests) that keeps itself open: when the
 * device disappears (adapter unplugged, pty gone) it reports down and retries opening every `reopenMs`
 * until the path is back. The simulators use the same class for their end of the line.
 */

export interface SerialLineOptions {
  path: string;
  baudRate: number;
  parity?: 'none' | 'even' | 'odd';
  /** Delay between attempts to reopen a port that is gone. Default 250 ms. */
  reopenMs?: number;
  logger: Logger;
}

type DataListener = (chunk: Uint8Array) => void;

export class SerialLine {
  private port: SerialPort | undefined;
  private listeners = new Set<DataListener>();
  private readonly openListeners = new Set<() => void>();
  private readonly closeListeners = new Set<(why: string) => void>();
  private readonly failureListeners = new Set<(why: string) => void>();
  /** Times the port was opened, for the link's counters (every open after the first is a reopen). */
  readonly counters = { opens: 0 };
  private reopenTimer: NodeJS.Timeout | undefined;
  private wanted = false;
  private opening = false;
  /** The device node the open port is on, and the check that it is still the one at `path`. */
  private device: string | undefined;
  private watch: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly options: SerialLineOptions) {
    this.log = options.logger.child({ port: options.path });
  }

  get isOpen(): boolean {
    return this.port?.isOpen === true;
  }

  get path(): string {
    return this.options.path;
  }

  /** Start keeping the port open. Resolves after the first attempt, open or not (a missing port is retried). */
  async open(): Promise<void> {
    this.wanted = true;
    await this.tryOpen();
  }

  async close(): Promise<void> {
    this.wanted = false;
    if (this.watch) clearInterval(this.watch);
    this.watch = undefined;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    const p = this.port;
    this.port = undefined;
    if (p?.isOpen) await new Promise<void>((resolve) => p.close(() => resolve()));
  }

  onData(listener: DataListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called each time the port is opened. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Called each time the open port is lost (not when `close()` is called), with why in words. */
  onClose(listener: (why: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Called each time an attempt to open the port fails, with the system's reason. */
  onOpenFailure(listener: (why: string) => void): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /**
   * Write and wait until the bytes are handed to the OS; rejects when the port is not open, and when the OS has not
   * taken them within their time on the wire plus WRITE_MARGIN_MS: a drain can block for ever on an adapter or pty
   * whose far side is gone, and a conversation (and the bus lock behind it) must never wait for ever.
   */
  write(bytes: Uint8Array): Promise<void> {
    const p = this.port;
    if (!p?.isOpen) return Promise.reject(new Error(`serial port ${this.options.path} is not open`));
    const allowedMs = Math.ceil((bytes.length * 11 * 1000) / this.options.baudRate) + WRITE_MARGIN_MS;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serial port ${this.options.path} did not take ${bytes.length} byte(s) within ${allowedMs} ms (adapter or device stopped)`)), allowedMs);
      const done = (err?: Error | null): void => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      p.write(Buffer.from(bytes), (err) => (err ? done(err) : p.drain((e) => done(e))));
    });
  }

  private async tryOpen(): Promise<void> {
    if (!this.wanted || this.opening || this.port?.isOpen) return;
    this.opening = true;
    const { path, baudRate, parity = 'none' } = this.options;
    const port = new SerialPort({ path, baudRate, parity, dataBits: 8, stopBits: 1, autoOpen: false });
    const error = await new Promise<Error | null>((resolve) => port.open((err) => resolve(err ?? null)));
    this.opening = false;
    if (error || !this.wanted) {
      if (error) {
        this.log.debug({ err: error.message }, 'serial port not available; retrying');
        for (const l of this.failureListeners) l(`cannot open serial port ${path}: ${error.message}`);
      }
      if (!error) port.close();
      this.scheduleReopen();
      return;
    }
    this.port = port;
    this.device = deviceOf(path);
    this.watchDevice(port);
    port.on('data', (chunk: Buffer) => {
      const bytes = new Uint8Array(chunk);
      for (const l of this.listeners) l(bytes);
    });
    port.on('error', (err) => this.log.warn({ err: err.message }, 'serial port error'));
    port.on('close', () => {
      if (this.port === port) this.port = undefined;
      if (this.wanted) {
        this.log.warn('serial port closed; reopening when it is back');
        for (const l of this.closeListeners) l(`serial port ${path} closed (adapter unplugged or device gone); reopening when it is back`);
        this.scheduleReopen();
      }
    });
    this.counters.opens++;
    this.log.info({ baudRate }, 'serial port open');
    for (const l of this.openListeners) l();
  }

  /**
   * The OS does not always report a device that went away (a pty whose other end was closed, an adapter replugged
   * under a new node). If the path no longer leads to the device the port is on, close it and reopen the path.
   */
  private watchDevice(port: SerialPort): void {
    if (this.watch) clearInterval(this.watch);
    this.watch = setInterval(() => {
      if (this.port !== port || !port.isOpen) return;
      if (deviceOf(this.options.path) === this.device) return;
      this.log.warn('the device behind the port changed or is gone; reopening');
      port.close();
    }, this.options.reopenMs ?? 250);
    this.watch.unref();
  }

  private scheduleReopen(): void {
    if (!this.wanted || this.reopenTimer) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      void this.tryOpen();
    }, this.options.reopenMs ?? 250);
    this.reopenTimer.unref();
  }
}

/** The device node a path leads to now (through symlinks), or undefined if there is none. */
function deviceOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
