/**
 * The two packets the gateway writes per request and per reply, PUBLISH and PUBACK, encoded in one buffer: the same
 * bytes as mqtt-packet's `writeToStream` writes (tests/drivers/mqtt-packet-fast.test.ts compares them), for the packets
 * the driver sends. Anything else (other packets, other properties, any value mqtt-packet would refuse) is undefined
 * and left to mqtt-packet, which writes it or refuses it as before.
 *
 * Why (issue 19): mqtt-packet writes a PUBLISH as about fifteen writes (a header byte, the length, the topic's length,
 * the topic, the packet id, each property's id, length and value, the payload), each a call through the stream, which
 * write-batch.ts then gathers and copies byte by byte. One buffer, one write, instead.
 *
 * mqtt.js still does everything else exactly as before: packet ids, the outgoing store, the in-flight window, PUBACK
 * matching, topic aliases (a packet with one is left to mqtt-packet).
 */

/** What mqtt.js hands mqtt-packet (the fields these encoders read). */
interface PacketLike {
  cmd?: unknown;
  topic?: unknown;
  payload?: unknown;
  qos?: unknown;
  dup?: unknown;
  retain?: unknown;
  messageId?: unknown;
  properties?: unknown;
  reasonCode?: unknown;
}

/** Largest MQTT variable byte integer (the remaining length). */
const VARBYTEINT_MAX = 268_435_455;

const MESSAGE_EXPIRY_INTERVAL = 0x02;
const RESPONSE_TOPIC = 0x08;
const CORRELATION_DATA = 0x09;

/** The packet as bytes, or undefined: not one these encoders take (mqtt-packet writes it). */
export function encodeFast(packet: PacketLike, protocolVersion: number): Buffer | undefined {
  if (packet.cmd === 'publish') return encodePublish(packet, protocolVersion);
  if (packet.cmd === 'puback') return encodePuback(packet, protocolVersion);
  return undefined;
}

const isU16 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff;

function encodePublish(packet: PacketLike, version: number): Buffer | undefined {
  const qos = packet.qos || 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) return undefined;
  const { topic } = packet;
  if (typeof topic !== 'string') return undefined;
  const payload = packet.payload || '';
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return undefined;
  const id = packet.messageId;
  if (qos > 0 && !isU16(id)) return undefined;

  const topicBytes = Buffer.byteLength(topic);
  if (topicBytes > 0xffff) return undefined;
  const payloadBytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  let length = 2 + topicBytes + payloadBytes + (qos > 0 ? 2 : 0);

  // MQTT 5 properties: only those the driver sends, each at most once, in the object's key order (as mqtt-packet).
  let expiry: number | undefined;
  let responseTopic: string | undefined;
  let responseTopicBytes = 0;
  let correlation: string | Buffer | undefined;
  let correlationBytes = 0;
  let order: number[] | undefined;
  let propertiesLength = 0;
  if (version === 5) {
    const { properties } = packet;
    if (properties !== undefined) {
      if (typeof properties !== 'object' || properties === null || Object.getPrototypeOf(properties) !== Object.prototype) return undefined;
      order = [];
      for (const key in properties) {
        const value = (properties as Record<string, unknown>)[key];
        if (key === 'messageExpiryInterval') {
          if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) return undefined;
          expiry = value;
          order.push(MESSAGE_EXPIRY_INTERVAL);
          propertiesLength += 5;
        } else if (key === 'responseTopic') {
          if (typeof value !== 'string') return undefined;
          responseTopic = value;
          responseTopicBytes = Buffer.byteLength(value);
          if (responseTopicBytes > 0xffff) return undefined;
          order.push(RESPONSE_TOPIC);
          propertiesLength += 3 + responseTopicBytes;
        } else if (key === 'correlationData') {
          if (typeof value !== 'string' && !Buffer.isBuffer(value)) return undefined;
          correlation = value;
          correlationBytes = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
          if (correlationBytes > 0xffff) return undefined;
          order.push(CORRELATION_DATA);
          propertiesLength += 3 + correlationBytes;
        } else {
          return undefined;
        }
      }
    }
    length += varIntBytes(propertiesLength) + propertiesLength;
  }
  if (length > VARBYTEINT_MAX) return undefined;

  const out = Buffer.allocUnsafe(1 + varIntBytes(length) + length);
  out[0] = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 0x01 : 0);
  let at = writeVarInt(out, 1, length);
  out[at++] = topicBytes >> 8;
  out[at++] = topicBytes & 0xff;
  at += out.write(topic, at, 'utf8');
  if (qos > 0) {
    out[at++] = (id as number) >> 8;
    out[at++] = (id as number) & 0xff;
  }
  if (version === 5) {
    at = writeVarInt(out, at, propertiesLength);
    for (const p of order ?? []) {
      out[at++] = p;
      if (p === MESSAGE_EXPIRY_INTERVAL) {
        out.writeUInt32BE(expiry!, at);
        at += 4;
      } else if (p === RESPONSE_TOPIC) {
        out[at++] = responseTopicBytes >> 8;
        out[at++] = responseTopicBytes & 0xff;
        at += out.write(responseTopic!, at, 'utf8');
      } else {
        out[at++] = correlationBytes >> 8;
        out[at++] = correlationBytes & 0xff;
        at += typeof correlation === 'string' ? out.write(correlation, at, 'utf8') : correlation!.copy(out, at);
      }
    }
  }
  if (typeof payload === 'string') at += out.write(payload, at, 'utf8');
  else at += payload.copy(out, at);
  return at === out.length ? out : undefined;
}

/** A PUBACK with no properties: with MQTT 5, reason code 0 (success), which is left out (MQTT 5 §3.4.2.1). */
function encodePuback(packet: PacketLike, version: number): Buffer | undefined {
  const id = packet.messageId;
  if (!isU16(id) || packet.properties !== undefined) return undefined;
  if (version === 5 && packet.reasonCode !== 0) return undefined;
  return Buffer.from([0x40, 0x02, id >> 8, id & 0xff]);
}

function varIntBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}

function writeVarInt(out: Buffer, at: number, n: number): number {
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out[at++] = digit;
  } while (n > 0);
  return at;
}

/** A larger packet cut across chunks goes to mqtt-packet's parser, which gathers chunks without copying each time. */
const MAX_TAIL = 65_536;

/** mqtt-packet's parser, as far as the fast path below uses it. */
export interface PacketParser {
  settings: { protocolVersion?: number };
  error: unknown;
  packet: { length: number };
  _list: { length: number };
  _stateCounter: number;
  parse(buf: Buffer): number;
  emit(event: 'packet', packet: unknown): boolean;
}

/**
 * `parser` reading the PUBLISH and PUBACK packets the gateway receives (replies, status reports, acknowledgements)
 * straight from each chunk the socket gives it: the same packet objects, in the same order, as mqtt-packet's parser
 * emits (tests/drivers/mqtt-packet-fast.test.ts compares them). A packet cut across chunks is read when its end comes. A
 * packet it does not take (another kind, one with MQTT 5 user properties, one over 64 KiB cut across chunks, anything
 * malformed) and all after it in the chunk go to mqtt-packet's parser, which parses on from there as it always does;
 * the fast path takes over again once that parser is between whole packets.
 *
 * Why (issue 19): mqtt-packet's parser appends each chunk to a buffer list, reads each field through it, and copies
 * and consumes it: a third of the MQTT part of the main thread's work per order.
 */
export function parseFast<P extends PacketParser>(parser: P, Packet: new () => Record<string, unknown>, constants: PacketConstants): P {
  const slowParse = parser.parse;
  const v5 = parser.settings.protocolVersion === 5;
  // The start of a packet the fast path may take, cut off at the end of the last chunk: read with the next chunk.
  let tail: Buffer | undefined;
  parser.parse = function parse(this: P, chunk: Buffer): number {
    // Only between whole packets: nothing buffered in mqtt-packet's parser, no packet begun there, no error to reset.
    if (this.error || this._list.length !== 0 || this._stateCounter !== 0 || this.packet.length !== -1 || !Buffer.isBuffer(chunk)) {
      // A tail is only kept while mqtt-packet's parser is between packets: it reads the tail first, then the chunk.
      if (tail !== undefined) {
        const first = tail;
        tail = undefined;
        slowParse.call(this, first);
      }
      return slowParse.call(this, chunk);
    }
    const buf = tail === undefined ? chunk : Buffer.concat([tail, chunk]);
    tail = undefined;
    let at = 0;
    while (at < buf.length) {
      const used = one(this, buf, at, v5, Packet, constants);
      if (used === 0) return slowParse.call(this, at === 0 ? buf : buf.subarray(at));
      if (used < 0) {
        tail = buf.subarray(at);
        return tail.length;
      }
      at += used;
    }
    return 0;
  };
  return parser;
}

/**
 * One whole PUBLISH or PUBACK at `at` emitted: its size in bytes. 0: none taken (mqtt-packet's parser reads on from
 * here). -1: a PUBLISH or PUBACK of at most MAX_TAIL bytes whose end is not in `buf` yet.
 */
function one(parser: PacketParser, buf: Buffer, at: number, v5: boolean, Packet: new () => Record<string, unknown>, constants: PacketConstants): number {
  const header = buf[at]!;
  const type = header >> 4;
  if (type !== 3 && type !== 4) return 0;
  // Remaining length: a variable byte integer of at most 4 bytes.
  let length = 0;
  let mul = 1;
  let p = at + 1;
  for (let i = 0; ; i++) {
    if (i === 4) return 0;
    if (p >= buf.length) return -1;
    const byte = buf[p++]!;
    length += (byte & 0x7f) * mul;
    mul *= 0x80;
    if ((byte & 0x80) === 0) break;
  }
  const end = p + length;
  if (end > buf.length) return end - at <= MAX_TAIL ? -1 : 0;
  if (type === 4) {
    // PUBACK: reserved flags 0, a packet id and nothing else (MQTT 5: reason code 0, success, left out).
    if ((header & 0x0f) !== 0 || length !== 2) return 0;
    const packet = new Packet();
    packet.cmd = 'puback';
    packet.length = 2;
    packet.messageId = buf.readUInt16BE(p);
    if (v5) packet.reasonCode = 0;
    parser.emit('packet', packet);
    return end - at;
  }
  const qos = (header >> 1) & 0x03;
  if (qos === 3 || length < 2) return 0;
  const topicEnd = p + 2 + buf.readUInt16BE(p);
  if (topicEnd > end) return 0;
  let q = topicEnd;
  let messageId = 0;
  if (qos > 0) {
    if (q + 2 > end) return 0;
    messageId = buf.readUInt16BE(q);
    q += 2;
  }
  // MQTT 5: its properties, read as mqtt-packet reads them (user properties are left to it).
  let properties: Record<string, unknown> | undefined;
  if (v5) {
    if (q >= end) return 0;
    if (buf[q] === 0) q += 1;
    else {
      const read = readProperties(buf, q, end, constants);
      if (read === undefined) return 0;
      q = read.next;
      properties = read.properties;
    }
  }
  const packet = new Packet();
  packet.cmd = 'publish';
  packet.retain = (header & 0x01) !== 0;
  packet.qos = qos;
  packet.dup = (header & 0x08) !== 0;
  packet.length = length;
  packet.topic = buf.toString('utf8', p + 2, topicEnd);
  if (qos > 0) packet.messageId = messageId;
  if (properties !== undefined) packet.properties = properties;
  packet.payload = buf.subarray(q, end);
  parser.emit('packet', packet);
  return end - at;
}

/** mqtt-packet's property tables (constants.js). */
export interface PacketConstants {
  propertiesCodes: Record<number, string>;
  propertiesTypes: Record<string, string>;
}

/**
 * The properties at `at` (their length first), as mqtt-packet's parser makes them: one key per property, a repeated one
 * as an array. Undefined: anything it would refuse or read past the packet, and user properties (left to it).
 */
function readProperties(buf: Buffer, at: number, end: number, constants: PacketConstants): { properties: Record<string, unknown> | undefined; next: number } | undefined {
  const len = readVarInt(buf, at, end);
  if (len === undefined) return undefined;
  let p = len.next;
  const stop = p + len.value;
  if (stop > end) return undefined;
  const result: Record<string, unknown> = {};
  let any = false;
  while (p < stop) {
    const name = constants.propertiesCodes[buf[p++]!];
    if (name === undefined || name === 'userProperties') return undefined;
    let value: unknown;
    switch (constants.propertiesTypes[name]) {
      case 'byte':
      case 'int8':
        if (p + 1 > stop) return undefined;
        value = constants.propertiesTypes[name] === 'byte' ? buf[p] !== 0 : buf[p];
        p += 1;
        break;
      case 'int16':
        if (p + 2 > stop) return undefined;
        value = buf.readUInt16BE(p);
        p += 2;
        break;
      case 'int32':
        if (p + 4 > stop) return undefined;
        value = buf.readUInt32BE(p);
        p += 4;
        break;
      case 'var': {
        const v = readVarInt(buf, p, stop);
        if (v === undefined) return undefined;
        value = v.value;
        p = v.next;
        break;
      }
      case 'string':
      case 'binary': {
        if (p + 2 > stop) return undefined;
        const n = buf.readUInt16BE(p);
        if (p + 2 + n > stop) return undefined;
        value = constants.propertiesTypes[name] === 'string' ? buf.toString('utf8', p + 2, p + 2 + n) : buf.subarray(p + 2, p + 2 + n);
        p += 2 + n;
        break;
      }
      default:
        return undefined;
    }
    // As mqtt-packet: a repeat of a property whose value so far is falsy replaces it.
    const had = result[name];
    if (!had) result[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else result[name] = [had, value];
    any = true;
  }
  return { properties: any ? result : undefined, next: p };
}

function readVarInt(buf: Buffer, at: number, end: number): { value: number; next: number } | undefined {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 4 && at < end; i++) {
    const byte = buf[at++]!;
    value += (byte & 0x7f) * mul;
    mul *= 0x80;
    if ((byte & 0x80) === 0) return { value, next: at };
  }
  return undefined;
}
