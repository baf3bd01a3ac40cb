import { connect } from 'node:net';

/**
 * HTTP/1.1 over a raw socket, for what fetch hides: a body streamed in chunks with backpressure that stops the moment
 * the server answers or closes (so a test sees whether the server read the body before answering), a Content-Length
 * that promises more than is sent, a chunked body with no length at all.
 *
 * The body is `head`, then `repeat` `times` times, then `tail`: tens of megabytes from one small buffer, so the
 * sending costs the test (which shares its event loop with an in-process gateway) next to nothing.
 */
export interface RawBody {
  head?: string | Buffer;
  repeat?: string | Buffer;
  times?: number;
  tail?: string | Buffer;
  /** `length` (default): Content-Length of the whole body. `chunked`: Transfer-Encoding: chunked, no length. */
  framing?: 'length' | 'chunked';
  /** Declare this Content-Length but send only the headers (the server must answer without the body). */
  declareOnly?: number;
}

export interface RawAnswer {
  /** The status of the answer; null when the connection closed before one came. */
  status: number | null;
  headers: Record<string, string>;
  body: string;
  /** What the answer's body parses to as JSON, or undefined. */
  json: any;
  /** Body bytes the request had; the bytes written when the first byte of the answer came, or when the connection closed. */
  bodyBytes: number;
  sentWhenAnswered: number;
  /** Milliseconds from connecting to the first byte of the answer (or to the close). */
  answeredAfterMs: number;
  /** A socket error seen while sending or reading (EPIPE, ECONNRESET: the server closed while we were sending). */
  error: string | null;
  /** This end's port: the server's socket for this request has it as its remote port. */
  localPort: number;
}

const buf = (b: string | Buffer | undefined): Buffer => (b === undefined ? Buffer.alloc(0) : typeof b === 'string' ? Buffer.from(b) : b);

export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: RawBody; timeoutMs?: number } = {},
): Promise<RawAnswer> {
  const url = new URL(baseUrl);
  const body = options.body ?? {};
  const head = buf(body.head);
  const repeat = buf(body.repeat);
  const times = body.times ?? 0;
  const tail = buf(body.tail);
  const bodyBytes = body.declareOnly ?? head.length + repeat.length * times + tail.length;
  const chunked = body.framing === 'chunked';
  const headers: Record<string, string> = { host: url.host, ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(bodyBytes) }), ...options.headers };
  const requestHead = `${method} ${path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;

  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(url.port), url.hostname);
    let received = Buffer.alloc(0);
    let sent = 0;
    let sentWhenAnswered: number | null = null;
    let answeredAt: number | null = null;
    let error: string | null = null;
    let done = false;
    let localPort = 0;

    const timer = setTimeout(() => {
      finish();
      reject(new Error(`${method} ${path}: no answer within ${options.timeoutMs ?? 15_000} ms after ${sent} of ${bodyBytes} body bytes (is the server waiting for the body?)`));
    }, options.timeoutMs ?? 15_000);

    const parse = (): Omit<RawAnswer, 'bodyBytes' | 'sentWhenAnswered' | 'answeredAfterMs' | 'error' | 'localPort'> & { complete: boolean } => {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return { status: null, headers: {}, body: '', json: undefined, complete: false };
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const hdrs: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        if (i > 0) hdrs[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const length = Number(hdrs['content-length'] ?? NaN);
      const bodyBuf = received.subarray(end + 4);
      const text = bodyBuf.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? NaN), headers: hdrs, body: text, json, complete: Number.isFinite(length) && bodyBuf.length >= length };
    };

    const finish = () => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      return true;
    };
    const answer = () => {
      const p = parse();
      if (!finish()) return;
      resolve({
        status: p.status,
        headers: p.headers,
        body: p.body,
        json: p.json,
        bodyBytes,
        sentWhenAnswered: sentWhenAnswered ?? sent,
        answeredAfterMs: (answeredAt ?? Date.now()) - started,
        error,
        localPort,
      });
    };

    socket.on('data', (chunk: Buffer) => {
      if (sentWhenAnswered === null) {
        sentWhenAnswered = sent;
        answeredAt = Date.now();
      }
      received = Buffer.concat([received, chunk]);
      if (parse().complete) answer();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('close', answer);

    const answered = () => done || sentWhenAnswered !== null || socket.destroyed;
    const write = (piece: Buffer): Promise<void> =>
      new Promise((ok) => {
        if (answered() || piece.length === 0) return ok();
        const frame = chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece;
        const counted = () => {
          sent += piece.length;
          ok();
        };
        // Back to the event loop between pieces even when the socket takes more at once, so an answer is read (and
        // the sending stops) as soon as it comes, as a real client's would.
        if (socket.write(frame)) return void setImmediate(counted);
        const go = () => {
          socket.off('drain', go);
          socket.off('close', go);
          counted();
        };
        socket.on('drain', go);
        socket.on('close', go);
      });

    socket.once('connect', () => {
      localPort = socket.localPort ?? 0;
      void (async () => {
        socket.write(requestHead);
        if (body.declareOnly !== undefined) return;
        await write(head);
        for (let i = 0; i < times && !answered(); i++) await write(repeat);
        await write(tail);
        if (chunked && !answered()) socket.write('0\r\n\r\n');
      })();
    });
  });
}
