import { createRequire } from 'node:module';

/**
 * mqtt-packet's number cache off (as mqtt.js's `writeCache: false` sets it): the few packets mqtt-packet still writes
 * (CONNECT, SUBSCRIBE, PINGREQ...; PUBLISH and PUBACK are written by drivers/mqtt/fast-packet.ts) take a two-byte buffer
 * for each number they carry instead of one from a table of all 65,536 made on the first packet written.
 *
 * Why (issue 19, memory per meter): that table is 65,536 Buffer objects, ~7 MiB of the main thread's heap for good, a
 * fifth of what the gateway holds after start. The bytes on the wire are the same. Process-wide, idempotent; set before
 * the first packet is written, or the table already made stays (it is only no longer read).
 */
export function mqttNumberCacheOff(): void {
  const fromHere = createRequire(import.meta.url);
  const fromMqtt = createRequire(fromHere.resolve('mqtt'));
  const packet = fromMqtt(fromMqtt.resolve('mqtt-packet')) as { writeToStream: { cacheNumbers: boolean } };
  packet.writeToStream.cacheNumbers = false;
}
