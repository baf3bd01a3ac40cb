import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';
import { encodeFast, parseFast, type PacketConstants, type PacketParser } from './fast-packet.js';

/**
 * mqtt-packet (mqtt.js's encoder and parser) tuned for the gateway's main thread, when debug output is off (DEBUG
 * unset): without its `debug` calls, with PUBLISH and PUBACK packets written as one buffer each, and read straight from
 * the socket's chunks (fast-packet.ts: the same bytes, the same packets; every other packet as mqtt-packet has it).
 *
 * Why (issue 19): mqtt-packet calls its `debug` logger about 25 times per packet (on every header, length, property,
 * payload it parses or writes), and a `debug` logger that is off still gathers its arguments into an array and reads
 * its `enabled` getter on every call: ~7.6 KB of garbage per verified order on the gateway's main thread, the largest
 * single source of its allocations. The bytes on the wire and the packets parsed are unchanged: this is mqtt-packet's
 * own code, loaded a second time with a `debug` that does nothing for its `mqtt-packet:*` loggers (every other module's
 * `debug` is untouched).
 *
 * How: mqtt.js looks up `writeToStream` and `parser` on mqtt-packet's exports each time it writes a packet or sets up
 * a connection, so the quiet copy's functions are put on those same exports. That works whichever module loaded
 * mqtt.js first; connections set up before this ran keep the parser they have. Idempotent.
 *
 * With DEBUG set nothing changes, so `DEBUG=mqtt-packet:*` still shows mqtt-packet's lines (as with mqtt.js's own
 * log, MqttDriver.start).
 */
export function tuneMqttPacket(): boolean {
  if (process.env.DEBUG) return false;
  const fromHere = createRequire(import.meta.url);
  const fromMqtt = createRequire(fromHere.resolve('mqtt'));
  const packetMain = fromMqtt.resolve('mqtt-packet');
  const fromPacket = createRequire(packetMain);
  const original = fromPacket(packetMain) as PacketExports;
  if (original[QUIET]) return true;
  const debugMain = fromPacket.resolve('debug');
  const cache = fromPacket.cache;
  const debugModule = cache[debugMain];
  if (!debugModule) return false; // mqtt-packet loaded without `debug`: nothing to quieten
  const realDebug = debugModule.exports as (namespace: string) => unknown;

  // mqtt-packet's files that call `debug`, and those that load them, are loaded afresh, then put back as they were. The
  // rest (its constants, its number cache of 65,536 two-byte buffers) and its dependencies stay shared.
  const dir = dirname(packetMain) + sep;
  const reload = new Set(['mqtt.js', 'parser.js', 'writeToStream.js', 'generate.js'].map((f) => dir + f));
  const own = (key: string): boolean => reload.has(key);
  const saved = Object.keys(cache).filter(own).map((key) => [key, cache[key]] as const);
  for (const [key] of saved) delete cache[key];
  const quietDebug = (namespace: string): unknown => (namespace.startsWith('mqtt-packet:') ? off : realDebug(namespace));
  let fresh: PacketExports;
  debugModule.exports = quietDebug;
  try {
    fresh = fromPacket(packetMain) as PacketExports;
  } finally {
    debugModule.exports = realDebug;
    for (const key of Object.keys(cache).filter(own)) delete cache[key];
    for (const [key, module] of saved) cache[key] = module;
  }

  // The number cache setting (mqtt.js's `writeCache: false`) carries over to the quiet writer.
  const cacheNumbers = original.writeToStream.cacheNumbers;
  const quiet = fresh.writeToStream;
  // Off then on: the quiet writer uses the shared number cache as it is, without filling it again, once it is filled.
  quiet.cacheNumbers = false;
  quiet.cacheNumbers = cacheNumbers;
  const writeToStream = function writeToStream(packet: Record<string, unknown>, stream: { write(chunk: Buffer): boolean }, opts?: { protocolVersion?: number }): boolean {
    const bytes = encodeFast(packet, opts ? (opts.protocolVersion ?? 4) : 4);
    return bytes === undefined ? quiet(packet, stream, opts) : stream.write(bytes);
  } as WriteToStream;
  Object.defineProperty(writeToStream, 'cacheNumbers', {
    get: () => quiet.cacheNumbers,
    set: (value: boolean) => (quiet.cacheNumbers = value),
  });
  // Each connection's parser reads whole PUBLISH and PUBACK packets itself (fast-packet.ts), the rest as before.
  const Packet = fromPacket(`${dir}packet.js`) as new () => Record<string, unknown>;
  const constants = fromPacket(`${dir}constants.js`) as PacketConstants;
  const quietParser = fresh.parser as (opt?: object) => PacketParser;
  original.parser = function parser(opt?: object): PacketParser {
    return parseFast(quietParser(opt), Packet, constants);
  };
  original.generate = fresh.generate;
  original.writeToStream = writeToStream;
  original[QUIET] = true;
  return true;
}

const QUIET = Symbol.for('meterline.tuneMqttPacket');

type WriteToStream = ((packet: Record<string, unknown>, stream: { write(chunk: Buffer): boolean }, opts?: { protocolVersion?: number }) => boolean) & { cacheNumbers: boolean };

interface PacketExports {
  parser: unknown;
  generate: unknown;
  writeToStream: WriteToStream;
  [QUIET]?: true;
}

/** A `debug` logger that is off: no arguments gathered, nothing read. */
function off(): void {}
