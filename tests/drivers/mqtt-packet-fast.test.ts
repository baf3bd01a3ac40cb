import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { encodeFast, parseFast, type PacketConstants, type PacketParser } from '../../drivers/mqtt/fast-packet.js';
import { tuneMqttPacket } from '../../drivers/mqtt/packet-tuning.js';

// mqtt-packet as mqtt.js loads it, and its own writer and parser as they were before any tuning.
const fromMqtt = createRequire(createRequire(import.meta.url).resolve('mqtt'));
type Writer = (packet: object, stream: { write(chunk: Buffer | string, enc?: BufferEncoding): boolean }, opts?: object) => boolean;
const mqttPacket = fromMqtt('mqtt-packet') as {
  writeToStream: Writer;
  parser: (opts: object) => { on(e: 'packet' | 'error', cb: (x: unknown) => void): void; parse(b: Buffer): number };
};
const pristineWrite = mqttPacket.writeToStream;
const pristineParser = mqttPacket.parser;

/** The bytes `write` puts on a stream for `packet`, and what the stream's write returned last. */
function written(write: Writer, packet: object, protocolVersion: number): Buffer {
  const parts: Buffer[] = [];
  const stream = { write: (chunk: Buffer | string, enc?: BufferEncoding) => (parts.push(typeof chunk === 'string' ? Buffer.from(chunk, enc ?? 'utf8') : Buffer.from(chunk)), true) };
  write(packet, stream, { protocolVersion });
  return Buffer.concat(parts);
}

function parsed(bytes: Buffer, protocolVersion: number): unknown[] {
  const out: unknown[] = [];
  const p = pristineParser({ protocolVersion });
  p.on('packet', (x) => out.push(x));
  p.on('error', (e) => out.push(e));
  p.parse(bytes);
  return out;
}

const long = (n: number): string => 'x'.repeat(n);

/** The PUBLISH and PUBACK packets the gateway and its meters send, and their edges. */
function samples(): { packet: Record<string, unknown>; version: 4 | 5 }[] {
  const cases: { packet: Record<string, unknown>; version: 4 | 5 }[] = [];
  const topics = ['meters/m-1/cmd', 'meters/ünïcødé/cmd', '', long(300)];
  const payloads: unknown[] = ['{"cid":"o-1:1:cmd","op":"reconnect","ts":1764300000000,"exp":1764300005000}', Buffer.from([0, 1, 2, 255]), '', undefined, 'é€😀', long(127), long(128), long(16_383), long(16_384), Buffer.alloc(70_000, 7)];
  const props: (Record<string, unknown> | undefined)[] = [
    undefined,
    {},
    { messageExpiryInterval: 5 },
    { messageExpiryInterval: 0 },
    { messageExpiryInterval: 0xffffffff },
    { messageExpiryInterval: 5, responseTopic: 'meterline/gw-1/reply/m-1', correlationData: Buffer.from('o-1:1:cmd') },
    { correlationData: 'o-1:1:read', responseTopic: 'réply/m-1', messageExpiryInterval: 300 },
    { correlationData: Buffer.alloc(0) },
  ];
  for (const version of [4, 5] as const) {
    for (const topic of topics)
      for (const payload of payloads)
        for (const qos of [0, 1, 2]) cases.push({ packet: { cmd: 'publish', topic, payload, qos, messageId: qos ? 1 : undefined, dup: false, retain: false }, version });
    for (const properties of props) {
      for (const [dup, retain] of [[false, false], [true, false], [false, true], [true, true]]) {
        for (const messageId of [0, 1, 255, 256, 65_535]) {
          cases.push({ packet: { cmd: 'publish', topic: 'meters/m-1/cmd', payload: '{"cid":"x"}', qos: 1, messageId, dup, retain, properties }, version });
        }
      }
    }
    for (const messageId of [0, 1, 300, 65_535]) cases.push({ packet: { cmd: 'puback', messageId, reasonCode: 0 }, version });
  }
  cases.push({ packet: { cmd: 'puback', messageId: 9 }, version: 4 });
  return cases;
}

describe('fast PUBLISH and PUBACK encoding: the bytes mqtt-packet writes', () => {
  it('every sample encodes to exactly the bytes of mqtt-packet, which parses them back to the same packet', () => {
    const cases = samples();
    expect(cases.length).toBeGreaterThan(300);
    for (const { packet, version } of cases) {
      const fast = encodeFast(packet, version);
      expect(fast, JSON.stringify({ ...packet, payload: String(packet.payload).slice(0, 40), version })).toBeDefined();
      expect(fast!.equals(written(pristineWrite, packet, version))).toBe(true);
      const back = parsed(fast!, version);
      expect(back).toHaveLength(1);
      expect(back[0]).toMatchObject(packet.messageId === undefined ? { cmd: packet.cmd } : { cmd: packet.cmd, messageId: packet.messageId });
      if (packet.cmd === 'publish') expect(back[0]).toMatchObject({ topic: packet.topic, qos: packet.qos });
    }
  });

  it('leaves to mqtt-packet what it does not take: other packets, other properties, values mqtt-packet refuses', () => {
    const left = [
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a', qos: 1 }] },
      { cmd: 'pingreq' },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 1, properties: { topicAlias: 3 } },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 1, properties: { userProperties: { a: 'b' } } },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 1, properties: { messageExpiryInterval: 1.5 } },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 1, properties: { messageExpiryInterval: undefined } },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 1, properties: null },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1 },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 1, messageId: 70_000 },
      { cmd: 'publish', topic: 'a', payload: 'x', qos: 3, messageId: 1 },
      { cmd: 'publish', topic: Buffer.from('a'), payload: 'x', qos: 0 },
      { cmd: 'publish', topic: 'a', payload: 42, qos: 0 },
      { cmd: 'publish', topic: long(70_000), payload: 'x', qos: 0 },
      { cmd: 'puback', messageId: 1, reasonCode: 16 },
      { cmd: 'puback', messageId: 1, reasonCode: 0, properties: { reasonString: 'r' } },
      { cmd: 'puback' },
    ];
    for (const packet of left) expect(encodeFast(packet, 5), JSON.stringify(packet).slice(0, 80)).toBeUndefined();
    // A PUBACK with a reason code other than success is MQTT 5's alone; 3.1.1 has none to write.
    expect(encodeFast({ cmd: 'puback', messageId: 1, reasonCode: 16 }, 4)).toEqual(Buffer.from([0x40, 2, 0, 1]));
  });
});

/** A seeded pseudo-random sequence (the chunkings below are the same on every run). */
function seeded(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
}

/** What a parser emits for `chunks`, in order (packets and errors). */
function emitted(parser: PacketParser & { on(e: string, cb: (x: unknown) => void): void }, chunks: Buffer[]): unknown[] {
  const out: unknown[] = [];
  parser.on('packet', (x) => out.push(x));
  parser.on('error', (e) => out.push(String(e)));
  for (const c of chunks) parser.parse(c);
  return out;
}

describe('fast PUBLISH and PUBACK parsing: the packets mqtt-packet emits', () => {
  const Packet = fromMqtt(fromMqtt.resolve('mqtt-packet').replace(/mqtt\.js$/, 'packet.js')) as new () => Record<string, unknown>;
  const constants = fromMqtt(fromMqtt.resolve('mqtt-packet').replace(/mqtt\.js$/, 'constants.js')) as PacketConstants;
  for (const version of [4, 5] as const) {
    it(`MQTT ${version}: a stream of replies, acknowledgements and other packets, cut anywhere, parses to the same packets`, () => {
      const stream: Buffer[] = [];
      // The samples up to 2 KB (mqtt-packet's own parser takes minutes over the largest cut into bytes; the encoding test has them).
      for (const { packet } of samples()) {
        const bytes = written(pristineWrite, packet, version);
        if (bytes.length <= 2_000) stream.push(bytes);
      }
      // Packets the fast path leaves to mqtt-packet, between the others.
      const others = [
        { cmd: 'suback', messageId: 3, granted: [1, 1, 1] },
        { cmd: 'pingresp' },
        { cmd: 'connack', sessionPresent: false, returnCode: 0, reasonCode: 0 },
        { cmd: 'puback', messageId: 4, reasonCode: 16 },
        { cmd: 'publish', topic: 'meters/m-1/reply', payload: '{"cid":"c"}', qos: 1, messageId: 5, properties: { userProperties: { a: 'b' } } },
        { cmd: 'publish', topic: 'meters/m-1/reply', payload: '{"cid":"c"}', qos: 1, messageId: 6, properties: { payloadFormatIndicator: true, contentType: 'application/json', subscriptionIdentifier: [1, 300], topicAlias: 2 } },
        { cmd: 'publish', topic: 'meters/m-1/reply', payload: 'x', qos: 0, properties: { subscriptionIdentifier: 20_000 } },
      ];
      for (let i = 0; i < others.length; i++) stream.splice(1 + i * 40, 0, written(pristineWrite, others[i]!, version));
      const all = Buffer.concat(stream);
      const random = seeded(version);
      for (const maxChunk of [3, 7, 64, 1500, 65_536, all.length]) {
        const chunks: Buffer[] = [];
        for (let at = 0; at < all.length; ) {
          const n = Math.max(1, Math.floor(random() * maxChunk));
          chunks.push(all.subarray(at, at + n));
          at += n;
        }
        const slow = emitted(pristineParser({ protocolVersion: version }) as never, chunks);
        const fast = emitted(parseFast(pristineParser({ protocolVersion: version }) as never, Packet, constants) as never, chunks);
        expect(fast.length).toBeGreaterThan(300);
        expect(fast).toStrictEqual(slow);
      }
    });
  }

  it('a packet over 64 KiB cut across chunks, and the packets after it, parse to the same packets', () => {
    const big = { cmd: 'publish', topic: 'meters/m-1/status', payload: Buffer.alloc(70_000, 7), qos: 1, messageId: 9 };
    const all = Buffer.concat([written(pristineWrite, big, 5), written(pristineWrite, { cmd: 'puback', messageId: 9, reasonCode: 0 }, 5), written(pristineWrite, { ...big, payload: 'ok' }, 5)]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < all.length; at += 1500) chunks.push(all.subarray(at, at + 1500));
    const slow = emitted(pristineParser({ protocolVersion: 5 }) as never, chunks);
    const fast = emitted(parseFast(pristineParser({ protocolVersion: 5 }) as never, Packet, constants) as never, chunks);
    expect(slow).toHaveLength(3);
    expect(fast).toStrictEqual(slow);
  });

  it('malformed bytes end in the same error as with mqtt-packet alone', () => {
    const bad = [Buffer.from([0x36, 0x02, 0x00, 0x00]), Buffer.from([0x42, 0x02, 0x00, 0x01]), Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), Buffer.from([0x30, 0x03, 0x00, 0x05, 0x61])];
    for (const b of bad) {
      const slow = emitted(pristineParser({ protocolVersion: 5 }) as never, [b]);
      const fast = emitted(parseFast(pristineParser({ protocolVersion: 5 }) as never, Packet, constants) as never, [b]);
      expect(fast).toStrictEqual(slow);
    }
  });
});

describe('tuneMqttPacket: mqtt.js writes the same bytes', () => {
  it('unless DEBUG is set, it tunes mqtt-packet once; every packet, fast or not, is written as before', () => {
    const saved = process.env.DEBUG;
    process.env.DEBUG = 'mqtt-packet:*';
    try {
      expect(tuneMqttPacket()).toBe(false);
      expect(mqttPacket.writeToStream).toBe(pristineWrite);
    } finally {
      if (saved === undefined) delete process.env.DEBUG;
      else process.env.DEBUG = saved;
    }
    if (saved) return; // run with DEBUG set: nothing is tuned, as checked above
    expect(tuneMqttPacket()).toBe(true);
    expect(tuneMqttPacket()).toBe(true);
    expect(mqttPacket.writeToStream).not.toBe(pristineWrite);
    expect(mqttPacket.parser).not.toBe(pristineParser);
    const packets = [
      ...samples(),
      { packet: { cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'meters/+/reply', qos: 1 }] }, version: 5 as const },
      { packet: { cmd: 'pingreq' }, version: 4 as const },
      { packet: { cmd: 'puback', messageId: 1, reasonCode: 16 }, version: 5 as const },
    ];
    for (const { packet, version } of packets) expect(written(mqttPacket.writeToStream, packet, version).equals(written(pristineWrite, packet, version))).toBe(true);
    // mqtt.js's `writeCache: false` still reaches the writer.
    (mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = false;
    expect((mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers).toBe(false);
    (mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = true;
    // The tuned parser reads what the pristine writer wrote.
    const bytes = written(pristineWrite, { cmd: 'publish', topic: 't', payload: 'p', qos: 1, messageId: 7, properties: { messageExpiryInterval: 5 } }, 5);
    const out: unknown[] = [];
    const p = mqttPacket.parser({ protocolVersion: 5 });
    p.on('packet', (x) => out.push(x));
    p.parse(bytes);
    expect(out).toMatchObject([{ cmd: 'publish', topic: 't', messageId: 7, properties: { messageExpiryInterval: 5 } }]);
  });
});
