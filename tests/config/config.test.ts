import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';

describe('configuration', () => {
  it('the embedded defaults load and validate', () => {
    const c = loadConfig({});
    expect(c.store.kind).toBe('sqlite');
    expect(c.mqtt.mode).toBe('embedded');
    expect(c.reconnect.limitHours).toBe(24);
    expect(c.fleet.seed?.count).toBe(1000);
  });

  it('environment overrides reach nested fields and are validated', () => {
    const c = loadConfig({ METERLINE__API__PORT: '9091', METERLINE__MQTT__MODE: 'external' });
    expect(c.api.port).toBe(9091);
    expect(c.mqtt.mode).toBe('external');
  });

  it('an invalid enum names the field, where it came from and the allowed values', () => {
    let error: unknown;
    try {
      loadConfig({ METERLINE__MQTT__MODE: 'cloud' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain('mqtt.mode');
    expect(message).toContain('METERLINE__MQTT__MODE');
    expect(message).toContain('"embedded"');
    expect(message).toContain('"external"');
  });

  it('an out-of-range number and an unknown field in a config file are both reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-config-'));
    const file = join(dir, 'site.json');
    writeFileSync(file, JSON.stringify({ api: { port: 70000 }, reconnect: { limitHours: 30 }, surprise: true }));
    expect(() => loadConfig({ METERLINE_CONFIG: file })).toThrow(/api\.port[\s\S]*reconnect\.limitHours[\s\S]*surprise|surprise[\s\S]*api\.port/);
  });

  it('a configured key name is its client id: one starting with cli_ (the ids of clients made through the API) is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-config-'));
    const file = join(dir, 'site.json');
    const key = (name: string) => ({ auth: { keys: [{ name, role: 'billing', sha256: 'a'.repeat(64) }], demoKeys: false } });
    writeFileSync(file, JSON.stringify(key('cli_5f0c2a9e81d4b7a3')));
    expect(() => loadConfig({ METERLINE_CONFIG: file })).toThrow(/auth\.keys\.0\.name[\s\S]*cli_/);
    writeFileSync(file, JSON.stringify(key('erp-billing')));
    expect(loadConfig({ METERLINE_CONFIG: file }).auth.keys[0]!.name).toBe('erp-billing');
  });

  it('the firmware profiles shipped load, and a broken profile names its file and field', () => {
    const profiles = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles'));
    expect(profiles.get('acme-em340-fw2.4')?.relay.remoteReconnect).toBe('closes');
    expect(profiles.get('volta-pp20-fw1.7')?.relay.remoteReconnect).toBe('arms');
    const dir = mkdtempSync(join(tmpdir(), 'ml-profiles-'));
    const good = profiles.get('acme-em340-fw2.4')!;
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...good, id: 'bad-1', timeouts: { commandMs: 10, readMs: 100 } }));
    expect(() => loadFirmwareProfiles(dir)).toThrow(/bad\.json: timeouts\.commandMs/);
  });

  it('a profile file that is not JSON, and a profile id defined twice, are named', () => {
    const good = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles')).get('acme-em340-fw2.4')!;
    const broken = mkdtempSync(join(tmpdir(), 'ml-profiles-'));
    writeFileSync(join(broken, 'broken.json'), '{');
    expect(() => loadFirmwareProfiles(broken)).toThrow(/broken\.json: not valid JSON/);
    const dup = mkdtempSync(join(tmpdir(), 'ml-profiles-'));
    writeFileSync(join(dup, 'a.json'), JSON.stringify(good));
    writeFileSync(join(dup, 'b.json'), JSON.stringify(good));
    expect(() => loadFirmwareProfiles(dup)).toThrow(/b\.json: profile id "acme-em340-fw2\.4" is defined twice/);
  });
});
