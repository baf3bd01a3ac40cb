import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { outsideLinks, startGateway } from '../../src/gateway.js';

/**
 * The demo calendar (`demo.policy`) shortens the 30-minute second notice of DOMAIN.md rule 2 and opens every hour. It
 * is for a gateway whose every meter is simulated in its own process: a configuration that can reach a real meter
 * (a serial or TCP link, an external broker) must not start with it, and the message says why and what to change.
 */
const dir = mkdtempSync(join(tmpdir(), 'ml-demo-guard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the demo calendar is only for a fully simulated gateway', () => {
  it('the shipped demo (in-process broker, simulated fleet, no device links) reaches no outside meter', () => {
    expect(outsideLinks(loadConfig({}))).toEqual([]);
  });

  it('with a Modbus RTU link configured, a start with demo.policy is refused naming the link, and nothing is served', async () => {
    const config = loadConfig({}, {
      store: { sqlite: { path: join(dir, 'guard.db') } },
      api: { port: 0 },
      modbus: { rtu: { 'bus-field': { path: '/dev/ttyMeterlineNone7', baudRate: 9600, parity: 'even', dataBits: 8, stopBits: 1, frameRetries: 2, noiseGapMs: 20, reopenMs: 500 } } },
    });
    expect(config.demo.policy).not.toBeNull();
    expect(outsideLinks(config)).toEqual(['Modbus RTU link "bus-field"']);
    await expect(startGateway(config)).rejects.toThrow(/demo\.policy .*allowed only when every meter is simulated.*Modbus RTU link "bus-field"/);
  });

  it('an external broker counts as a way to real meters', () => {
    const config = loadConfig({}, { mqtt: { mode: 'external', url: 'mqtt://broker.example:1883' } });
    expect(outsideLinks(config)).toEqual(['the external MQTT broker (mqtt.mode "external")']);
  });
});
