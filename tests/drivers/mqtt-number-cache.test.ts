import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { MeterLinks } from '../../src/gateway/meter-links.js';
import { StopList } from '../../src/gateway/stop-list.js';
import { planFleet } from '../../simulators/fleet-plan.js';

// mqtt-packet's table of two-byte numbers (numbers.js, shared by every copy of its writer): filled on the first packet
// written while its writer's number cache is on, 65,536 Buffers (~7 MiB) kept for good (issue 19).
const fromMqtt = createRequire(createRequire(import.meta.url).resolve('mqtt'));
const numbers = fromMqtt(join(fromMqtt.resolve('mqtt-packet'), '..', 'numbers.js')) as { cache: Record<number, Buffer> };

const logger = pino({ level: 'silent' });
const stops = new StopList(logger);
afterAll(() => stops.runAll());

describe("the gateway's MQTT side leaves mqtt-packet's number table unmade", () => {
  it('embedded broker, in-process fleet and driver: connected and subscribed, commands answered, no table', async () => {
    expect(Object.keys(numbers.cache)).toHaveLength(0); // nothing in this process has written a packet yet
    const base = loadConfig({});
    const config = ConfigSchema.parse({
      ...base,
      mqtt: { ...base.mqtt, mode: 'embedded', embeddedPort: 0 },
      simulator: { ...base.simulator, inProcess: true, autoPressMs: null },
    });
    const profiles = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles'));
    const planned = planFleet({ count: 4, prefix: 'NC-', profiles: ['acme-em340-fw2.4'], links: 1, regions: ['r'] });
    const links = new MeterLinks(config, profiles, planned, logger);
    await links.start(stops);
    expect(links.mqtt!.connected).toBe(true);
    // CONNECT, CONNACK, SUBSCRIBE and SUBACK went through mqtt-packet's writer both ways; a read goes there and back.
    const meter = { meterId: 'NC-000001', profile: profiles.get('acme-em340-fw2.4')!, link: planned[0]!.link, address: null };
    const read = await links.mqtt!.readRelay(meter, { timeoutMs: 5000, correlationId: 'number-cache-read' });
    expect(read.outcome).toBe('ok');
    expect(Object.keys(numbers.cache)).toHaveLength(0);
  });
});
