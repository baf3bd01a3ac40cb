import type { Socket } from 'node:net';

/**
 * How a connection ends when the gateway answered a request before its body arrived (unknown key, body too large,
 * rate limited). Closing the socket at once makes the kernel reset the connection as more of the body comes in, and
 * a client still sending then loses the answer with it (RFC 9112 §9.6): a billing system sending a too-large file
 * would see "broken pipe", not 413 E_BODY_TOO_LARGE with its limit.
 *
 * So the answer goes out with `Connection: close`, then the gateway half-closes (the client reads the answer, then
 * end of stream), stops reading (what the client still sends fills the socket's window and stops it there: nothing
 * more is read or parsed for a refused request) and closes for good `LINGER_MS` later.
 */
const LINGER_MS = 2_000;

export function closeAfterAnswer(socket: Socket): void {
  // Node ends the socket of a `Connection: close` response with destroySoon() once the answer is written.
  socket.destroySoon = function lingeringClose(this: Socket): void {
    if (this.destroyed) return;
    this.end();
    // Node resumes the request's stream to discard the rest of its body (on the next tick); stop reading after that.
    setImmediate(() => {
      if (!this.destroyed) this.pause();
    });
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
  };
}
