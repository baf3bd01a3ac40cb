import { Socket } from 'node:net';

const batched = new WeakSet<Socket>();

/**
 * Gather what is written to `socket` in one turn of the event loop and hand it to the socket as one buffer at the
 * end of the turn (setImmediate): the bytes, their order and the connection are unchanged; no byte waits past the
 * current turn: Nagle's algorithm is turned off on the socket, since it would make the next turn's bytes wait for the
 * peer's acknowledgement of this turn's.
 *
 * Why (issue 19): mqtt-packet writes every packet as many small writes (a header byte, each length, the topic, each
 * property, the payload: about 36 per verified order), each through the socket's stream machinery, corked per packet
 * and uncorked on the next tick. That was a tenth of the gateway's main-thread CPU per order. One concatenation and one
 * socket write per turn replace it.
 *
 * Only a plain TCP or TLS socket is batched (a WebSocket or proxy stream is left as it is). `write` answers as the
 * socket would about back-pressure (false while it needs a drain), so mqtt.js still waits for 'drain' when it should;
 * `end` sends what is gathered first. Idempotent per socket.
 */
export function batchWrites(stream: unknown): void {
  if (!(stream instanceof Socket) || batched.has(stream)) return;
  const socket = stream;
  batched.add(socket);
  // Nagle's algorithm off: this turn's bytes leave at the end of the turn, not once the peer has acknowledged the
  // previous turn's. With it on, a small write waits for that acknowledgement, which a peer that has nothing to send
  // back delays (delayed ACK, 40 ms on Linux): through mosquitto, request/reply round trips took 26 ms at the median
  // (82 ms for reads one after another) with Nagle on either side, 0.5–1 ms with it off on both (the broker's side is
  // its own setting: mosquitto's set_tcp_nodelay). The gathering here already does what Nagle would: one write per turn.
  socket.setNoDelay(true);
  const write = socket.write;
  const end = socket.end;
  // This turn's bytes: Buffers, and utf8 strings as they came (copied straight into the one buffer at the flush).
  let parts: (Buffer | string)[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (parts.length === 0) return;
    const chunk = joined(parts, bytes);
    parts = [];
    bytes = 0;
    // A socket already destroyed or ended drops the bytes, as it would have dropped the writes themselves.
    if (!socket.destroyed && !socket.writableEnded) write.call(socket, chunk);
  };
  socket.write = function batchedWrite(this: Socket, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (typeof encoding === 'function' || cb !== undefined || (typeof chunk !== 'string' && !Buffer.isBuffer(chunk))) {
      // A write that wants a callback (or is not bytes): what is gathered goes first, then this one, as before.
      flush();
      return (write as (...a: unknown[]) => boolean).call(socket, chunk, encoding, cb);
    }
    if (typeof chunk === 'string') {
      const utf8 = encoding === undefined || encoding === 'utf8' || encoding === 'utf-8';
      const part = utf8 ? chunk : Buffer.from(chunk, encoding as BufferEncoding);
      parts.push(part);
      bytes += utf8 ? Buffer.byteLength(chunk, 'utf8') : (part as Buffer).length;
    } else {
      parts.push(chunk);
      bytes += chunk.length;
    }
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
    return !socket.writableNeedDrain;
  } as Socket['write'];
  socket.end = function batchedEnd(this: Socket, ...args: unknown[]) {
    flush();
    return (end as (...a: unknown[]) => Socket).apply(socket, args);
  } as Socket['end'];
  // mqtt-packet corks each packet when the stream can cork, and uncorks it on the next tick: with the bytes gathered
  // here that is only cost. Only mqtt-packet corks this socket.
  Object.defineProperty(socket, 'cork', { value: undefined, configurable: true, writable: true });
}

/**
 * `parts` (`bytes` long in all) as one buffer. Most parts are a byte or two (a header, a length): copied byte by byte,
 * which costs less than a native copy call each (as Buffer.concat makes).
 */
function joined(parts: readonly (Buffer | string)[], bytes: number): Buffer {
  if (parts.length === 1 && typeof parts[0] !== 'string') return parts[0]!;
  const out = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const part of parts) {
    if (typeof part === 'string') {
      at += out.write(part, at, 'utf8');
    } else if (part.length <= 16) {
      for (let i = 0; i < part.length; i++) out[at++] = part[i]!;
    } else {
      out.set(part, at);
      at += part.length;
    }
  }
  return out;
}
