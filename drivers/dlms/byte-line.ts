/**
 * A full-duplex byte stream a DLMS conversation runs over: a serial port (`SerialLine`) or a TCP socket to a
 * terminal server or modem that tunnels the serial line (HDLC over TCP). HDLC framing sits on top of it.
 */
export interface ByteLine {
  readonly isOpen: boolean;
  /** Where the line goes, for messages: a device path, or host:port. */
  readonly path: string;
  onData(listener: (chunk: Uint8Array) => void): () => void;
  write(bytes: Uint8Array): Promise<void>;
}
